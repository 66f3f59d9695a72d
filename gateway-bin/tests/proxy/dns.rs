//! Desktop targets that are DNS names: resolved at request time through the configured DNS
//! server (here a tiny in-process responder), cached by TTL, and dialled by address.

use crate::support_proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use support_proxy::*;
use tokio::net::UdpSocket;

/// Answers every A query with 127.0.0.1 (TTL 300) and every other query with no records;
/// counts the A queries.
async fn dns_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let a_queries = Arc::new(AtomicUsize::new(0));
    let count = a_queries.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            let q = &buf[..n];
            // Header (12 bytes), then QNAME (labels up to a zero byte), QTYPE, QCLASS.
            let mut i = 12;
            while i < n && q[i] != 0 {
                i += 1 + q[i] as usize;
            }
            let end = i + 5;
            if end > n {
                continue;
            }
            let qtype = u16::from_be_bytes([q[i + 1], q[i + 2]]);
            let is_a = qtype == 1;
            let mut r = Vec::with_capacity(end + 16);
            r.extend_from_slice(&q[..2]); // id
            r.extend_from_slice(&[0x81, 0x80]); // response, RD, RA, NOERROR
            r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
            r.extend_from_slice(&q[12..end]); // the question
            if is_a {
                count.fetch_add(1, Ordering::SeqCst);
                r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 1, 0x2c, 0, 4, 127, 0, 0, 1]);
            }
            let _ = socket.send_to(&r, peer).await;
        }
    });
    (addr, a_queries)
}

#[tokio::test]
async fn desktop_names_resolve_through_the_configured_server_and_are_cached() {
    let (dns, a_queries) = dns_server().await;
    let up = upstream("spawner").await;
    let mut file = file_config([("29786".to_owned(), up.addr.port())].into_iter().collect());
    file.upstream.resolver = Some(vec![dns.to_string()]);
    let gw = spawn_gateway(file).await;
    let name = "pod-1.desktop.abcdesktop.svc.cluster.local";
    let token = KEYS.minter.mint(name, now(), 600).unwrap();
    for _ in 0..3 {
        let (status, _, body) = get(&gw.url("/spawner/x"), Some(&token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let seen = seen(&body);
        assert_eq!(seen["name"], "spawner");
        // proxy.conf: Host is the client's; the dialled address came from DNS.
        assert_eq!(seen["headers"]["host"], "127.0.0.1");
    }
    assert_eq!(
        a_queries.load(Ordering::SeqCst),
        1,
        "the answer was not cached"
    );
}

#[tokio::test]
async fn ws_profile_host_is_the_desktop_name_and_port() {
    let (dns, _) = dns_server().await;
    let up = upstream("sound").await;
    let mut file = file_config([("29788".to_owned(), up.addr.port())].into_iter().collect());
    file.upstream.resolver = Some(vec![dns.to_string()]);
    let gw = spawn_gateway(file).await;
    let name = "pod-2.desktop.abcdesktop.svc.cluster.local";
    let token = KEYS.minter.mint(name, now(), 600).unwrap();
    let (status, _, body) = get(&gw.url(&format!("/sound?jwt_token={token}")), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seen(&body)["headers"]["host"], format!("{name}:29788"));
}

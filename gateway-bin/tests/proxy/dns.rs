//! Desktop targets that are DNS names: resolved at request time through the configured DNS
//! server (here a tiny in-process responder), cached by TTL, and dialled by address; named
//! services through the same resolver and cache, `localhost` and IP literals without a query.

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
    file.upstream.resolver = vec![dns];
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
    file.upstream.resolver = vec![dns];
    let gw = spawn_gateway(file).await;
    let name = "pod-2.desktop.abcdesktop.svc.cluster.local";
    let token = KEYS.minter.mint(name, now(), 600).unwrap();
    let (status, _, body) = get(&gw.url(&format!("/sound?jwt_token={token}")), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(seen(&body)["headers"]["host"], format!("{name}:29788"));
}

#[tokio::test]
async fn service_names_resolve_through_the_same_resolver_and_cache() {
    let (dns, a_queries) = dns_server().await;
    let pyos = upstream("pyos").await;
    let mut file = file_config(Default::default());
    file.upstream.resolver = vec![dns];
    // A name only the configured server knows: the system resolver cannot answer it.
    file.services.pyos = gateway::config::ServiceAddr {
        host: "pyos.gateway-test".to_owned(),
        port: pyos.addr.port(),
    };
    let gw = spawn_gateway(file).await;
    for _ in 0..3 {
        let (status, _, body) = get(&gw.url("/API/healthz"), None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(seen(&body)["name"], "pyos");
    }
    assert_eq!(
        a_queries.load(Ordering::SeqCst),
        1,
        "one query, then the shared cache"
    );
}

#[tokio::test]
async fn localhost_and_ip_literal_services_never_ask_the_dns_server() {
    let (dns, a_queries) = dns_server().await;
    let (pyos, website) = (upstream("pyos").await, upstream("website").await);
    let mut file = file_config(Default::default());
    file.upstream.resolver = vec![dns];
    file.services.pyos = gateway::config::ServiceAddr {
        host: "localhost".to_owned(),
        port: pyos.addr.port(),
    };
    file.services.website = service(&website);
    let gw = spawn_gateway(file).await;
    for (path, name) in [("/API/healthz", "pyos"), ("/index.html", "website")] {
        let (status, _, body) = get(&gw.url(path), None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(seen(&body)["name"], name);
    }
    assert_eq!(a_queries.load(Ordering::SeqCst), 0);
}

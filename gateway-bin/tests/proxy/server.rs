//! The server around the proxy: HTTP/2 (h2c), the header-read timeout, the connection cap,
//! the static site, and the binary's `--check-config`.

use crate::support_proxy;

use std::time::Duration;

use gateway::config::WebsiteSection;
use http::StatusCode;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support_proxy::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn http2_clients_are_served_and_proxied_as_http1() {
    let up = upstream("spawner").await;
    let mut file = file_config([("29786".to_owned(), up.addr.port())].into_iter().collect());
    file.limits.h2c = true;
    let gw = spawn_gateway(file).await;
    let h2: Client<_, TestBody> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let res = h2
        .request(
            http::Request::get(gw.url("/spawner/x?y=1"))
                .header("abcauthorization", token())
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.version(), http::Version::HTTP_2);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    let seen = seen(&String::from_utf8_lossy(&body));
    assert_eq!(seen["uri"], "/spawner/x?y=1");
    assert_eq!(seen["headers"]["host"], "127.0.0.1");
}

async fn read_all(mut s: TcpStream, within: Duration) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(within, s.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn slow_request_heads_are_cut_off() {
    let mut file = file_config(Default::default());
    file.limits.header_read_timeout = Duration::from_millis(300);
    let gw = spawn_gateway(file).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    assert!(
        closed.is_ok(),
        "connection still open after the header-read timeout"
    );
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    // A pyos that takes requests and never answers: a request waiting on its upstream holds
    // its slot (no client-side wait, so nothing to reclaim).
    let silent_pyos = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pyos_port = silent_pyos.local_addr().unwrap().port();
    let (dialled, mut reached) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent_pyos.accept().await {
            held.push(conn);
            let _ = dialled.send(());
        }
    });
    let mut file = file_config(Default::default());
    file.limits.max_connections = 1;
    file.services.pyos = gateway::config::ServiceAddr {
        host: "127.0.0.1".to_owned(),
        port: pyos_port,
    };
    let gw = spawn_gateway(file).await;
    let mut first = TcpStream::connect(gw.addr).await.unwrap();
    first
        .write_all(b"GET /API/longpoll HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    // The first holds the slot once its request reached pyos (the workers accept concurrently,
    // so a second connection opened at once could be admitted first).
    tokio::time::timeout(Duration::from_secs(10), reached.recv())
        .await
        .expect("the first request did not reach pyos");

    let mut second = TcpStream::connect(gw.addr).await.unwrap();
    second
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let early = tokio::time::timeout(Duration::from_millis(1500), second.read(&mut buf)).await;
    assert!(
        early.is_err(),
        "second connection served while the first holds the slot"
    );
    drop(first);
    let text = read_all(second, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[tokio::test]
async fn static_site_serves_files_and_refuses_traversal() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>abcdesktop</h1>").unwrap();
    std::fs::create_dir(dir.path().join("css")).unwrap();
    std::fs::write(dir.path().join("css/app.css"), "body{}").unwrap();
    let mut file = file_config(Default::default());
    file.website = WebsiteSection {
        static_dir: Some(dir.path().to_owned()),
    };
    let gw = spawn_gateway(file).await;
    let (status, headers, body) = get(&gw.url("/"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "<h1>abcdesktop</h1>")
    );
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let (status, headers, _) = get(&gw.url("/css/app.css"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/css; charset=utf-8");
    let (status, _, _) = get(&gw.url("/missing.js"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A path nginx normalizes serves the file nginx would serve.
    let (status, _, body) = get(&gw.url("/css/%2E%2E/index.html"), None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, "<h1>abcdesktop</h1>")
    );
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // `..` above the root: refused before routing, as nginx does (400).
    s.write_all(b"GET /css/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let text = read_all(s, Duration::from_secs(5)).await;
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
}

fn gateway_bin(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(args)
        .env_remove("JWT_DESKTOP_SIGNING_PUBLIC_KEY")
        .env_remove("JWT_DESKTOP_PAYLOAD_PRIVATE_KEY")
        .output()
        .unwrap()
}

#[test]
fn check_config_validates_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:0\"\n[keys]\nsigning_public_key = {:?}\npayload_private_key = {:?}\n",
            KEYS.signing_public(),
            KEYS.payload_private()
        ),
    )
    .unwrap();
    let out = gateway_bin(&["--config", good.to_str().unwrap(), "--check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("config ok"));

    let no_key = dir.path().join("no_key.toml");
    std::fs::write(
        &no_key,
        "[keys]\nsigning_public_key = \"/nonexistent/sign.pem\"\n",
    )
    .unwrap();
    let out = gateway_bin(&["--config", no_key.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sign.pem"));

    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, "lisen = \"0.0.0.0:1\"\n").unwrap();
    let out = gateway_bin(&["--config", typo.to_str().unwrap(), "--check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish_and_stops_accepting() {
    // An upstream that answers after 500 ms.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (asked, mut arrived) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let asked = asked.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = asked.send(());
                tokio::time::sleep(Duration::from_millis(500)).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nslow")
                    .await;
            });
        }
    });
    let gw = spawn_gateway(file_config(
        [("29786".to_owned(), port)].into_iter().collect(),
    ))
    .await;
    let addr = gw.addr;
    let url = gw.url("/spawner/slow");
    let token = token();
    let in_flight = tokio::spawn(async move { get(&url, Some(&token)).await });
    // The request is in flight once the upstream has it (a fixed sleep raced a loaded machine).
    tokio::time::timeout(Duration::from_secs(10), arrived.recv())
        .await
        .expect("the request did not reach the upstream");
    drop(gw); // the shutdown signal
    let (status, _, body) = in_flight.await.unwrap();
    assert_eq!((status, body.as_str()), (StatusCode::OK, "slow"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test]
async fn oversized_request_heads_are_refused() {
    let mut file = file_config(Default::default());
    file.limits.max_header_bytes = 16 * 1024;
    let gw = spawn_gateway(file).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let big = "a".repeat(32 * 1024);
    let req = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n");
    let _ = s.write_all(req.as_bytes()).await;
    let text = read_all(s, Duration::from_secs(5)).await;
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 431"),
        "an oversized head was served: {}",
        text.lines().next().unwrap_or_default()
    );
    // A normal head on a new connection still works.
    let (status, _, _) = get(&gw.url("/healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
}

/// A pooled upstream connection left idle is closed once `[upstream] pool_idle_timeout`
/// passes, without waiting for another request to the same pod (each pod is its own pool
/// key, so an unreaped pool would keep sockets open on both sides until the pod goes away).
#[tokio::test]
async fn idle_upstream_connections_are_closed_after_the_pool_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (closed_tx, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(n > 0, "gateway closed before sending a request");
            head.extend_from_slice(&buf[..n]);
        }
        conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            .await
            .unwrap();
        let answered = std::time::Instant::now();
        // The gateway keeps the connection for reuse; it must close it when the pool
        // timeout passes, with no further request.
        let n = conn.read(&mut buf).await.unwrap_or(0);
        let _ = closed_tx.send((n, answered.elapsed()));
    });
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), port)).collect();
    let mut file = file_config(port_map);
    file.upstream.pool_idle_timeout = Duration::from_secs(1);
    let gw = spawn_gateway(file).await;
    let (status, _, body) = get(&gw.url("/spawner/idle"), Some(&token())).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    let (read, after) = tokio::time::timeout(Duration::from_secs(10), closed_rx)
        .await
        .expect("the idle upstream connection was still open 10 s after its answer")
        .unwrap();
    assert_eq!(read, 0, "the gateway sent more bytes instead of closing");
    assert!(
        after >= Duration::from_millis(900),
        "closed after {after:?}, before the pool timeout"
    );
}

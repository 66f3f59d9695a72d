//! The gateway's own answers: 502 for a refused or unresolvable upstream, 504 for a slow one
//! (no answer in time; no connection or the request not taken in time, these two beside a
//! real nginx),
//! 413 over a body limit (declared or streamed), 503 without a payload key, 404 without a
//! route; and none of them reveals anything internal.

use crate::nginx::start_proxy_nginx;
use crate::support_proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gateway::routes::RouteOverride;
use http::StatusCode;
use http_body_util::BodyExt;
use support_proxy::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A port nothing listens on (bound, then closed).
async fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap().port()
}

/// An upstream that accepts and holds each connection: it neither reads nor answers.
async fn silent_upstream() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let accepts = Arc::new(AtomicUsize::new(0));
    let a = accepts.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            a.fetch_add(1, Ordering::SeqCst);
            held.push(s);
        }
    });
    (port, accepts)
}

fn one_port(pod: u16, port: u16) -> std::collections::BTreeMap<String, u16> {
    [(pod.to_string(), port)].into_iter().collect()
}

#[tokio::test]
async fn refused_upstream_is_502_with_a_generic_body() {
    let gw = spawn_gateway(file_config(one_port(29786, closed_port().await))).await;
    let (status, headers, body) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "502 Bad Gateway\n");
    assert!(headers.get("server").is_none());
}

#[tokio::test]
async fn unresolvable_service_name_is_502_fast() {
    let mut file = file_config(Default::default());
    file.services.pyos.host = "no-such-host.invalid".to_owned();
    let gw = spawn_gateway(file).await;
    let started = Instant::now();
    let (status, _, body) = get(&gw.url("/API/healthz"), None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(!body.contains("invalid"), "upstream name leaked: {body}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn slow_upstream_is_504_after_the_routes_read_timeout() {
    let (port, accepts) = silent_upstream().await;
    let mut file = file_config(one_port(29786, port));
    file.routes.insert(
        "spawner".to_owned(),
        RouteOverride {
            read_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    );
    let gw = spawn_gateway(file).await;
    let started = Instant::now();
    let (status, _, body) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, "504 Gateway Time-out\n");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn refused_token_never_opens_an_upstream_connection() {
    let up = upstream("spawner").await;
    let gw = spawn_gateway(file_config(one_port(29786, up.addr.port()))).await;
    let expired = KEYS.minter.mint("127.0.0.1", now() - 1000, 10).unwrap();
    for t in [None, Some("garbage"), Some(expired.as_str())] {
        let (status, _, body) = get(&gw.url("/spawner/x"), t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, "401 Unauthorized\n");
    }
    assert_eq!(up.accepted(), 0);
    let (status, _, _) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(up.accepted(), 1);
}

#[tokio::test]
async fn missing_payload_key_starts_and_answers_503() {
    let up = upstream("spawner").await;
    let mut file = file_config(one_port(29786, up.addr.port()));
    file.keys.payload_private_key = "/nonexistent/payload.pem".into();
    let gw = spawn_gateway(file).await;
    let (status, _, body) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!body.contains("payload"), "{body}");
    // Unauthenticated routes still work.
    let (status, _, _) = get(&gw.url("/healthz"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(up.accepted(), 0);
}

#[tokio::test]
async fn declared_body_over_the_limit_is_413_without_dialling() {
    let up = upstream("spawner").await;
    let gw = spawn_gateway(file_config(one_port(29786, up.addr.port()))).await;
    // /spawner allows 8M.
    let req = http::Request::post(gw.url("/spawner/upload"))
        .header("abcauthorization", token())
        .body(full(vec![0u8; 8 * 1024 * 1024 + 1]))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body, "413 Request Entity Too Large\n");
    assert_eq!(up.accepted(), 0);
    // Exactly the limit passes.
    let req = http::Request::post(gw.url("/spawner/upload"))
        .header("abcauthorization", token())
        .body(full(vec![0u8; 8 * 1024 * 1024]))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen(&body)["body_len"], 8 * 1024 * 1024);
}

#[tokio::test]
async fn streamed_body_over_the_limit_is_413() {
    let up = upstream("printerfiler").await;
    let mut file = file_config(one_port(29782, up.addr.port()));
    file.routes.insert(
        "printerfiler".to_owned(),
        RouteOverride {
            body_limit: Some(64 * 1024),
            ..Default::default()
        },
    );
    let gw = spawn_gateway(file).await;
    // No Content-Length: chunks of 16 KiB, 160 KiB in all.
    let chunks = futures_util::stream::iter((0..10).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(Bytes::from(vec![1u8; 16 * 1024])))
    }));
    let body = http_body_util::StreamBody::new(chunks)
        .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        .boxed();
    let req = http::Request::post(gw.url("/printerfiler/print"))
        .header("abcauthorization", token())
        .body(body)
        .unwrap();
    let (status, _, _) = send(req).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn container_route_to_a_closed_pod_port_is_502() {
    let token = token();
    let gw = spawn_gateway(file_config(one_port(29786, closed_port().await))).await;
    let (status, _, _) = get(&gw.url(&format!("/container/{token}/29786/x")), None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn no_route_is_404_when_the_website_route_is_disabled() {
    let mut file = file_config(Default::default());
    file.routes.insert(
        "website".to_owned(),
        RouteOverride {
            enabled: Some(false),
            ..Default::default()
        },
    );
    let gw = spawn_gateway(file).await;
    let (status, _, body) = get(&gw.url("/nothing-here"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, "404 Not Found\n");
}

#[tokio::test]
async fn desktop_name_that_does_not_resolve_is_502_fast() {
    let up = upstream("spawner").await;
    let mut file = file_config(one_port(29786, up.addr.port()));
    file.upstream.connect_timeout = Duration::from_secs(1);
    let gw = spawn_gateway(file).await;
    let token = KEYS
        .minter
        .mint(
            "no-such-pod.desktop.abcdesktop.svc.cluster.local",
            now(),
            600,
        )
        .unwrap();
    let started = Instant::now();
    let (status, _, body) = get(&gw.url("/spawner/x"), Some(&token)).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body, "502 Bad Gateway\n");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(up.accepted(), 0);
}

#[tokio::test]
async fn response_body_stalled_longer_than_the_read_timeout_is_cut_off() {
    // Head and 5 bytes of a 100-byte body, then silence.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    let mut file = file_config(one_port(29783, port));
    file.routes.insert(
        "filer".to_owned(),
        RouteOverride {
            read_timeout: Some(Duration::from_millis(300)),
            ..Default::default()
        },
    );
    let gw = spawn_gateway(file).await;
    let res = get_unread(&gw.url("/filer?file=x"), &token()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(10), res.into_body().collect()).await;
    assert!(
        matches!(body, Ok(Err(_))),
        "the stalled body was not cut off"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// POSTs `len` bytes to `path` at `addr` on a raw connection (the body written by a task of
/// its own, as fast as it is taken) and returns the answer's status code ("" if none came
/// within 20 s).
async fn post_status(addr: std::net::SocketAddr, path: &str, token: &str, len: usize) -> String {
    let (mut rd, mut wr) = TcpStream::connect(addr).await.unwrap().into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nABCAuthorization: {token}\r\nContent-Length: {len}\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![7u8; 64 * 1024];
        for _ in 0..len / chunk.len() {
            wr.write_all(&chunk).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !got.windows(2).any(|w| w == b"\r\n") {
        match tokio::time::timeout_at(deadline, rd.read(&mut buf)).await {
            Ok(Ok(n @ 1..)) => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&got);
    text.split(' ').nth(1).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn an_upstream_that_does_not_take_the_request_is_504_after_the_send_timeout_as_with_nginx() {
    // nginx buffers the body, then sends it; the upstream reads nothing.
    let (port, _) = silent_upstream().await;
    let nginx = start_proxy_nginx(port, "client_max_body_size 0; proxy_send_timeout 1s;");
    let len = 16 << 20;
    let started = Instant::now();
    let reference = post_status(nginx.addr, "/spawner/up", "x", len).await;
    assert_eq!(reference, "504");
    assert!(started.elapsed() >= Duration::from_secs(1));

    // The gateway streams the body and meets the same silence.
    let (port, accepts) = silent_upstream().await;
    let mut file = file_config(one_port(29786, port));
    file.routes.insert(
        "spawner".to_owned(),
        RouteOverride {
            send_timeout: Some(Duration::from_secs(1)),
            body_limit: Some(64 << 20),
            ..Default::default()
        },
    );
    let gw = spawn_run(file).await;
    let started = Instant::now();
    let answer = post_status(gw.addr, "/spawner/up", &token(), len).await;
    assert_eq!(answer, reference);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    let timeouts = r#"gateway_upstream_errors_total{kind="timeout",route="spawner"}"#;
    assert_eq!(sample(&scrape(&gw).await, timeouts), Some(1.0));
}

/// A listener that never completes a connection: its accept queue (backlog 0) holds one
/// connection nobody accepts, so later SYNs are dropped, as by a pod that is not there.
/// Keep the returned values alive for as long as it is needed.
async fn unanswering_listener() -> (u16, TcpListener, TcpStream) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let port = listener.local_addr().unwrap().port();
    let queued = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    (port, listener, queued)
}

#[tokio::test]
async fn an_upstream_connect_that_times_out_is_504_as_with_nginx() {
    let (port, _listener, _queued) = unanswering_listener().await;
    let nginx = start_proxy_nginx(port, "proxy_connect_timeout 1s;");
    let started = Instant::now();
    let (reference, _, _) = get(&format!("http://{}/spawner/x", nginx.addr), None).await;
    assert_eq!(reference, StatusCode::GATEWAY_TIMEOUT);
    assert!(started.elapsed() >= Duration::from_secs(1));

    let mut file = file_config(one_port(29786, port));
    file.upstream.connect_timeout = Duration::from_secs(1);
    let gw = spawn_run(file).await;
    let started = Instant::now();
    let (status, _, body) = get(&gw.url("/spawner/x"), Some(&token())).await;
    assert_eq!(status, reference);
    assert_eq!(body, "504 Gateway Time-out\n");
    assert!(started.elapsed() >= Duration::from_secs(1));
    let connects = r#"gateway_upstream_errors_total{kind="connect",route="spawner"}"#;
    assert_eq!(sample(&scrape(&gw).await, connects), Some(1.0));
}

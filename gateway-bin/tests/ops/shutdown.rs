//! The shutdown sequence: `/readyz` fails first, new connections are still taken during the
//! drain delay and refused after it, an in-flight slow request completes, an open WebSocket is
//! closed at the end of the grace period, and the binary exits 0 on SIGTERM.

use crate::support_proxy;

use std::convert::Infallible;
use std::time::Duration;

use futures_util::StreamExt as _;
use gateway::config::{Limits, ShutdownSection};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use support_proxy::*;
use tokio::net::TcpListener;

/// An upstream that answers after `delay`.
async fn slow_upstream(delay: Duration) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(http::Response::new(full("slow but done")))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_first_then_in_flight_work_finishes_then_tunnels_close() {
    let mut desktop = Desktop::http().await;
    desktop.ports.insert(6081, ws_upstream("websockify").await);
    let slow = slow_upstream(Duration::from_millis(1_500)).await;
    let mut port_map = desktop.port_map();
    port_map.insert("29786".into(), slow.port());
    let mut file = file_config(port_map);
    file.shutdown = ShutdownSection {
        // Room for the checks below on a loaded machine; the listener closes after it.
        drain_delay: Duration::from_millis(1_000),
    };
    file.limits = Limits {
        shutdown_grace: Duration::from_secs(3),
        ..Limits::default()
    };
    let mut running = spawn_run(file).await;
    let token = token();

    // An open tunnel and an in-flight slow request.
    let url = format!("ws://{}/websockify?jwt_token={token}", running.addr);
    let stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    assert!(ws.next().await.unwrap().unwrap().is_text());
    let slow_request = {
        let url = running.url("/spawner/slow");
        let token = token.clone();
        tokio::spawn(async move { get(&url, Some(&token)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = tokio::time::Instant::now();
    let run = running.signal();

    // 1. Readiness fails at once…
    let mut ready = 200;
    while ready == 200 && started.elapsed() < Duration::from_millis(800) {
        ready = get(&running.admin_url("/readyz"), None).await.0.as_u16();
    }
    assert_eq!(ready, 503, "/readyz must fail first");
    assert_eq!(get(&running.admin_url("/livez"), None).await.0, 200);
    // …while new connections are still served during the drain delay.
    assert!(started.elapsed() < Duration::from_millis(900));
    assert_eq!(get(&running.url("/healthz"), None).await.0, 200);

    // 2. After the drain delay the listener is closed.
    tokio::time::sleep(Duration::from_millis(1_000).saturating_sub(started.elapsed())).await;
    let refused_by = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(running.addr).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < refused_by,
            "new connections must be refused after the drain delay"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The in-flight request completes normally.
    let (status, _, body) = slow_request.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow but done"));

    // 3. The tunnel stays up through the grace period, then is closed.
    let closed = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return tokio::time::Instant::now(),
                Some(Ok(msg)) if msg.is_close() => return tokio::time::Instant::now(),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the tunnel must be closed at the end of the grace period");
    assert!(
        closed.duration_since(started) >= Duration::from_millis(1_000 + 2_900),
        "closed after {:?}, before the grace period ended",
        closed.duration_since(started)
    );
    tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .expect("run() returns after shutdown")
        .unwrap();
}

#[test]
fn the_binary_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[shutdown]\ndrain_delay = \"100ms\"\n[keys]\nsigning_public_key = {:?}\npayload_private_key = {:?}\n",
            KEYS.signing_public(),
            KEYS.payload_private()
        ),
    )
    .unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", config.to_str().unwrap(), "--log-format", "json"])
        .env("GATEWAY_LOG", "info")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the "listening" line (every line JSON), then send SIGTERM.
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    loop {
        let line = lines.next().expect("the gateway exited early").unwrap();
        let json: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if json["message"]
            .as_str()
            .unwrap_or_default()
            .contains("listening")
        {
            break;
        }
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert_eq!(exit.code(), Some(0), "{rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("gateway stopped")),
        "{rest:?}"
    );
}

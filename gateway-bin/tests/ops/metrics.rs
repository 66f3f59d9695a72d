//! The admin listener and the metrics: values move as requests flow through the gateway.
//! (Prometheus writes labels in alphabetical order; the series below are spelled that way.)

use crate::support_proxy;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use support_proxy::*;

async fn until(running: &Running, series: &str, want: f64) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = scrape(running).await;
        if sample(&text, series) == Some(want) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn metrics_follow_requests_tokens_upstream_errors_and_tunnels() {
    let mut desktop = Desktop::http().await;
    desktop.ports.insert(6081, ws_upstream("websockify").await);
    let running = spawn_run(file_config(desktop.port_map())).await;

    assert_eq!(get(&running.admin_url("/livez"), None).await.0, 200);
    assert_eq!(get(&running.admin_url("/readyz"), None).await.0, 200);
    let before = scrape(&running).await;
    assert!(before.contains("gateway_build_info{version="), "{before}");
    assert!(before.contains("process_resident_memory_bytes"), "{before}");

    let token = token();
    for _ in 0..2 {
        let (status, _, _) = get(&running.url("/spawner/getenv"), Some(&token)).await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        get(&running.url("/spawner/getenv"), Some("a.b.c")).await.0,
        401
    );
    assert_eq!(get(&running.url("/spawner/getenv"), None).await.0, 401);
    // The website service does not exist here: a connect error.
    assert_eq!(get(&running.url("/"), None).await.0, 502);

    let text = scrape(&running).await;
    for (series, want) in [
        (
            r#"gateway_requests_total{route="spawner",status_class="2xx"}"#,
            2.0,
        ),
        (
            r#"gateway_requests_total{route="spawner",status_class="4xx"}"#,
            2.0,
        ),
        (
            r#"gateway_requests_total{route="website",status_class="5xx"}"#,
            1.0,
        ),
        (r#"gateway_token_outcomes_total{outcome="accepted"}"#, 1.0),
        (r#"gateway_token_outcomes_total{outcome="cache_hit"}"#, 1.0),
        (r#"gateway_token_outcomes_total{outcome="malformed"}"#, 1.0),
        (r#"gateway_token_outcomes_total{outcome="missing"}"#, 1.0),
        (r#"gateway_token_cache_hits_total"#, 1.0),
        (r#"gateway_token_verifications_total"#, 1.0),
        (r#"gateway_token_decryptions_total"#, 1.0),
        (r#"gateway_token_verify_seconds_count"#, 1.0),
        (r#"gateway_token_decrypt_seconds_count"#, 1.0),
        (r#"gateway_token_cache_entries"#, 1.0),
        (
            r#"gateway_upstream_errors_total{kind="connect",route="website"}"#,
            1.0,
        ),
        (
            r#"gateway_upstream_response_seconds_count{route="spawner"}"#,
            2.0,
        ),
        (r#"gateway_key_bits{key="payload"}"#, 1024.0),
    ] {
        assert_eq!(sample(&text, series), Some(want), "{series} in:\n{text}");
    }

    // A WebSocket tunnel: the gauge goes up while it is open and down after, bytes counted.
    let url = format!("ws://{}/websockify?jwt_token={token}", running.addr);
    let stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    let hello = ws.next().await.unwrap().unwrap();
    assert!(hello.is_text());
    let open = until(
        &running,
        r#"gateway_websocket_tunnels_open{route="websockify"}"#,
        1.0,
    )
    .await;
    assert_eq!(
        sample(
            &open,
            r#"gateway_websocket_tunnels_open{route="websockify"}"#
        ),
        Some(1.0)
    );
    ws.send("ping".into()).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap().into_text().unwrap(),
        "ping"
    );
    // While the tunnel is still open, its bytes reach the counters (flushed every 5 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let counted = |text: &str, direction: &str| {
        let series = format!(
            r#"gateway_websocket_bytes_total{{direction="{direction}",route="websockify"}}"#
        );
        sample(text, &series).unwrap_or(0.0)
    };
    loop {
        let text = scrape(&running).await;
        if counted(&text, "to_client") > 4.0 && counted(&text, "to_upstream") > 4.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "an open tunnel's bytes never reached the counters:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ws.close(None).await.unwrap();
    drop(ws);
    let closed = until(
        &running,
        r#"gateway_websocket_tunnels_open{route="websockify"}"#,
        0.0,
    )
    .await;
    assert_eq!(
        sample(
            &closed,
            r#"gateway_websocket_tunnels_open{route="websockify"}"#
        ),
        Some(0.0)
    );
    let to_client = sample(
        &closed,
        r#"gateway_websocket_bytes_total{direction="to_client",route="websockify"}"#,
    )
    .unwrap_or(0.0);
    let to_upstream = sample(
        &closed,
        r#"gateway_websocket_bytes_total{direction="to_upstream",route="websockify"}"#,
    )
    .unwrap_or(0.0);
    assert!(
        to_client > 4.0 && to_upstream > 4.0,
        "{to_client} {to_upstream}"
    );
    assert_eq!(
        sample(
            &closed,
            r#"gateway_requests_total{route="websockify",status_class="1xx"}"#
        ),
        Some(1.0)
    );
}

#[tokio::test]
async fn no_label_holds_a_token_or_a_path() {
    let desktop = Desktop::http().await;
    let running = spawn_run(file_config(desktop.port_map())).await;
    let token = token();
    let container = format!("/container/{token}/29786/spawner/x");
    assert_eq!(get(&running.url(&container), None).await.0, 200);
    let forged = format!("{token}x");
    assert_eq!(
        get(
            &running.url(&format!("/filer?jwt_token={forged}")),
            Some(&forged)
        )
        .await
        .0,
        401
    );
    let text = scrape(&running).await;
    let signature = token.rsplit('.').next().unwrap();
    assert!(!text.contains(&signature[..16]), "{text}");
    assert!(!text.contains("/spawner/x"), "{text}");
    assert!(!text.contains("jwt_token"), "{text}");
}

/// Keep-alive connections stay spread over the connection-serving threads: each accepts on
/// its own, and one that got 4 connections ahead of the least busy hands what it accepts
/// over (`gateway_worker_connections` shows each thread's share).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_connections_stay_spread_over_the_workers() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const WORKERS: usize = 4;
    const CONNECTIONS: usize = 24;
    let mut file = file_config(Default::default());
    file.limits.workers = WORKERS;
    let running = spawn_run(file).await;
    let mut held = Vec::new();
    for _ in 0..CONNECTIONS {
        // One request on each, answered before the next connects: every connection has
        // been accepted and is being served when the next arrives.
        let mut stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 512];
        while !answer.ends_with(b"\r\n\r\nOK\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                .await
                .expect("an answer within 5 s")
                .unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
            answer.extend_from_slice(&buf[..n]);
        }
        held.push(stream);
    }
    let text = scrape(&running).await;
    let loads: Vec<f64> = (0..WORKERS)
        .map(|w| {
            let series = format!("gateway_worker_connections{{worker=\"{w}\"}}");
            sample(&text, &series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
        })
        .collect();
    assert_eq!(loads.iter().sum::<f64>(), CONNECTIONS as f64, "{loads:?}");
    let most = loads.iter().copied().fold(f64::MIN, f64::max);
    let least = loads.iter().copied().fold(f64::MAX, f64::min);
    assert!(most - least <= 4.0, "connections per worker: {loads:?}");
    drop(held);
}

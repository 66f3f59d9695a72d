//! Abuse limits over real sockets: a client address that keeps sending refused tokens gets 429
//! with `Retry-After` (and no token work), other addresses are unaffected, and the window ends.

use crate::support_proxy;

use std::time::Duration;

use gateway::config::AbuseSection;
use support_proxy::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One HTTP/1.1 GET from source address `from`; returns the status and the response head.
async fn get_from(
    from: &str,
    gateway: std::net::SocketAddr,
    path: &str,
    token: &str,
) -> (u16, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(gateway).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: gw\r\nabcauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let head = text.split("\r\n\r\n").next().unwrap_or_default().to_owned();
    (status, head)
}

#[tokio::test]
async fn repeated_refusals_from_one_address_get_429_until_the_window_ends() {
    let desktop = Desktop::http().await;
    let mut file = file_config(desktop.port_map());
    file.abuse = AbuseSection {
        auth_failures_per_ip: 5,
        // Long enough that a loaded machine still sends all six requests inside it.
        auth_failure_window: Duration::from_secs(3),
    };
    let running = spawn_run(file).await;
    let good = token();

    // The window opens at the first refusal, after this.
    let before_first = std::time::Instant::now();
    for i in 0..5 {
        let (status, _) = get_from(
            "127.0.0.2",
            running.addr,
            "/spawner/x",
            &format!("forged.{i}.x"),
        )
        .await;
        assert_eq!(status, 401);
    }
    // Over the limit: 429 with Retry-After, even with a good token, and no verification.
    let verifications_before = sample(&scrape(&running).await, "gateway_token_verifications_total");
    let (status, head) = get_from("127.0.0.2", running.addr, "/spawner/x", &good).await;
    assert_eq!(status, 429, "{head}");
    // What is left of the window, in whole seconds rounded up: 3 unless this machine took
    // over a second for the six requests.
    let spent = before_first.elapsed().as_secs_f64();
    let least = (3.0 - spent).ceil().max(1.0) as u64;
    let retry_after = head
        .to_ascii_lowercase()
        .lines()
        .find_map(|l| l.strip_prefix("retry-after: ")?.trim().parse::<u64>().ok());
    assert!(
        retry_after.is_some_and(|s| (least..=3).contains(&s)),
        "{head} (expected {least}..=3 after {spent:.3} s)"
    );
    let text = scrape(&running).await;
    assert_eq!(
        sample(&text, "gateway_token_verifications_total"),
        verifications_before
    );
    assert_eq!(sample(&text, "gateway_auth_throttled_total"), Some(1.0));
    // Another address is not affected.
    assert_eq!(
        get_from("127.0.0.3", running.addr, "/spawner/x", &good)
            .await
            .0,
        200
    );
    // The window ends.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        get_from("127.0.0.2", running.addr, "/spawner/x", &good)
            .await
            .0,
        200
    );
}

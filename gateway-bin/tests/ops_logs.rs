//! No token, `Authorization`/`ABCAuthorization` value or cookie ever reaches the logs: every
//! log line the process writes at TRACE level during a matrix of requests (good, forged,
//! expired and oversized tokens, in the header, the query, the raw query and the path, plus a
//! WebSocket) is captured and searched for them.

mod support_proxy;

use std::io::Write;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use support_proxy::*;

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn forged(token: &str) -> String {
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    format!("{head}.{flipped}{}", &sig[1..])
}

/// Every distinctive piece of `secret` that must not appear in logs.
fn pieces(secret: &str) -> Vec<String> {
    secret
        .split('.')
        .filter(|part| part.len() >= 20)
        .map(|part| part[..20].to_owned())
        .collect()
}

// The gateway serves connections on worker threads of its own: the capturing subscriber is
// the process-wide default (this binary holds this one test).
#[tokio::test]
async fn no_secret_reaches_any_log_line() {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let mut desktop = Desktop::http().await;
    desktop.ports.insert(6081, ws_upstream("websockify").await);
    let running = spawn_run(file_config(desktop.port_map())).await;

    let good = token();
    let bad = forged(&token());
    let expired = KEYS.minter.mint("127.0.0.1", now() - 10_000, 60).unwrap();
    let long = format!("{}{}", token(), "A".repeat(9_000));
    let basic = "Basic c2VjcmV0LXBhc3N3b3JkLW9mLXRoZS11c2Vy";
    let cookie = "session=Y29va2llLXNlY3JldC12YWx1ZS0xMjM0NTY3ODk";

    let mut statuses = Vec::new();
    for t in [&good, &bad, &expired] {
        statuses.push(get(&running.url("/spawner/getenv"), Some(t)).await.0);
        statuses.push(
            get(&running.url(&format!("/websockify?jwt_token={t}")), None)
                .await
                .0,
        );
        statuses.push(
            get(&running.url(&format!("/terminals/12?{t}")), None)
                .await
                .0,
        );
        statuses.push(
            get(&running.url(&format!("/container/{t}/29786/x")), None)
                .await
                .0,
        );
        statuses.push(
            get(&running.url(&format!("/filer/container/{t}/29783/y")), None)
                .await
                .0,
        );
    }
    statuses.push(
        get(&running.url(&format!("/broadcast?jwt_token={long}")), None)
            .await
            .0,
    );
    let req = http::Request::get(running.url("/filer?file=a"))
        .header("abcauthorization", format!("Bearer {good}"))
        .header("authorization", basic)
        .header("cookie", cookie)
        .body(full(Bytes::new()))
        .unwrap();
    statuses.push(send(req).await.0);
    assert!(
        statuses.contains(&http::StatusCode::OK)
            && statuses.contains(&http::StatusCode::UNAUTHORIZED)
    );

    // A WebSocket with the token in the query and an Authorization header.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://{}/websockify?jwt_token={good}",
            running.addr
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", basic.parse().unwrap());
    let stream = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert!(ws.next().await.unwrap().unwrap().is_text());
    ws.send("hello".into()).await.unwrap();
    assert!(ws.next().await.unwrap().is_ok());
    ws.close(None).await.unwrap();
    drop(ws);
    // The tunnel's end writes one access line with its duration and bytes each way.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    let tunnel_line = loop {
        let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
        if let Some(line) = logs.lines().find(|l| l.contains("tunnel closed")) {
            break line.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no tunnel line:\n{logs}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let field = |name: &str| -> u64 {
        let start = tunnel_line.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let digits: String = tunnel_line[start..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse().unwrap()
    };
    assert!(tunnel_line.contains("route=websockify"), "{tunnel_line}");
    assert!(field("bytes_to_upstream") > 5, "{tunnel_line}");
    assert!(field("bytes_to_client") > 5, "{tunnel_line}");
    field("duration_ms");

    let logs = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    // The logs do speak of these requests, by fingerprint…
    assert!(
        logs.contains(&gateway::token::fingerprint(good.as_bytes())),
        "{logs}"
    );
    assert!(logs.matches("status=401").count() >= 5, "{logs}");
    // URIs are logged, redacted.
    for shown in [
        "uri=/websockify?jwt_token=[redacted]",
        "uri=/terminals/12?[redacted]",
        "uri=/container/[redacted]/29786/x",
        "uri=/filer/container/[redacted]/29783/y",
    ] {
        assert!(logs.contains(shown), "{shown} missing:\n{logs}");
    }
    // …and never show a secret.
    for secret in [&good, &bad, &expired, &long] {
        for piece in pieces(secret) {
            assert!(
                !logs.contains(&piece),
                "token piece {piece} logged:\n{logs}"
            );
        }
    }
    for secret in [
        "c2VjcmV0LXBhc3N3b3JkLW9mLXRoZS11c2Vy",
        "Y29va2llLXNlY3JldC12YWx1ZS0xMjM0NTY3ODk",
    ] {
        assert!(!logs.contains(secret), "header value logged:\n{logs}");
    }
}

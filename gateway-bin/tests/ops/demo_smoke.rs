//! `gateway demo` end to end: the printed token works for HTTP and WebSocket routes, and the
//! page at `/` comes through the gateway.

use crate::support_proxy;

use futures_util::{SinkExt as _, StreamExt as _};
use http::StatusCode;
use support_proxy::{full, send};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_the_page_the_spawner_and_the_websocket_echo() {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let demo = gateway_tooling::demo::start("127.0.0.1:0".parse().unwrap(), 1024, async {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    let base = format!("http://{}", demo.addr);
    assert!(demo.instructions.contains(&base));
    assert!(demo.instructions.contains(&demo.token));

    let get = |path: &str, token: Option<&str>| {
        let mut b = http::Request::get(format!("{base}{path}"));
        if let Some(t) = token {
            b = b.header("abcauthorization", format!("Bearer {t}"));
        }
        send(b.body(full("")).unwrap())
    };
    let (status, _, body) = get("/healthz", None).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "OK\n"));
    let (status, _, body) = get("/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("/websockify?jwt_token="), "{body}");
    let (status, _, body) = get("/spawner/getproclist", Some(&demo.token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.starts_with("fake desktop spawner: GET /spawner/getproclist"),
        "{body}"
    );
    let (status, _, _) = get("/spawner/getproclist", Some("nope")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let req = format!("ws://{}/websockify?jwt_token={}", demo.addr, demo.token)
        .into_client_request()
        .unwrap();
    let stream = tokio::net::TcpStream::connect(demo.addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
    ws.send(Message::text("hello, desktop")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("hello, desktop")
    );

    stop.send(()).unwrap();
    drop(ws);
    tokio::time::timeout(std::time::Duration::from_secs(15), demo.server)
        .await
        .expect("the demo gateway did not stop")
        .unwrap();
}

/// A busy port fails before any key is generated, and the error says how to get a free one.
/// (Invalid key sizes make the order visible: key generation would fail with its own error.)
#[tokio::test]
async fn demo_on_a_busy_port_fails_before_generating_keys() {
    let busy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = busy.local_addr().unwrap();
    let err = gateway_tooling::demo::start(addr, 7, std::future::pending())
        .await
        .expect_err("a busy port must fail");
    let text = format!("{err:#}");
    assert!(text.contains(&format!("cannot listen on {addr}")), "{text}");
    assert!(text.contains("--listen 127.0.0.1:0"), "{text}");

    // On a free port the same call gets as far as key generation, which refuses 7 bits.
    drop(busy);
    let err =
        gateway_tooling::demo::start("127.0.0.1:0".parse().unwrap(), 7, std::future::pending())
            .await
            .expect_err("7-bit keys must fail");
    assert!(format!("{err:#}").contains("--bits"), "{err:#}");
}

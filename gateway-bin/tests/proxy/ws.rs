//! WebSockets through the gateway (tokio-tungstenite on both ends): the token is checked on
//! the upgrade request, before any upstream connection; then frames pass both ways.

use crate::support_proxy;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use gateway::routes::RouteOverride;
use http::StatusCode;
use serde_json::Value;
use support_proxy::*;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

type Ws = WebSocketStream<TcpStream>;

async fn connect(gw: &Gateway, path_and_query: &str) -> Result<Ws, WsError> {
    let mut req = format!("ws://{}{}", gw.addr, path_and_query)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("origin", "http://portal.example".parse().unwrap());
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    client_async(req, stream).await.map(|(ws, _)| ws)
}

/// The upstream's first message: what its handshake request looked like.
async fn hello(ws: &mut Ws) -> Value {
    match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str(&t).unwrap(),
        other => panic!("expected the upstream's hello, got {other:?}"),
    }
}

async fn echo(ws: &mut Ws) {
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let big = vec![7u8; 256 * 1024];
    ws.send(Message::binary(big.clone())).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::binary(big));
}

async fn gateway_for(pod: u16, up: &Upstream) -> Gateway {
    spawn_gateway(file_config(
        [(pod.to_string(), up.addr.port())].into_iter().collect(),
    ))
    .await
}

#[tokio::test]
async fn websockify_with_a_query_token_echoes_and_gets_uri_slash() {
    let up = ws_upstream("websockify").await;
    let gw = gateway_for(6081, &up).await;
    let token = token();
    let mut ws = connect(&gw, &format!("/websockify?jwt_token={token}"))
        .await
        .unwrap();
    let seen = hello(&mut ws).await;
    assert_eq!(seen["uri"], "/", "the query (and token) is replaced by /");
    let h = &seen["headers"];
    assert_eq!(h["host"], "127.0.0.1:6081");
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["origin"], "http://portal.example");
    assert_eq!(h["upgrade"], "websocket");
    echo(&mut ws).await;
}

#[tokio::test]
async fn terminals_with_a_raw_query_token_keeps_uri_and_query() {
    let up = ws_upstream("terminals").await;
    let gw = gateway_for(29781, &up).await;
    let token = token();
    let mut ws = connect(&gw, &format!("/terminals/4242?{token}"))
        .await
        .unwrap();
    let seen = hello(&mut ws).await;
    assert_eq!(seen["uri"], format!("/terminals/4242?{token}"));
    echo(&mut ws).await;
}

#[tokio::test]
async fn broadcast_with_a_query_token_keeps_uri_and_query() {
    let up = ws_upstream("broadcast").await;
    let gw = gateway_for(29784, &up).await;
    let token = token();
    let mut ws = connect(&gw, &format!("/broadcast?jwt_token={token}"))
        .await
        .unwrap();
    let seen = hello(&mut ws).await;
    assert_eq!(seen["uri"], format!("/broadcast?jwt_token={token}"));
    echo(&mut ws).await;
}

#[tokio::test]
async fn refused_upgrade_gets_401_not_101_and_no_upstream_connection() {
    let up = ws_upstream("websockify").await;
    let gw = gateway_for(6081, &up).await;
    let expired = KEYS.minter.mint("127.0.0.1", now() - 1000, 10).unwrap();
    for q in ["", "?jwt_token=garbage", &format!("?jwt_token={expired}")] {
        match connect(&gw, &format!("/websockify{q}")).await {
            Err(WsError::Http(res)) => assert_eq!(res.status(), StatusCode::UNAUTHORIZED),
            Err(other) => panic!("{q}: unexpected error {other}"),
            Ok(_) => panic!("{q}: upgraded without a valid token"),
        }
    }
    assert_eq!(up.accepted(), 0);
}

#[tokio::test]
async fn upgrade_on_a_route_without_websockets_is_a_plain_request() {
    let up = upstream("spawner").await;
    let gw = gateway_for(29786, &up).await;
    let req = http::Request::get(gw.url("/spawner/x"))
        .header("abcauthorization", token())
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .body(full(""))
        .unwrap();
    let (status, _, body) = send(req).await;
    assert_eq!(status, StatusCode::OK);
    let h = &seen(&body)["headers"];
    assert!(h.get("upgrade").is_none(), "{h}");
}

#[tokio::test]
async fn idle_tunnel_is_closed_after_the_routes_read_timeout() {
    let up = ws_upstream("websockify").await;
    let mut file = file_config([("6081".to_owned(), up.addr.port())].into_iter().collect());
    file.routes.insert(
        "websockify".to_owned(),
        RouteOverride {
            // Long enough that a loaded machine's pause before the echo does not end it.
            read_timeout: Some(Duration::from_secs(1)),
            ..Default::default()
        },
    );
    let gw = spawn_gateway(file).await;
    let mut ws = connect(&gw, &format!("/websockify?jwt_token={}", token()))
        .await
        .unwrap();
    hello(&mut ws).await;
    echo(&mut ws).await;
    let next = tokio::time::timeout(Duration::from_secs(5), ws.next()).await;
    match next {
        Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {}
        other => panic!("tunnel still open after the idle timeout: {other:?}"),
    }
}

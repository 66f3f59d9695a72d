//! In-process upstreams on loopback: the demo's fake desktop, the tests' echo services and the
//! load harness's bench upstream all serve through these two accept loops.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::{SinkExt as _, StreamExt as _};
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::server;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How many connections an upstream accepted (tests check that a refused token opened none).
pub type Accepts = Arc<AtomicUsize>;

/// Serves `handler` over HTTP/1.1 (keep-alive, upgrades allowed) on every connection
/// `listener` accepts, counting them in `accepts`, until the task is dropped.
pub async fn serve_http<F, Fut, B>(listener: TcpListener, accepts: Accepts, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response<B>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    while let Ok((stream, _)) = listener.accept().await {
        accepts.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let handler = handler.clone();
                async move { Ok::<_, Infallible>(handler(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

/// A WebSocket echo on every connection `listener` accepts (counted in `accepts`), until the
/// task is dropped: after the handshake it sends `greeting(handshake request)` when that is
/// `Some`, then sends back every text and binary message.
pub async fn websocket_echo<G>(
    listener: TcpListener,
    accepts: Accepts,
    config: Option<WebSocketConfig>,
    greeting: G,
) where
    G: Fn(&server::Request) -> Option<String> + Clone + Send + Unpin + 'static,
{
    while let Ok((stream, _)) = listener.accept().await {
        accepts.fetch_add(1, Ordering::SeqCst);
        let _ = stream.set_nodelay(true);
        let greeting = greeting.clone();
        tokio::spawn(async move {
            let mut hello = None;
            let slot = &mut hello;
            // tungstenite's callback signature fixes the (large) error type.
            #[allow(clippy::result_large_err)]
            let callback = move |req: &server::Request, res| {
                *slot = greeting(req);
                Ok(res)
            };
            let Ok(mut ws) =
                tokio_tungstenite::accept_hdr_async_with_config(stream, callback, config).await
            else {
                return;
            };
            if let Some(hello) = hello
                && ws.send(hello.into()).await.is_err()
            {
                return;
            }
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
    }
}

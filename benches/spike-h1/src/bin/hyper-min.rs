//! The hyper 1 engine: `http1::Builder` serving the client, `client::conn::http1` to the
//! upstream (opened on the first request, kept for the connection's life).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

type Upstream = Rc<RefCell<Option<SendRequest<Incoming>>>>;

async fn forward(
    upstream: Upstream,
    addr: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Incoming>, hyper::Error> {
    let sender = upstream.borrow_mut().take();
    let mut sender = match sender {
        Some(s) if !s.is_closed() => s,
        _ => {
            let io = TokioIo::new(TcpStream::connect(addr).await.expect("upstream"));
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
            tokio::task::spawn_local(conn);
            sender
        }
    };
    sender.ready().await?;
    let res = sender.send_request(req).await;
    *upstream.borrow_mut() = Some(sender);
    res
}

fn main() {
    spike_h1::run(|client, addr| async move {
        let upstream: Upstream = Rc::new(RefCell::new(None));
        let service = hyper::service::service_fn(move |req| forward(upstream.clone(), addr, req));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(client), service)
            .await;
    });
}

//! What the spike proxies share: the listen address and the upstream port, read from a
//! gateway configuration file (so `benches/ab.sh` can start them as it starts a gateway);
//! and, for `hyper-min`, the single-threaded accept loop (`pingora-min` runs Pingora's own).

use std::future::Future;
use std::net::SocketAddr;

use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};

#[derive(Deserialize)]
struct File {
    listen: String,
    upstream: Upstream,
}

#[derive(Deserialize)]
struct Upstream {
    port_map: std::collections::HashMap<String, u16>,
}

/// `--config FILE`: `listen`, and the port that pod port 29786 (the spawner) maps to.
pub fn addresses() -> (SocketAddr, SocketAddr) {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .iter()
        .position(|a| a == "--config")
        .and_then(|i| args.get(i + 1))
        .expect("usage: --config FILE");
    let text = std::fs::read_to_string(path).expect("readable configuration");
    let file: File = toml::from_str(&text).expect("a gateway configuration");
    let listen = file.listen.parse().expect("listen = host:port");
    let port = file.upstream.port_map["29786"];
    (listen, SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Accepts on `listen` forever on one current-thread runtime, serving each connection with
/// `serve(client, upstream)`.
pub fn run<F, Fut>(serve: F)
where
    F: Fn(TcpStream, SocketAddr) -> Fut + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (listen, upstream) = addresses();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let listener = TcpListener::bind(listen).await.expect("listen");
        loop {
            let Ok((client, _)) = listener.accept().await else {
                continue;
            };
            let _ = client.set_nodelay(true);
            tokio::task::spawn_local(serve(client, upstream));
        }
    });
}

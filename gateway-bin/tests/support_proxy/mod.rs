//! Shared helpers of the proxy tests: throw-away keys and tokens, in-process upstreams that
//! report what they received, and a gateway on 127.0.0.1:0.
//!
//! Routes keep their real pod ports; `[upstream] port_map` translates each pod port to the
//! ephemeral port of the fake service standing in for it, so the tests prove which pod port a
//! route dials without needing the real ports to be free.
#![allow(dead_code, clippy::result_large_err)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use gateway::config::{FileConfig, ServiceAddr, Services};
use gateway_tooling::fixtures::KeyDir;
pub use gateway_tooling::fixtures::now;
use gateway_tooling::keygen::PAIRS;
use gateway_tooling::mint::{MintMode, Minter};
use gateway_tooling::upstream::{serve_http, websocket_echo};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

pub type TestBody = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// The pod ports the fake desktop stands in for.
pub const POD_PORTS: [u16; 13] = [
    4714, 6081, 29780, 29781, 29782, 29783, 29784, 29785, 29786, 29787, 29788, 29789, 29790,
];

/// The desktop key pairs and a minter signing with them.
pub struct TestKeys {
    pub keys: KeyDir,
    pub minter: Minter,
}

impl std::ops::Deref for TestKeys {
    type Target = KeyDir;
    fn deref(&self) -> &KeyDir {
        &self.keys
    }
}

/// 1024-bit keys (fast in debug builds), made once per test binary.
pub static KEYS: LazyLock<TestKeys> = LazyLock::new(|| {
    let keys = KeyDir::generate(&PAIRS[..2], 1024).unwrap();
    let minter = keys.minter(MintMode::Pkcs1);
    TestKeys { keys, minter }
});

/// A valid token for the fake desktop on 127.0.0.1.
pub fn token() -> String {
    KEYS.minter.mint("127.0.0.1", now(), 600).unwrap()
}

pub fn full(b: impl Into<Bytes>) -> TestBody {
    Full::new(b.into()).map_err(|never| match never {}).boxed()
}

/// An in-process upstream: answers every request with JSON describing it.
#[derive(Clone)]
pub struct Upstream {
    pub name: String,
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
}

impl Upstream {
    /// A listener on 127.0.0.1:0 and the upstream that will serve it, with no accept yet.
    async fn bind(name: &str) -> (TcpListener, Upstream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let up = Upstream {
            name: name.to_owned(),
            addr: listener.local_addr().unwrap(),
            accepts: Arc::new(AtomicUsize::new(0)),
        };
        (listener, up)
    }

    pub fn accepted(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

async fn describe(name: &str, req: Request<Incoming>) -> Response<TestBody> {
    let (parts, mut body) = req.into_parts();
    let mut len = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(d) = frame.data_ref() {
            len += d.len();
        }
    }
    let mut headers = serde_json::Map::new();
    for name in parts.headers.keys() {
        let all: Vec<&str> = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        headers.insert(name.to_string(), Value::from(all.join(", ")));
    }
    let v = json!({
        "name": name,
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body_len": len,
    });
    let mut res = Response::new(full(v.to_string()));
    res.headers_mut()
        .insert("server", http::HeaderValue::from_static("fake-upstream"));
    res
}

/// Starts an HTTP echo upstream named `name` on 127.0.0.1:0.
pub async fn upstream(name: &str) -> Upstream {
    let (listener, up) = Upstream::bind(name).await;
    let name = name.to_owned();
    tokio::spawn(serve_http(listener, up.accepts.clone(), move |req| {
        let name = name.clone();
        async move { describe(&name, req).await }
    }));
    up
}

/// Starts a WebSocket upstream: on connect it sends one text message describing the
/// handshake request (JSON), then echoes every message.
pub async fn ws_upstream(name: &str) -> Upstream {
    let (listener, up) = Upstream::bind(name).await;
    let name = name.to_owned();
    let hello = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request| {
        let mut headers = serde_json::Map::new();
        for (k, v) in req.headers() {
            headers.insert(k.to_string(), Value::from(v.to_str().unwrap_or("?")));
        }
        Some(json!({"name": name, "uri": req.uri().to_string(), "headers": headers}).to_string())
    };
    tokio::spawn(websocket_echo(listener, up.accepts.clone(), None, hello));
    up
}

/// A fake desktop: one HTTP echo upstream per pod port, named by the port.
pub struct Desktop {
    pub ports: BTreeMap<u16, Upstream>,
}

impl Desktop {
    pub async fn http() -> Desktop {
        let mut ports = BTreeMap::new();
        for p in POD_PORTS {
            ports.insert(p, upstream(&p.to_string()).await);
        }
        Desktop { ports }
    }

    pub fn port_map(&self) -> BTreeMap<String, u16> {
        self.ports
            .iter()
            .map(|(p, up)| (p.to_string(), up.addr.port()))
            .collect()
    }

    pub fn accepted(&self) -> usize {
        self.ports.values().map(Upstream::accepted).sum()
    }
}

/// The base file config of the tests: test keys, loopback targets, a port map.
pub fn file_config(port_map: BTreeMap<String, u16>) -> FileConfig {
    let mut file = KEYS.file_config(
        port_map
            .into_iter()
            .map(|(from, to)| (from.parse().unwrap(), to))
            .collect(),
    );
    file.node_name = "test-node".to_owned();
    file.upstream.connect_timeout = Duration::from_secs(5);
    file
}

pub fn service(up: &Upstream) -> ServiceAddr {
    ServiceAddr {
        host: "127.0.0.1".to_owned(),
        port: up.addr.port(),
    }
}

pub fn services(
    pyos: &Upstream,
    speedtest: &Upstream,
    console: &Upstream,
    website: &Upstream,
) -> Services {
    Services {
        pyos: service(pyos),
        speedtest: service(speedtest),
        console: service(console),
        website: service(website),
    }
}

/// A running gateway; dropping it shuts it down.
pub struct Gateway {
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Gateway {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }
}

pub async fn spawn_gateway(file: FileConfig) -> Gateway {
    let config = file.validate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(gateway::server::serve(listener, config, async {
        let _ = rx.await;
    }));
    Gateway { addr, _stop: tx }
}

pub fn client() -> Client<HttpConnector, TestBody> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request; returns status, headers and the whole body as text.
pub async fn send(req: Request<TestBody>) -> (http::StatusCode, http::HeaderMap, String) {
    let res = client().request(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

pub async fn get(
    url: &str,
    header_token: Option<&str>,
) -> (http::StatusCode, http::HeaderMap, String) {
    let mut b = Request::get(url).header("origin", "http://portal.example");
    if let Some(t) = header_token {
        b = b.header("abcauthorization", format!("Bearer {t}"));
    }
    send(b.body(full(Bytes::new())).unwrap()).await
}

/// Sends a GET with `authorization` as its `ABCAuthorization`; returns the response with its
/// body still unread, for tests that watch the body arrive.
pub async fn get_unread(url: &str, authorization: &str) -> Response<Incoming> {
    let req = Request::get(url)
        .header("abcauthorization", authorization)
        .body(full(Bytes::new()))
        .unwrap();
    client().request(req).await.unwrap()
}

/// Parses an echo upstream's answer.
pub fn seen(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not an echo answer ({e}): {body}"))
}

/// A gateway started the way the binary starts it ([`gateway::server::run`]): public and
/// admin listeners on 127.0.0.1:0, key reload, the shutdown sequence.
pub struct Running {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    signal: Option<oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{}", self.admin, path)
    }

    /// Sends the shutdown signal (SIGTERM's stand-in); returns the run task to await.
    pub fn signal(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(tx) = self.signal.take() {
            let _ = tx.send(());
        }
        self.done.take().unwrap()
    }
}

pub async fn spawn_run(file: FileConfig) -> Running {
    let config = file.validate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let admin_addr = admin.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let done = tokio::spawn(async move {
        gateway::server::run(listener, Some(admin), config, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Running {
        addr,
        admin: admin_addr,
        signal: Some(tx),
        done: Some(done),
    }
}

/// The value of one sample (`name{labels}` exactly as exposed) in a Prometheus scrape.
pub fn sample(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// Scrapes the admin listener's `/metrics`.
pub async fn scrape(running: &Running) -> String {
    let (status, _, body) = get(&running.admin_url("/metrics"), None).await;
    assert_eq!(status, 200);
    body
}

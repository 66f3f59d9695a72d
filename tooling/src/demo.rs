//! `gateway demo`: the gateway with throw-away keys in front of a fake desktop on loopback.
//!
//! It generates the desktop signing and payload pairs into a temporary directory, starts
//! fake pod services on ephemeral loopback ports (an HTTP echo for `/spawner` and `/filer`, a
//! WebSocket echo for `/websockify`, and a one-page `website`), points the real routes at them
//! with `[upstream] port_map`, mints a pyos-shaped token for `127.0.0.1`, and prints commands
//! to try. The page at `/` opens the WebSocket through the gateway and shows the echo.
//!
//! Deliberately omitted: TLS, pyos, and every other pod service (their routes answer 502).

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::fixtures::{self, KeyDir};
use crate::keygen::PAIRS;
use crate::mint::MintMode;
use crate::upstream::{Accepts, serve_http, websocket_echo};
use gateway::config::{FileConfig, ServiceAddr, Services};

/// How long the demo token lives (long enough to play with).
pub const TOKEN_LIFETIME_SECS: i64 = 8 * 3600;
/// Key size of the demo's throw-away keys.
pub const DEMO_KEY_BITS: usize = 2048;

/// A running demo.
#[derive(Debug)]
pub struct Running {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    /// A valid token for the fake desktop.
    pub token: String,
    /// The ready-to-paste commands.
    pub instructions: String,
    /// The gateway task; ends after the shutdown future completes.
    pub server: JoinHandle<()>,
    _keys: KeyDir,
}

/// Binds the demo's public listener; the error suggests a free port.
async fn bind(listen: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(listen).await.with_context(|| {
        format!("cannot listen on {listen} (in use? `--listen 127.0.0.1:0` picks a free port)")
    })
}

/// Starts the fake desktop and the gateway on `listen` with `bits`-bit keys.
pub async fn start(
    listen: SocketAddr,
    bits: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    start_on(bind(listen).await?, bits, shutdown).await
}

/// [`start`] on a listener already bound: a busy port fails before seconds of key generation.
async fn start_on(
    listener: TcpListener,
    bits: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    // The desktop payload and signing pairs.
    let keys = tokio::task::spawn_blocking(move || KeyDir::generate(&PAIRS[..2], bits))
        .await
        .context("key generation task failed")??;
    let token = keys.try_minter(MintMode::Pkcs1)?.mint(
        "127.0.0.1",
        fixtures::now(),
        TOKEN_LIFETIME_SECS,
    )?;

    let mut port_map = BTreeMap::new();
    let ws = TcpListener::bind("127.0.0.1:0").await?;
    port_map.insert(6081, ws.local_addr()?.port());
    tokio::spawn(websocket_echo(ws, Accepts::default(), None, |_| None));
    for (pod_port, role) in [(29786u16, "spawner"), (29783, "filer")] {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        port_map.insert(pod_port, l.local_addr()?.port());
        tokio::spawn(http_echo(l, role));
    }
    let site = TcpListener::bind("127.0.0.1:0").await?;
    let site_port = site.local_addr()?.port();
    tokio::spawn(website(site, page(&token)));

    let file = FileConfig {
        listen: listener.local_addr()?.to_string(),
        node_name: "demo-node".to_owned(),
        services: Services {
            website: ServiceAddr {
                host: "127.0.0.1".to_owned(),
                port: site_port,
            },
            ..Services::default()
        },
        ..keys.file_config(port_map)
    };
    let config = file.validate()?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(gateway::server::serve(listener, config, shutdown));
    Ok(Running {
        addr,
        instructions: instructions(addr, &token),
        token,
        server,
        _keys: keys,
    })
}

/// `gateway demo`: start, print the commands, run until `shutdown`.
pub async fn run(
    listen: SocketAddr,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let listener = bind(listen).await?;
    eprintln!("generating throw-away {DEMO_KEY_BITS}-bit keys…");
    let running = start_on(listener, DEMO_KEY_BITS, shutdown).await?;
    println!("{}", running.instructions);
    running.server.await.context("gateway task failed")?;
    Ok(())
}

fn instructions(addr: SocketAddr, token: &str) -> String {
    format!(
        r#"
abcdesktop gateway demo: gateway on http://{addr}, fake desktop on 127.0.0.1.

  TOKEN='{token}'

Open http://{addr}/ in a browser: the page opens /websockify through the gateway and shows the echo.

  # health and node
  curl -i http://{addr}/healthz
  # spawner (token in the ABCAuthorization header); the fake desktop echoes what it received
  curl -i -H "ABCAuthorization: Bearer $TOKEN" http://{addr}/spawner/getproclist
  # filer upload, streamed
  head -c 10000000 /dev/urandom | curl -i -H "ABCAuthorization: Bearer $TOKEN" -T - http://{addr}/filer
  # the same spawner call with the token in the path
  curl -i "http://{addr}/container/$TOKEN/29786/spawner/getproclist"
  # a bad token: 401, and no upstream connection
  curl -i -H "ABCAuthorization: Bearer nope" http://{addr}/spawner/getproclist
  # WebSocket echo (token in the query), with websocat
  websocat "ws://{addr}/websockify?jwt_token=$TOKEN"

Ctrl-C to stop.
"#
    )
}

fn page(token: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>abcdesktop gateway demo</title>
<style>body{{font-family:sans-serif;max-width:48em;margin:2em auto}}pre{{background:#eee;padding:1em;min-height:6em;white-space:pre-wrap;overflow-wrap:anywhere}}</style>
</head><body>
<h1>abcdesktop gateway demo</h1>
<p>This page came through the gateway's <code>/</code> route. The WebSocket below goes to
<code>/websockify?jwt_token=…</code>; the gateway checks the token, then splices the connection
to the fake desktop's echo service.</p>
<p><input id="msg" value="hello, desktop"> <button id="send">send</button>
<button id="spawner">GET /spawner/getproclist</button></p>
<pre id="log"></pre>
<script>
const token = "{token}";
const log = (m) => {{ document.getElementById("log").textContent += m + "\n"; }};
const ws = new WebSocket(`ws://${{location.host}}/websockify?jwt_token=${{token}}`);
ws.onopen = () => {{
  log("websocket open; sending: " + document.getElementById("msg").value);
  ws.send(document.getElementById("msg").value);
}};
ws.onmessage = (e) => log("echo: " + e.data);
ws.onclose = (e) => log("websocket closed (" + e.code + ")");
document.getElementById("send").onclick = () => ws.send(document.getElementById("msg").value);
document.getElementById("spawner").onclick = async () => {{
  const r = await fetch("/spawner/getproclist", {{ headers: {{ ABCAuthorization: "Bearer " + token }} }});
  log(r.status + " " + (await r.text()));
}};
</script>
</body></html>
"#
    )
}

/// A fake pod HTTP service: answers with what it received (body counted, not kept).
async fn http_echo(listener: TcpListener, role: &'static str) {
    serve_http(
        listener,
        Accepts::default(),
        move |req: Request<Incoming>| async move {
            let (parts, mut body) = req.into_parts();
            let mut received = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    received += data.len();
                }
            }
            let mut text = format!("fake desktop {role}: {} {}\n", parts.method, parts.uri);
            for (name, value) in &parts.headers {
                text.push_str(&format!(
                    "  {name}: {}\n",
                    String::from_utf8_lossy(value.as_bytes())
                ));
            }
            text.push_str(&format!("received {received} body bytes\n"));
            let mut res = Response::new(Full::new(Bytes::from(text)));
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            res
        },
    )
    .await;
}

/// The fake `website` service: the demo page for every path.
async fn website(listener: TcpListener, page: String) {
    let page = Bytes::from(page);
    serve_http(
        listener,
        Accepts::default(),
        move |_req: Request<Incoming>| {
            let page = page.clone();
            async move {
                let mut res = Response::new(Full::new(page));
                res.headers_mut().insert(
                    header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/html; charset=utf-8"),
                );
                res
            }
        },
    )
    .await;
}

//! nginx's path semantics, checked against a real nginx.
//!
//! Debian's nginx (installed by `scripts/install-nginx.sh` when missing; the test fails, never
//! skips, when it cannot be) runs as a process of the test on 127.0.0.1 with a temporary
//! prefix, configured with abcdesktop's locations in file order and each route's `proxy_pass`
//! form (`NGINX_CONF`: `route.conf` of route 3.3–4.x, with the 3.3 rewrite for `/console` and
//! `/speedtest` that the gateway follows). Every location of it and every route of the gateway
//! reach the same raw-TCP recorders (one per pod port and service), which answer with the
//! request target they received. Each spelling of `SPELLINGS` goes byte for byte, with a token
//! where its route wants one, to both; the test compares the status, the route and the
//! recorder plus request target, and lists every spelling that differs.

use crate::nginx::start_nginx;
use crate::support_proxy;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gateway::config::{ServiceAddr, Services};
use gateway::routes::{DEFAULT_CONTAINER_PORTS, RequestPath, RouteTable};
use gateway::token::TokenSource;
use support_proxy::{POD_PORTS, file_config, spawn_gateway, token};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// Every wait of this test ends by then.
const DEADLINE: Duration = Duration::from_secs(10);

/// Request targets; `TOKEN` stands for a valid token (the `/container/<jwt>/…` forms). The
/// other token sources get theirs added the same way for nginx and the gateway.
const SPELLINGS: &[&str] = &[
    // The issue's examples.
    "/spawner/x",
    "/%73pawner/x",
    "//spawner/x",
    "/./spawner/x",
    "/API/../spawner/x",
    "/status/../filer/x",
    "/webs%6fckify",
    "/spawner/../API/x",
    "/../x",
    // Escaped separators and dots.
    "/spawner%2Fx",
    "/%2F%2Fspawner/x",
    "/spawner/%2e%2e/API/x",
    "/%2e%2e/x",
    "/%2e",
    "/spawner/./../filer/x",
    "/API/../../x",
    "/a/b/../../filer",
    // What nginx refuses.
    "/spawner/x%00",
    "/%",
    "/%4",
    "/%zz/spawner",
    "/..",
    // Backslashes, trailing dots, odd segments.
    "/spawner\\x",
    "/spawner\\..\\API",
    "/spawner/x.",
    "/spawner/x/.",
    "/spawner/x/..",
    "/spawner/..",
    "/spawner/...",
    "/spawner/..x",
    "/.",
    "/",
    "/index.html",
    // Queries are never normalized.
    "/spawner/x?a=../../b",
    "/filer?file=%2e%2e/x",
    "/spawner/x?",
    "/API/x?y=%2F..",
    // Decoded `%`, `#` and `?` are plain characters.
    "/gamepad%3Fx",
    "/filer/a%23b",
    "/filer/a%25b",
    "/spawner/x#frag",
    // Exact locations.
    "/healthz",
    "/%68ealthz",
    "//healthz",
    "/healthz/",
    "/node",
    "/websockify",
    "/./websockify",
    "/websockify/",
    "/signalling",
    "/signalling?x=1",
    // Container forms.
    "/container/TOKEN/29786/spawner/x?q=1",
    "/container/TOKEN/29786/%73pawner/a%20b",
    "/container/TOKEN/29786/a%3Fb?c=d",
    "/container/TOKEN/29786/a/../b",
    "/container/TOKEN/29786/a%2fb",
    "/container/TOKEN/29786/a+b%2Bc%7E",
    "/container/TOKEN/29786/a%23b%25c",
    "/container/TOKEN/29786/%FF%e9",
    "/container/TOKEN/29786/",
    "//container/TOKEN/29786/x",
    "/x/../container/TOKEN/29786/y",
    "/filer/container/TOKEN/29786/y",
    "/container/TOKEN/29786/a%0Ab",
    "/container/TOKEN/29786/a%0A",
    "/container/TOKEN/6081",
    "/container/TOKEN/6081?x=1",
    "/container/29786",
    "/container/29786%0A",
    "/container/%32%39%37%38%36",
    // Terminals.
    "/terminals/123",
    "/terminals/123/size",
    "/terminals/1/../2/size",
    "/terminals%2F1%2Fsize",
    "/terminals",
    "/terminals?cols=80",
    // pyos: the regex is case-sensitive and anchored at the start of the normalized path.
    "/API/x",
    "/%41PI/x",
    "/api/x",
    "/x/../API/x",
    "/status.html",
    "/statu%73",
    "/API/manager/image",
    "/API/manager/%69mage",
    "/API/composer/launchdesktop",
    "/img/app/a.svg",
    "/img/app/../x",
    "/img/app",
    // Services with the 3.3 rewrite.
    "/console",
    "/console?x=1",
    "/console/x?y=1",
    "/console//x",
    "/console/%41",
    "/console/a%20b",
    "/console/%3F",
    "/consolex",
    "/speedtest",
    "/speedtest/x",
    "/speedtest/../x",
    // Other desktop routes.
    "/filer",
    "/filer/%E9t%E9",
    "/printerfiler",
    "/printerfile",
    "/broadcast",
    "/sound",
    "/sound/../microphone",
    "/microphone",
    "/gamepad",
    "/snapshot/x",
    "/u8_1_11025",
    "/u8_1_11025?x=1",
    "/u8_1_11025/../s16_1_44100",
    "/s16_1_11025",
    "/u8_1_22050",
    "/s16_1_22050",
    "/u8_1_44100",
    "/ulaw8_1_8000",
    "/alaw8_1_8000",
];

/// Where the gateway differs from nginx on purpose (README, "Path semantics"): the spelling
/// and what the gateway does instead (status, route, recorder and request target).
const DEVIATIONS: &[(&str, u16, &str, &str)] = &[
    // nginx's anchored rewrite does not apply to a match further in, so nginx sends the whole
    // path, token included; the gateway sends the rest only.
    (
        "/filer/container/TOKEN/29786/y",
        200,
        "container-path",
        "pod:29786 /y",
    ),
    // The same where a newline in the rest stops the rewrite's `.*`.
    (
        "/container/TOKEN/29786/a%0Ab",
        200,
        "container-path",
        "pod:29786 /a%0Ab",
    ),
    // hyper drops a fragment (no browser sends one); nginx passes it on.
    ("/spawner/x#frag", 200, "spawner", "pod:29786 /spawner/x"),
    // nginx answers a 301 to `/img/app/` (its redirect for a proxied prefix location ending
    // in `/`); the gateway sends the path to the web site, like any path no route takes.
    ("/img/app", 200, "website", "website /img/app"),
];

/// abcdesktop's locations with the recorders as upstreams. `@NAME@` are filled in.
const NGINX_CONF: &str = r#"
worker_processes 1;
master_process off;
error_log @DIR@/error.log info;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path @DIR@/client_body;
    proxy_temp_path @DIR@/proxy;
    fastcgi_temp_path @DIR@/fastcgi;
    uwsgi_temp_path @DIR@/uwsgi;
    scgi_temp_path @DIR@/scgi;
    # The pod port a /container path names, to the recorder standing in for it.
    map $port $pod {
        default 127.0.0.1:1;
@POD_MAP@
    }
    server {
        listen 127.0.0.1:@LISTEN@;
@SETS@
        location = /healthz { add_header X-Route healthz always; return 200 "OK\n"; }
        location = /node { add_header X-Route node always; return 200 "test-node\n"; }
        location = /websockify {
            proxy_set_header X-Route websockify;
            proxy_pass http://$pod6081/;
        }
        location = /signalling {
            proxy_set_header X-Route signalling;
            proxy_pass http://$pod29787/;
        }
        location ~ /container/([^/]+)/([0-9]+)/(.*) {
            set $port $2;
            proxy_set_header X-Route container-path;
            rewrite ^/container/([^/]+)/([0-9]+)/(.*)$ /$3 break;
            proxy_pass http://$pod;
        }
        location ~ /container/([^/]+)/([0-9]+) {
            set $port $2;
            proxy_set_header X-Route container-root;
            proxy_pass http://$pod/;
        }
        location ~ /container/([0-9]+)$ {
            set $port $1;
            proxy_set_header X-Route container-port;
            proxy_pass http://$pod;
        }
        location ~ /terminals/(.*)/size {
            proxy_set_header X-Route terminal-size;
            proxy_pass http://$pod29781;
        }
        location ~ ^/API/manager/image {
            proxy_set_header X-Route pyos-manager-image;
            proxy_pass http://$pyos;
        }
        location ~ ^/API/composer/launchdesktop {
            proxy_set_header X-Route pyos-launchdesktop;
            proxy_pass http://$pyos;
        }
        location ~ ^/(moauth|fauth|gauth|oauth|autologin|API|status) {
            proxy_set_header X-Route pyos;
            proxy_pass http://$pyos;
        }
        location /spawner { proxy_set_header X-Route spawner; proxy_pass http://$pod29786; }
        location /terminals/ { proxy_set_header X-Route terminals-ws; proxy_pass http://$pod29781; }
        location /terminals { proxy_set_header X-Route terminals; proxy_pass http://$pod29781; }
        location /filer { proxy_set_header X-Route filer; proxy_pass http://$pod29783; }
        location /printerfiler {
            proxy_set_header X-Route printerfiler;
            proxy_pass http://$pod29782;
        }
        location /broadcast { proxy_set_header X-Route broadcast; proxy_pass http://$pod29784; }
        location /sound { proxy_set_header X-Route sound; proxy_pass http://$pod29788/; }
        location /microphone {
            proxy_set_header X-Route microphone;
            proxy_pass http://$pod29789/;
        }
        location /gamepad { proxy_set_header X-Route gamepad; proxy_pass http://$pod29790/; }
        location /snapshot { proxy_set_header X-Route snapshot; proxy_pass http://$pod29785; }
        location = /speedtest { proxy_set_header X-Route speedtest; proxy_pass http://$speedtest/; }
        location /speedtest {
            proxy_set_header X-Route speedtest;
            rewrite ^/speedtest(/.*)$ $1 break;
            proxy_pass http://$speedtest;
        }
        location /img/app/ { proxy_set_header X-Route img-app; proxy_pass http://$pyos; }
        location = /console { proxy_set_header X-Route console; proxy_pass http://$console/; }
        location /console {
            proxy_set_header X-Route console;
            rewrite ^/console(/.*)$ $1 break;
            proxy_pass http://$console;
        }
        location / { proxy_set_header X-Route website; proxy_pass http://$website; }
@PCM@
    }
}
"#;

/// The PCM sound locations (`sound.conf`).
const PCM: [&str; 8] = gateway::routes::PCM_SOUND_PATHS;

// === recorders ===

/// Reads a request or response head (up to the blank line, or what came before EOF).
async fn read_head(stream: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 64 * 1024 {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
    }
    buf
}

/// Bytes outside printable ASCII as `\xNN`, so a target fits in a header and a message.
fn printable(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| {
            if (0x21..0x7f).contains(&b) && b != b'\\' {
                char::from(b).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect()
}

/// The request target of a request head's first line.
fn target_of(head: &[u8]) -> &[u8] {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    line.split(|&b| b == b' ').nth(1).unwrap_or_default()
}

/// A raw-TCP upstream named `name`: answers every request with `x-rec: <name> <target>
/// <X-Route or ->`.
async fn recorder(name: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let name = name.clone();
            tokio::spawn(async move {
                let Ok(head) = tokio::time::timeout(DEADLINE, read_head(&mut stream)).await else {
                    return;
                };
                let mut headers = [httparse::EMPTY_HEADER; 64];
                let mut req = httparse::Request::new(&mut headers);
                let route = match req.parse(&head) {
                    Ok(httparse::Status::Complete(_)) => req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("x-route"))
                        .map_or_else(|| "-".to_owned(), |h| printable(h.value)),
                    _ => "unparseable".to_owned(),
                };
                let rec = format!("{name} {} {route}", printable(target_of(&head)));
                let res = format!(
                    "HTTP/1.1 200 OK\r\nx-rec: {rec}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = stream.write_all(res.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    port
}

/// `NGINX_CONF` with the recorders' ports.
fn nginx_conf(recorders: &BTreeMap<String, u16>) -> String {
    let port = |name: &str| recorders.get(name).copied().unwrap_or(1);
    let pod_map: String = POD_PORTS
        .iter()
        .map(|p| format!("        {p} 127.0.0.1:{};\n", port(&format!("pod:{p}"))))
        .collect();
    let mut sets: String = POD_PORTS
        .iter()
        .map(|p| {
            format!(
                "        set $pod{p} 127.0.0.1:{};\n",
                port(&format!("pod:{p}"))
            )
        })
        .collect();
    for s in ["pyos", "speedtest", "console", "website"] {
        sets.push_str(&format!("        set ${s} 127.0.0.1:{};\n", port(s)));
    }
    let pcm: String = PCM
        .iter()
        .map(|n| {
            format!(
                "        location /{n} {{ proxy_set_header X-Route {n}; \
                 proxy_pass http://$pod4714/listen/source/{n}.monitor; }}\n"
            )
        })
        .collect();
    NGINX_CONF
        .replace("@POD_MAP@", &pod_map)
        .replace("@SETS@", &sets)
        .replace("@PCM@", &pcm)
}

// === the exchange ===

/// What one server made of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    status: u16,
    /// The route (nginx: its `X-Route`; the gateway: its table on the normalized path).
    route: Option<String>,
    /// Recorder and request target it received (`TOKEN` for the token).
    upstream: Option<String>,
}

/// Sends `GET <target>` with `headers` over a fresh connection; the status and headers of the
/// answer.
async fn exchange(addr: SocketAddr, target: &[u8], headers: &str) -> (u16, Vec<(String, String)>) {
    let mut req = b"GET ".to_vec();
    req.extend_from_slice(target);
    req.extend_from_slice(b" HTTP/1.1\r\nHost: gateway.test\r\n");
    req.extend_from_slice(headers.as_bytes());
    req.extend_from_slice(b"Connection: close\r\n\r\n");
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&req).await.unwrap();
        read_head(&mut stream).await
    };
    let head = tokio::time::timeout(DEADLINE, exchange)
        .await
        .expect("an answer within the deadline");
    let mut parsed = [httparse::EMPTY_HEADER; 64];
    let mut res = httparse::Response::new(&mut parsed);
    match res.parse(&head) {
        Ok(httparse::Status::Complete(_)) => (
            res.code.unwrap_or(0),
            res.headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        ),
        _ => (0, Vec::new()),
    }
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The path of a request target: up to its query (and fragment).
fn path_of(target: &str) -> &str {
    target.split(['?', '#']).next().unwrap_or(target)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_spellings_route_and_go_upstream_as_nginx_sends_them() {
    let mut recorders = BTreeMap::new();
    for p in POD_PORTS {
        let name = format!("pod:{p}");
        recorders.insert(name.clone(), recorder(name).await);
    }
    for s in ["pyos", "speedtest", "console", "website"] {
        recorders.insert(s.to_owned(), recorder(s.to_owned()).await);
    }
    let nginx = start_nginx(&nginx_conf(&recorders), |_| {});

    let service = |name: &str| ServiceAddr {
        host: "127.0.0.1".to_owned(),
        port: recorders[name],
    };
    let port_map = POD_PORTS
        .iter()
        .map(|p| (p.to_string(), recorders[&format!("pod:{p}")]))
        .collect();
    let mut file = file_config(port_map);
    file.services = Services {
        pyos: service("pyos"),
        speedtest: service("speedtest"),
        console: service("console"),
        website: service("website"),
    };
    let gateway = spawn_gateway(file).await;
    let table = RouteTable::abcdesktop(DEFAULT_CONTAINER_PORTS.to_vec(), false, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("{e:?}"));

    let token = token();
    let hide = |s: &str| s.replace(&token, "TOKEN");
    let mut differ = Vec::new();
    let mut routes_seen = std::collections::BTreeSet::new();
    for &spelling in SPELLINGS {
        let mut target = spelling.replace("TOKEN", &token);
        // The gateway's route decides where the token goes; both servers get the same bytes.
        let route = RequestPath::parse(path_of(&target))
            .ok()
            .and_then(|p| table.find(&p).map(|m| m.route.clone()));
        let mut headers = String::new();
        match route.as_ref().and_then(|r| r.token) {
            Some(TokenSource::Header) => headers = format!("ABCAuthorization: {token}\r\n"),
            Some(TokenSource::Query) => {
                let sep = if target.contains('?') { '&' } else { '?' };
                target = format!("{target}{sep}jwt_token={token}");
            }
            Some(TokenSource::RawQuery) if !target.contains('?') => {
                target = format!("{target}?{token}");
            }
            _ => {}
        }

        let (status, h) = exchange(nginx.addr, target.as_bytes(), &headers).await;
        let rec = header(&h, "x-rec").map(hide);
        let by_nginx = Outcome {
            status,
            route: match &rec {
                Some(rec) => rec.rsplit(' ').next().map(str::to_owned),
                None => header(&h, "x-route").map(str::to_owned),
            },
            upstream: rec
                .as_deref()
                .and_then(|r| r.rsplit_once(' '))
                .map(|(u, _)| u.to_owned()),
        };
        let (status, h) = exchange(gateway.addr, target.as_bytes(), &headers).await;
        let rec = header(&h, "x-rec").map(hide);
        let by_gateway = Outcome {
            status,
            route: (status != 400)
                .then(|| route.as_ref().map(|r| r.name.clone()))
                .flatten(),
            upstream: rec
                .as_deref()
                .and_then(|r| r.rsplit_once(' '))
                .map(|(u, _)| u.to_owned()),
        };
        if let Some(r) = &by_nginx.route {
            routes_seen.insert(r.clone());
        }
        match DEVIATIONS.iter().find(|(s, ..)| *s == spelling) {
            Some(&(_, status, route, upstream)) => {
                let documented = Outcome {
                    status,
                    route: Some(route.to_owned()),
                    upstream: Some(upstream.to_owned()),
                };
                assert_ne!(by_nginx, documented, "{spelling}: no longer a deviation");
                if by_gateway != documented {
                    differ.push(format!(
                        "{spelling}\n    gateway {by_gateway:?}\n    documented {documented:?}"
                    ));
                }
            }
            None if by_gateway != by_nginx => differ.push(format!(
                "{spelling}\n    gateway {by_gateway:?}\n    nginx   {by_nginx:?}"
            )),
            None => {}
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} spellings differ from nginx:\n{}",
        differ.len(),
        SPELLINGS.len(),
        differ.join("\n")
    );
    // The table reaches every route, so each location of the gateway is compared.
    let missing: Vec<&str> = table
        .routes()
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !routes_seen.contains(*n))
        .collect();
    assert!(missing.is_empty(), "no spelling reaches {missing:?}");
}

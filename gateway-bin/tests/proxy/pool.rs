//! The upstream connection pool, seen from a scripted upstream that counts and watches its
//! TCP connections: reuse, the per-host idle bound, upstreams that close kept-alive
//! connections, and responses abandoned half way. (Refused and failing upstreams are in
//! `ops/faults.rs`.)

use crate::nginx::{Nginx, start_nginx, start_proxy_nginx};
use crate::support_proxy;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use http_body_util::BodyExt;
use support_proxy::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};

/// How the scripted upstream treats each connection.
#[derive(Clone, Copy)]
enum Script {
    /// Answers every request with `ok`, keeps the connection.
    KeepAlive,
    /// Answers every request with a bodiless `204`, keeps the connection.
    NoContent,
    /// Answers one request, then closes (no `Connection: close`: the gateway learns it from
    /// the socket, as when an upstream's keep-alive timeout fires).
    CloseAfterOne,
    /// Answers each request only once `gate` lets it (one permit per answer).
    Gated,
    /// Starts a body of a gigabyte and trickles it out.
    Endless,
    /// Answers each head at once with the request's path as the body, without reading any
    /// body (Python's `http.server` does so on a POST it does not handle): body bytes are
    /// read as the next request.
    IgnoresBodies,
    /// Answers each request twice: its path, then an `extra` response nobody asked for.
    AnswersTwice,
}

struct Scripted {
    port: u16,
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    closed: Arc<Notify>,
}

impl Scripted {
    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Reads one request head; `None` when the peer closed first.
async fn read_head(conn: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// The path of a request head's request line.
fn path_of(head: &str) -> &str {
    head.split(' ').nth(1).unwrap_or("?")
}

fn answer_with(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

async fn scripted(script: Script) -> Scripted {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = Scripted {
        port: listener.local_addr().unwrap().port(),
        accepted: Arc::default(),
        open: Arc::default(),
        gate: Arc::new(Semaphore::new(0)),
        closed: Arc::default(),
    };
    let (accepted, open, gate, closed) = (
        s.accepted.clone(),
        s.open.clone(),
        s.gate.clone(),
        s.closed.clone(),
    );
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            accepted.fetch_add(1, Ordering::SeqCst);
            open.fetch_add(1, Ordering::SeqCst);
            let (open, gate, closed) = (open.clone(), gate.clone(), closed.clone());
            tokio::spawn(async move {
                while let Some(head) = read_head(&mut conn).await {
                    if let Script::IgnoresBodies = script {
                        if conn.write_all(&answer_with(path_of(&head))).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    if let Script::AnswersTwice = script {
                        let mut both = answer_with(path_of(&head));
                        both.extend(answer_with("extra"));
                        if conn.write_all(&both).await.is_err() {
                            break;
                        }
                        continue;
                    }
                    if let Script::Gated = script {
                        gate.acquire().await.unwrap().forget();
                    }
                    if let Script::Endless = script {
                        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 1073741824\r\n\r\n";
                        if conn.write_all(head).await.is_err() {
                            break;
                        }
                        while conn.write_all(&[b'x'; 1024]).await.is_ok() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        break;
                    }
                    let answer: &[u8] = match script {
                        Script::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n",
                        _ => b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
                    };
                    if conn.write_all(answer).await.is_err() {
                        break;
                    }
                    if let Script::CloseAfterOne = script {
                        break;
                    }
                }
                drop(conn);
                open.fetch_sub(1, Ordering::SeqCst);
                closed.notify_waiters();
            });
        }
    });
    s
}

/// A gateway with one worker thread (so one pool) whose desktop ports all go to `up`.
async fn gateway_to(up: &Scripted, max_idle: usize) -> Gateway {
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), up.port)).collect();
    let mut file = file_config(port_map);
    file.limits.workers = 1;
    file.upstream.pool_max_idle_per_host = max_idle;
    spawn_gateway(file).await
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let up = scripted(Script::KeepAlive).await;
    let gw = gateway_to(&up, 8).await;
    let t = token();
    for i in 0..50 {
        let (status, _, body) = get(&gw.url(&format!("/spawner/{i}")), Some(&t)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok"),
            "request {i}"
        );
    }
    assert_eq!(up.accepted(), 1, "every request after the first reuses it");
    assert_eq!(up.open(), 1);
}

#[tokio::test]
async fn bodiless_answers_give_their_connection_back_too() {
    let up = scripted(Script::NoContent).await;
    let gw = gateway_to(&up, 8).await;
    let t = token();
    for i in 0..20 {
        let (status, _, body) = get(&gw.url(&format!("/spawner/{i}")), Some(&t)).await;
        assert_eq!((status, body.as_str()), (StatusCode::NO_CONTENT, ""));
    }
    assert_eq!(
        up.accepted(),
        1,
        "a 204 never read to its end still frees its connection"
    );
}

#[tokio::test]
async fn idle_connections_beyond_the_per_host_bound_are_closed() {
    let up = scripted(Script::Gated).await;
    let gw = gateway_to(&up, 2).await;
    let t = token();
    // Five requests at once need five upstream connections.
    let requests: Vec<_> = (0..5)
        .map(|i| {
            let url = gw.url(&format!("/spawner/{i}"));
            let t = t.clone();
            tokio::spawn(async move { get(&url, Some(&t)).await })
        })
        .collect();
    wait_for("five upstream connections", || up.accepted() == 5).await;
    up.gate.add_permits(5);
    for r in requests {
        let (status, _, body) = r.await.unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
    }
    // Back in the pool, only two may stay.
    wait_for("three connections closed", || up.open() == 2).await;
    // The two kept serve the next requests, one after the other.
    up.gate.add_permits(10);
    for i in 0..10 {
        let (status, _, _) = get(&gw.url(&format!("/spawner/again{i}")), Some(&t)).await;
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(up.accepted(), 5, "the kept connections were reused");
}

#[tokio::test]
async fn connections_the_upstream_closes_are_not_reused() {
    let up = scripted(Script::CloseAfterOne).await;
    let gw = gateway_to(&up, 8).await;
    let t = token();
    for i in 0..30 {
        let (status, _, body) = get(&gw.url(&format!("/spawner/{i}")), Some(&t)).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::OK, "ok"),
            "request {i} met a closed pooled connection"
        );
        // Sometimes right away, sometimes once the close has arrived.
        if i % 2 == 0 {
            wait_for("the upstream close", || up.open() == 0).await;
        }
    }
    assert_eq!(up.accepted(), 30);
}

#[tokio::test]
async fn a_response_abandoned_half_way_closes_its_upstream_connection() {
    let up = scripted(Script::Endless).await;
    let gw = gateway_to(&up, 8).await;
    let res = get_unread(&gw.url("/spawner/big"), &token()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert!(first.data_ref().is_some_and(|d| !d.is_empty()));
    assert_eq!(up.open(), 1);
    // The client goes away mid-body: the gateway must not keep (or reuse) a connection
    // that is still carrying the rest of that body.
    drop(body);
    tokio::time::timeout(Duration::from_secs(10), async {
        while up.open() > 0 {
            up.closed.notified().await;
        }
    })
    .await
    .expect("the upstream connection stayed open after its client left");
    assert_eq!(up.accepted(), 1);
}

/// A raw POST with `ABCAuthorization`, announcing `len` body bytes and sending `sent` of them.
async fn raw_post(gw: &Gateway, path: &str, len: usize, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nABCAuthorization: Bearer {}\r\n\
         Content-Length: {len}\r\n\r\n",
        token()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(sent).await.unwrap();
    s
}

/// Reads one response's text from a raw connection (enough for the small answers here).
async fn read_answer(s: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("no answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Eight users GET `/spawner/user<i>` at once; each must be answered within 10 s, and the
/// bodies are returned in order.
async fn eight_users(gw: &Gateway) -> Vec<(StatusCode, String)> {
    let t = token();
    let users: Vec<_> = (0..8)
        .map(|i| {
            let url = gw.url(&format!("/spawner/user{i}"));
            let t = t.clone();
            tokio::spawn(async move {
                tokio::time::timeout(Duration::from_secs(10), get(&url, Some(&t))).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for (i, user) in users.into_iter().enumerate() {
        let (status, _, body) = user
            .await
            .unwrap()
            .unwrap_or_else(|_| panic!("user {i} waited behind another user's connection"));
        answers.push((status, body));
    }
    answers
}

#[tokio::test]
async fn an_early_answer_to_an_unfinished_body_parks_no_connection_for_others() {
    // The upstream answers each head at once and never reads the body; the client still
    // owes most of it. Other users must not queue behind that connection.
    let up = scripted(Script::IgnoresBodies).await;
    let gw = gateway_to(&up, 8).await;
    let mut attackers = Vec::new();
    for i in 0..8 {
        let mut s = raw_post(&gw, &format!("/spawner/attack{i}"), 1_000_000, b"partial").await;
        let text = read_answer(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        attackers.push(s);
    }
    for (i, answer) in eight_users(&gw).await.into_iter().enumerate() {
        assert_eq!(answer, (StatusCode::OK, format!("/spawner/user{i}")));
    }
    drop(attackers);
}

#[tokio::test]
async fn an_upstream_that_ignores_bodies_never_reads_another_users_request() {
    // The attacker's body is a whole request: an upstream that does not read bodies takes it
    // as the next request on that connection. Reusing the connection would answer the next
    // user with the smuggled request's response (and feed the user's head to the attacker).
    let up = scripted(Script::IgnoresBodies).await;
    let gw = gateway_to(&up, 8).await;
    let smuggled = b"GET /smuggled HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n";
    let t = token();
    for round in 0..10 {
        let mut attacker = raw_post(&gw, "/spawner/attack", smuggled.len(), smuggled).await;
        let text = read_answer(&mut attacker).await;
        assert!(text.ends_with("/spawner/attack"), "{text}");
        let path = format!("/spawner/victim{round}");
        let (status, _, body) = get(&gw.url(&path), Some(&t)).await;
        assert_eq!((status, body), (StatusCode::OK, path), "round {round}");
    }
}

#[tokio::test]
async fn an_answer_nobody_asked_for_never_reaches_the_next_request() {
    let up = scripted(Script::AnswersTwice).await;
    let gw = gateway_to(&up, 8).await;
    let t = token();
    for i in 0..20 {
        let path = format!("/spawner/q{i}");
        let (status, _, body) = get(&gw.url(&path), Some(&t)).await;
        assert_eq!((status, body), (StatusCode::OK, path), "request {i}");
        if i % 2 == 0 {
            // Give the extra answer time to arrive on the idle connection.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A real nginx serving static files: `/spawner/user<i>` answer `user<i>`; a POST to any of
/// them gets 405.
fn file_server() -> Nginx {
    let conf = "master_process off;\nerror_log @DIR@/error.log;\n\
                events { worker_connections 64; }\n\
                http {\n  access_log off;\n  client_body_temp_path @DIR@/body;\n\
                  server { listen 127.0.0.1:@LISTEN@; root @DIR@/www; keepalive_timeout 60s; }\n}\n";
    start_nginx(conf, |dir| {
        let spawner = dir.join("www/spawner");
        std::fs::create_dir_all(&spawner).unwrap();
        for i in 0..8 {
            std::fs::write(spawner.join(format!("user{i}")), format!("user{i}")).unwrap();
        }
        std::fs::write(spawner.join("static"), "static").unwrap();
    })
}

#[tokio::test]
async fn a_real_nginx_answering_405_to_an_upload_stalls_no_other_user() {
    // nginx answers a POST to a static file with 405 at once, before the body arrives. The
    // client still owes the body; nobody else may be queued behind that connection.
    let nginx = file_server();
    let port_map = POD_PORTS
        .iter()
        .map(|p| (p.to_string(), nginx.addr.port()))
        .collect();
    let mut file = file_config(port_map);
    file.limits.workers = 1;
    let gw = spawn_gateway(file).await;
    let mut uploads = Vec::new();
    for _ in 0..8 {
        let mut s = raw_post(&gw, "/spawner/static", 1_000_000, b"first bytes").await;
        let text = read_answer(&mut s).await;
        assert!(text.starts_with("HTTP/1.1 405"), "{text}");
        uploads.push(s);
    }
    for (i, answer) in eight_users(&gw).await.into_iter().enumerate() {
        assert_eq!(answer, (StatusCode::OK, format!("user{i}")));
    }
    drop(uploads);
}

type Signals = tokio::sync::mpsc::UnboundedReceiver<()>;

/// An upstream that reads each request head and never answers; `heard` gets a message for
/// each head it read, `ended` for each connection the other side closes after its head.
async fn thinking_upstream() -> (u16, Signals, Signals) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, ended) = tokio::sync::mpsc::unbounded_channel();
    let (heard_tx, heard) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            let heard_tx = heard_tx.clone();
            tokio::spawn(async move {
                if read_head(&mut conn).await.is_some() {
                    let _ = heard_tx.send(());
                    let mut rest = [0u8; 64];
                    // Only the peer's close ends the wait.
                    while conn.read(&mut rest).await.unwrap_or(0) > 0 {}
                    let _ = tx.send(());
                }
            });
        }
    });
    (port, heard, ended)
}

/// Sends `head` on a new connection to `addr`, waits until the upstream has it (`heard`),
/// then closes the connection unanswered.
async fn ask_and_leave(addr: std::net::SocketAddr, head: &str, heard: &mut Signals) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), heard.recv())
        .await
        .expect("the request did not reach the upstream");
}

#[tokio::test]
async fn a_client_that_leaves_before_the_answer_frees_its_upstream_connection_as_with_nginx() {
    // A long poll whose client goes: nginx (proxy_ignore_client_abort off) closes the
    // upstream connection rather than hold it for nobody until the read timeout.
    let (port, mut heard, mut ended) = thinking_upstream().await;
    let nginx = start_proxy_nginx(port, "proxy_read_timeout 60s;");
    let head = "GET /spawner/poll HTTP/1.1\r\nHost: x\r\n\r\n";
    ask_and_leave(nginx.addr, head, &mut heard).await;
    let reference = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
    assert!(reference.is_ok(), "nginx kept the upstream connection");

    let (port, mut heard, mut ended) = thinking_upstream().await;
    let port_map = POD_PORTS.iter().map(|p| (p.to_string(), port)).collect();
    let gw = spawn_gateway(file_config(port_map)).await;
    let head = format!(
        "GET /spawner/poll HTTP/1.1\r\nHost: x\r\nABCAuthorization: Bearer {}\r\n\r\n",
        token()
    );
    ask_and_leave(gw.addr, &head, &mut heard).await;
    let freed = tokio::time::timeout(Duration::from_secs(5), ended.recv()).await;
    assert!(
        freed.is_ok(),
        "the upstream connection was held for a client that left"
    );
}

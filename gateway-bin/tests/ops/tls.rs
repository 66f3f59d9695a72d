//! TLS on the public listener with a real rustls client: ALPN negotiates h2, requests are
//! proxied with `X-Forwarded-Proto: https`, and a certificate replaced on disk is served to new
//! connections without a restart while existing connections keep working.

use crate::support_proxy;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gateway::config::{KeysSection, TlsSection};
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use support_proxy::*;

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA (`ca.crt`, `ca.key`).
fn make_ca(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
}

/// A server certificate for localhost and 127.0.0.1 signed by the test CA (`NAME.crt`, `NAME.key`).
fn make_leaf(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ],
    );
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

fn cert(dir: &Path, name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(dir.join(format!("{name}.crt"))).unwrap()
}

/// Opens a TLS connection; returns the stream, the negotiated ALPN and the server's cert.
async fn connect(
    addr: std::net::SocketAddr,
    roots: &[CertificateDer<'static>],
) -> (
    tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    Option<Vec<u8>>,
    CertificateDer<'static>,
) {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (_, session) = tls.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let peer = session.peer_certificates().unwrap()[0].clone().into_owned();
    (tls, alpn, peer)
}

async fn h2_get(
    sender: &mut hyper::client::conn::http2::SendRequest<TestBody>,
    path: &str,
) -> (u16, String) {
    let req = http::Request::get(format!("https://localhost{path}"))
        .body(full(Bytes::new()))
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn tls_with_h2_and_certificate_reload() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "first");
    make_leaf(dir.path(), "second");
    let live_cert = dir.path().join("tls.crt");
    let live_key = dir.path().join("tls.key");
    std::fs::copy(dir.path().join("first.crt"), &live_cert).unwrap();
    std::fs::copy(dir.path().join("first.key"), &live_key).unwrap();

    let pyos = upstream("pyos").await;
    let mut file = file_config(Default::default());
    file.services.pyos = service(&pyos);
    file.tls = TlsSection {
        cert: Some(live_cert.clone()),
        key: Some(live_key.clone()),
    };
    file.keys = KeysSection {
        reload_interval: Duration::from_millis(50),
        ..file.keys
    };
    let running = spawn_run(file).await;
    let roots = [cert(dir.path(), "ca")];
    let (first, second) = (cert(dir.path(), "first"), cert(dir.path(), "second"));

    let (tls, alpn, peer) = connect(running.addr, &roots).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(peer, first);
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    assert_eq!(
        h2_get(&mut sender, "/healthz").await,
        (200, "OK\n".to_owned())
    );
    let (status, body) = h2_get(&mut sender, "/API/status").await;
    assert_eq!(status, 200);
    assert_eq!(seen(&body)["headers"]["x-forwarded-proto"], "https");

    // Replace the pair on disk (key first, then certificate, each by rename).
    std::fs::copy(dir.path().join("second.key"), dir.path().join("tmp.key")).unwrap();
    std::fs::rename(dir.path().join("tmp.key"), &live_key).unwrap();
    std::fs::copy(dir.path().join("second.crt"), dir.path().join("tmp.crt")).unwrap();
    std::fs::rename(dir.path().join("tmp.crt"), &live_cert).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, _, peer) = connect(running.addr, &roots).await;
        if peer == second {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "new certificate never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The connection opened before the reload still works.
    assert_eq!(h2_get(&mut sender, "/healthz").await.0, 200);
    let text = scrape(&running).await;
    assert!(
        sample(&text, r#"gateway_tls_reloads_total{result="success"}"#).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    // Plain HTTP on the TLS port gets no HTTP answer.
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut plain = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// A test CA and one leaf certificate in a temporary directory, and a configuration serving
/// TLS with that leaf.
fn one_certificate() -> (tempfile::TempDir, gateway::config::FileConfig) {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path());
    make_leaf(dir.path(), "only");
    let mut file = file_config(Default::default());
    file.tls = TlsSection {
        cert: Some(dir.path().join("only.crt")),
        key: Some(dir.path().join("only.key")),
    };
    (dir, file)
}

#[tokio::test]
async fn a_client_silent_after_the_tls_handshake_is_closed_at_the_head_deadline() {
    let (dir, mut file) = one_certificate();
    file.limits.header_read_timeout = Duration::from_millis(500);
    file.limits.keepalive_timeout = Duration::from_secs(60);
    let running = spawn_run(file).await;
    let roots = [cert(dir.path(), "ca")];
    // h2 by ALPN, then nothing: neither the HTTP/2 preface nor a request.
    let (mut tls, alpn, _) = connect(running.addr, &roots).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut tls, &mut buf),
    )
    .await;
    assert!(read.is_ok(), "silent TLS connection still open");
}

#[tokio::test]
async fn out_of_connections_a_stalled_tls_handshake_goes_and_a_new_client_is_served() {
    let (dir, mut file) = one_certificate();
    file.limits.max_connections = 2;
    file.limits.header_read_timeout = Duration::from_secs(60);
    let running = spawn_run(file).await;
    let roots = [cert(dir.path(), "ca")];
    // Both slots taken by sockets that never start their handshake; the first for longer.
    let mut stalled = tokio::net::TcpStream::connect(running.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let _younger = tokio::net::TcpStream::connect(running.addr).await.unwrap();

    let served = tokio::time::timeout(Duration::from_secs(10), async {
        let (tls, _, _) = connect(running.addr, &roots).await;
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        h2_get(&mut sender, "/healthz").await
    })
    .await;
    assert_eq!(
        served.map(|(status, _)| status).ok(),
        Some(200),
        "a new client waited behind a stalled handshake"
    );
    let mut buf = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::io::AsyncReadExt::read_to_end(&mut stalled, &mut buf),
    )
    .await;
    assert!(read.is_ok(), "the stalled handshake kept its slot");
}

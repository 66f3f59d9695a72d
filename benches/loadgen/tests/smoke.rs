//! Smoke test of the load harness: an in-process gateway in front of `loadgen serve`'s
//! upstreams, and `loadgen run` in the cached, forged, unique, stream and websocket modes for
//! a second or two each. Checks that requests succeed or are refused as expected and that the
//! JSON report parses.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser as _;
use gateway::config::{
    AbuseSection, AdminSection, AuthSection, FileConfig, KeysSection, LogConfig, UpstreamConfig,
};
use gateway_tooling::keygen::{self, PAIRS};
use loadgen::{Cli, Command, Report};
use serde_json::Value;
use tokio::net::TcpListener;

struct Setup {
    _dir: tempfile::TempDir,
    signing: String,
    payload: String,
    url: String,
    out: std::path::PathBuf,
    _stop: tokio::sync::oneshot::Sender<()>,
}

// `..Default` keeps the test building when the gateway's config sections grow.
#[allow(clippy::needless_update)]
async fn setup() -> Setup {
    let pairs: Vec<_> = PAIRS
        .iter()
        .take(2)
        .map(|spec| keygen::generate_pair(*spec, 1024).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    keygen::write_pairs(dir.path(), &pairs, false).unwrap();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port_map = BTreeMap::from([
        (29786, http.local_addr().unwrap().port()),
        (29783, http.local_addr().unwrap().port()),
        (6081, ws.local_addr().unwrap().port()),
    ]);
    tokio::spawn(loadgen::serve_http(http));
    tokio::spawn(loadgen::serve_ws(ws));
    let file = FileConfig {
        keys: KeysSection {
            signing_public_key: dir.path().join(PAIRS[1].public_file),
            payload_private_key: dir.path().join(PAIRS[0].private_file),
            ..KeysSection::default()
        },
        auth: AuthSection {
            allow_loopback: true,
            ..AuthSection::default()
        },
        upstream: UpstreamConfig {
            port_map,
            ..UpstreamConfig::default()
        },
        admin: AdminSection {
            listen: "off".to_owned(),
        },
        // Throttling off: the forged flood would otherwise get the address 429s for 10 s.
        abuse: AbuseSection {
            auth_failures_per_ip: 0,
            ..AbuseSection::default()
        },
        log: LogConfig {
            access_log: false,
            ..LogConfig::default()
        },
        ..FileConfig::default()
    };
    let config = file.validate().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(gateway::server::serve(listener, config, async {
        let _ = rx.await;
    }));
    Setup {
        signing: dir.path().join(PAIRS[1].private_file).display().to_string(),
        payload: dir.path().join(PAIRS[0].public_file).display().to_string(),
        out: dir.path().join("report.json"),
        _dir: dir,
        url,
        _stop: tx,
    }
}

/// Runs `loadgen run <extra>` against the gateway and returns the report and its JSON.
async fn run(s: &Setup, extra: &[&str]) -> (Report, Value) {
    let mut argv = vec![
        "loadgen",
        "run",
        "--quiet",
        "--url",
        &s.url,
        "--signing-key",
        &s.signing,
        "--payload-key",
        &s.payload,
        "--json",
        s.out.to_str().unwrap(),
    ];
    argv.extend_from_slice(extra);
    let Command::Run(args) = Cli::try_parse_from(argv).unwrap().command else {
        unreachable!()
    };
    let report = tokio::time::timeout(Duration::from_secs(20), loadgen::run(args))
        .await
        .expect("run stops by itself")
        .unwrap();
    let json: Value = serde_json::from_slice(&std::fs::read(&s.out).unwrap()).unwrap();
    assert_eq!(json["requests"].as_u64(), Some(report.requests));
    (report, json)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_modes_against_an_in_process_gateway() {
    let s = setup().await;

    let (r, json) = run(
        &s,
        &["--mode", "cached", "--connections", "4", "--duration", "2s"],
    )
    .await;
    assert!(r.requests > 50, "{json}");
    assert_eq!(r.ok, r.requests, "{json}");
    assert_eq!(r.errors, 0, "{json}");
    assert_eq!(json["status"]["200"].as_u64(), Some(r.requests));
    assert!(json["latency"]["p99_us"].as_u64().unwrap() > 0);
    assert_eq!(r.bytes, r.requests * loadgen::SMALL_BODY.len() as u64);

    // One request per connection: every answer still arrives whole.
    let (r, json) = run(
        &s,
        &[
            "--mode",
            "cached",
            "--connections",
            "2",
            "--duration",
            "1s",
            "--close",
        ],
    )
    .await;
    assert!(r.requests > 20, "{json}");
    assert_eq!(r.ok, r.requests, "{json}");
    assert_eq!(r.errors, 0, "{json}");

    let (r, json) = run(
        &s,
        &[
            "--mode",
            "forged",
            "--connections",
            "4",
            "--duration",
            "2s",
            "--pool",
            "200",
        ],
    )
    .await;
    assert!(r.requests > 50, "{json}");
    assert_eq!(r.refused, r.requests, "every forgery refused: {json}");
    assert_eq!(r.errors, 0, "{json}");

    let (r, json) = run(
        &s,
        &[
            "--mode",
            "unique",
            "--connections",
            "2",
            "--duration",
            "2s",
            "--pool",
            "20",
        ],
    )
    .await;
    assert_eq!(r.ok, 20, "every pooled token once: {json}");
    assert!(r.pool_exhausted);

    let (r, json) = run(
        &s,
        &[
            "--mode",
            "stream",
            "--connections",
            "1",
            "--duration",
            "1s",
            "--path",
            "/filer/bench?size=1048576",
        ],
    )
    .await;
    assert!(r.ok >= 1, "{json}");
    assert!(r.bytes >= 1 << 20, "{json}");

    let (r, json) = run(
        &s,
        &[
            "--mode",
            "websocket",
            "--connections",
            "4",
            "--duration",
            "2s",
        ],
    )
    .await;
    assert_eq!(r.tunnels_opened, 4, "{json}");
    assert!(r.requests > 50, "echo round trips: {json}");
    assert_eq!(r.errors, 0, "{json}");

    let ready = s.out.with_file_name("ready");
    let (r, json) = run(
        &s,
        &[
            "--mode",
            "websocket",
            "--idle",
            "--connections",
            "50",
            "--duration",
            "1s",
            "--ready-file",
            ready.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(r.tunnels_held, 50, "{json}");
    assert!(ready.exists());
}

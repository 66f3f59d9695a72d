//! The `gateway` binary as an operator runs it: `--check-config` fails when the gateway could
//! not serve desktops, `--help` says where settings come from, and the start-up log says what
//! was loaded (paths, sizes, fingerprints) without any key material.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use gateway::config::{self, Env};
use gateway::token::SigningKey;
use gateway_tooling::keygen::{self, PAIRS};
use gateway_tooling::mint::{MintMode, Minter};

const PAYLOAD_PRIVATE: &str = "abcdesktop_jwt_desktop_payload_private_key.pem";
const PAYLOAD_PUBLIC: &str = "abcdesktop_jwt_desktop_payload_public_key.pem";
const SIGNING_PRIVATE: &str = "abcdesktop_jwt_desktop_signing_private_key.pem";
const SIGNING_PUBLIC: &str = "abcdesktop_jwt_desktop_signing_public_key.pem";

/// How long the gateway may take to start listening.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A world-readable directory (so another uid can reach it) with abcdesktop's key pairs made as
/// `keys-tool gen` makes them (private keys 0600, public keys 0644) and a config file using them.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(extra_config: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let pairs = keygen::generate_all(1024).unwrap();
        keygen::write_pairs(dir.path(), &pairs, false).unwrap();
        let setup = Setup { dir };
        // Desktops on loopback (the test's own), never anywhere else.
        let config = format!(
            "listen = \"127.0.0.1:0\"\n{extra_config}\n[auth]\nallow_loopback = true\n[keys]\nsigning_public_key = {:?}\npayload_private_key = {:?}\n",
            setup.path(SIGNING_PUBLIC),
            setup.path(PAYLOAD_PRIVATE),
        );
        std::fs::write(setup.config(), config).unwrap();
        setup
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self) -> PathBuf {
        self.path("gateway.toml")
    }

    fn chmod(&self, name: &str, mode: u32) {
        std::fs::set_permissions(self.path(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// The gateway binary with none of the original's environment variables set.
fn gateway_command(prefix: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_gateway");
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(bin);
            cmd
        }
        None => Command::new(bin),
    };
    for name in env_names() {
        cmd.env_remove(name);
    }
    cmd.env("GATEWAY_LOG", "info");
    cmd
}

fn check_config(setup: &Setup, prefix: &[&str]) -> Output {
    gateway_command(prefix)
        .arg("--config")
        .arg(setup.config())
        .arg("--check-config")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every environment variable the configuration reads, as the configuration asks for them.
fn env_names() -> Vec<String> {
    let names = std::cell::RefCell::new(Vec::new());
    Env::from_fn(|name| {
        names.borrow_mut().push(name.to_owned());
        None
    });
    names.into_inner()
}

/// Whether this process runs as root (a file it creates is owned by uid 0).
fn running_as_root(dir: &Path) -> bool {
    let probe = dir.join(".uid-probe");
    std::fs::write(&probe, "").unwrap();
    let root = std::fs::metadata(&probe).unwrap().uid() == 0;
    std::fs::remove_file(probe).unwrap();
    root
}

#[test]
fn check_config_passes_when_every_key_loads() {
    let setup = Setup::new("");
    let out = check_config(&setup, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("config ok"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn check_config_fails_when_the_payload_key_is_unreadable_by_the_gateway_user() {
    // The Dockerfile's example: keys made by root with mode 0600, the gateway running as the
    // image's non-root uid 65532.
    let setup = Setup::new("");
    let prefix: &[&str] = if running_as_root(setup.dir.path()) {
        &[
            "setpriv",
            "--reuid",
            "65532",
            "--regid",
            "65532",
            "--clear-groups",
        ]
    } else {
        // Not root: a file without read permission is as unreadable for us.
        &[]
    };
    if prefix.is_empty() {
        setup.chmod(PAYLOAD_PRIVATE, 0o000);
    } else {
        // The same user passes while the key is readable: what fails below is the key alone.
        setup.chmod(PAYLOAD_PRIVATE, 0o644);
        let out = check_config(&setup, prefix);
        assert!(out.status.success(), "{}", text(&out.stderr));
        setup.chmod(PAYLOAD_PRIVATE, 0o600);
    }
    let out = check_config(&setup, prefix);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(!text(&out.stdout).contains("config ok"));
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("gateway: cannot load payload key")
            && last.contains(setup.path(PAYLOAD_PRIVATE).to_str().unwrap())
            && last.to_lowercase().contains("permission denied"),
        "{err}"
    );
}

#[test]
fn check_config_fails_when_the_payload_key_is_missing_or_corrupt() {
    let setup = Setup::new("");
    let corrupt = |setup: &Setup| {
        std::fs::write(
            setup.path(PAYLOAD_PRIVATE),
            "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n",
        )
        .unwrap();
    };
    let missing = |setup: &Setup| std::fs::remove_file(setup.path(PAYLOAD_PRIVATE)).unwrap();
    for (what, break_it) in [
        ("corrupt", &corrupt as &dyn Fn(&Setup)),
        ("missing", &missing),
    ] {
        break_it(&setup);
        let out = check_config(&setup, &[]);
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{what}: {err}");
        assert!(err.contains(PAYLOAD_PRIVATE), "{what}: {err}");
    }
}

#[test]
fn check_config_fails_when_the_tls_certificate_does_not_load() {
    let setup = Setup::new(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n",
        "/nonexistent/cert.pem", "/nonexistent/key.pem"
    ));
    let out = check_config(&setup, &[]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("/nonexistent/cert.pem"), "{err}");
}

#[test]
fn help_lists_the_environment_variables_default_key_paths_and_listen_addresses() {
    let out = gateway_command(&[]).arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = text(&out.stdout);
    let mut expected = env_names();
    assert!(expected.len() >= 10, "{expected:?}");
    expected.extend(
        [
            "GATEWAY_LOG",
            "RUST_LOG",
            config::DEFAULT_SIGNING_KEY,
            config::DEFAULT_PAYLOAD_KEY,
            config::DEFAULT_LISTEN,
            config::DEFAULT_ADMIN_LISTEN,
        ]
        .map(str::to_owned),
    );
    for item in expected {
        assert!(help.contains(&item), "--help lacks {item}:\n{help}");
    }
}

/// A gateway process, killed when dropped, and its log lines (JSON) as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Running {
    fn start(setup: &Setup) -> Running {
        let mut child = gateway_command(&[])
            .arg("--config")
            .arg(setup.config())
            .args(["--log-format", "json"])
            .env("NODE_NAME", "node-7.example")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (with a deadline) for the line whose message is `message`.
    fn wait_for(&mut self, message: &str) -> serde_json::Value {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|_| {
                panic!(
                    "no `{message}` line in time; log so far:\n{}",
                    self.seen.join("\n")
                )
            });
            self.seen.push(line.clone());
            if let Ok(value) = serde_json::from_str::<serde_json::Value>(&line)
                && value["message"] == message
            {
                return value;
            }
        }
    }

    /// Every line whose message is `message`, among those seen so far.
    fn seen_with(&self, message: &str) -> Vec<serde_json::Value> {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["message"] == message)
            .collect()
    }
}

fn http_get(addr: SocketAddr, path: &str, token: Option<&str>) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or_else(String::new, |t| format!("ABCAuthorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gateway\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

/// A fake desktop spawner on loopback: answers every request `200 desktop`.
fn desktop() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndesktop",
            );
        }
    });
    addr
}

fn addr_field(value: &serde_json::Value, field: &str) -> SocketAddr {
    value[field]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in `{field}`: {value}"))
}

fn token(setup: &Setup) -> String {
    let read = |name| std::fs::read_to_string(setup.path(name)).unwrap();
    let minter = Minter::from_pem(
        &read(SIGNING_PRIVATE),
        &read(PAYLOAD_PUBLIC),
        MintMode::Pkcs1,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    minter
        .mint("127.0.0.1", i64::try_from(now).unwrap(), 300)
        .unwrap()
}

#[test]
fn start_up_log_names_listeners_node_workers_and_every_key_without_key_material() {
    let desktop = desktop();
    let setup = Setup::new(&format!(
        "[admin]\nlisten = \"127.0.0.1:0\"\n[limits]\nworkers = 3\n[upstream]\nport_map = {{ \"29786\" = {} }}\n",
        desktop.port()
    ));
    let mut gw = Running::start(&setup);
    let listening = gw.wait_for("gateway listening");
    let summary = gw.seen_with("gateway starting");
    assert_eq!(summary.len(), 1, "{}", gw.seen.join("\n"));
    let summary = &summary[0];
    assert_eq!(summary["level"], "INFO");
    assert_eq!(
        addr_field(summary, "listen"),
        addr_field(&listening, "addr")
    );
    assert_eq!(summary["node"], "node-7.example");
    assert_eq!(summary["workers"], 3);
    assert_eq!(summary["payload_mode"], "pkcs1 (private key)");
    // The admin address logged is the one really listening.
    let livez = http_get(addr_field(summary, "admin"), "/livez", None);
    assert!(livez.starts_with("HTTP/1.1 200"), "{livez}");

    let read = |name| std::fs::read_to_string(setup.path(name)).unwrap();
    // One line per key: the file loaded, its size, and the fingerprint of its public key (for
    // the payload private key, that of the public key file pyos holds).
    for (message, file, public_file) in [
        ("signing key", SIGNING_PUBLIC, SIGNING_PUBLIC),
        ("payload key", PAYLOAD_PRIVATE, PAYLOAD_PUBLIC),
    ] {
        let lines = gw.seen_with(message);
        assert_eq!(lines.len(), 1, "{message}: {}", gw.seen.join("\n"));
        assert_eq!(lines[0]["path"], setup.path(file).to_str().unwrap());
        assert_eq!(lines[0]["bits"], 1024);
        let public = SigningKey::from_pem(&read(public_file)).unwrap();
        assert_eq!(lines[0]["fingerprint"], public.fingerprint(), "{message}");
    }
    assert_eq!(
        gw.seen_with("payload key")[0]["mode"],
        "pkcs1 (private key)"
    );

    // A desktop request is served with the key loaded.
    let response = http_get(
        addr_field(&listening, "addr"),
        "/spawner/x",
        Some(&token(&setup)),
    );
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("desktop"), "{response}");

    // No line carries key material: no line of any PEM body appears in the log.
    let log = gw.seen.join("\n");
    for pair in PAIRS {
        for name in [pair.private_file, pair.public_file] {
            for body_line in read(name).lines().filter(|l| !l.starts_with("-----")) {
                assert!(
                    !log.contains(body_line),
                    "{name} content in the log:\n{log}"
                );
            }
        }
    }
}

#[test]
fn serving_starts_without_a_payload_key_logs_an_error_and_answers_503() {
    let setup = Setup::new("[admin]\nlisten = \"off\"\n");
    let token = token(&setup);
    std::fs::remove_file(setup.path(PAYLOAD_PRIVATE)).unwrap();
    let mut gw = Running::start(&setup);
    let listening = gw.wait_for("gateway listening");
    let summary = &gw.seen_with("gateway starting")[0];
    assert_eq!(summary["payload_mode"], "unavailable");
    assert_eq!(summary["admin"], "off");
    let unavailable: Vec<_> =
        gw.seen_with("payload key unavailable: desktop routes answer 503 until it can be read");
    assert_eq!(unavailable.len(), 1, "{}", gw.seen.join("\n"));
    assert_eq!(unavailable[0]["level"], "ERROR");
    assert_eq!(
        unavailable[0]["path"],
        setup.path(PAYLOAD_PRIVATE).to_str().unwrap()
    );
    let addr = addr_field(&listening, "addr");
    let response = http_get(addr, "/spawner/x", Some(&token));
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    // Routes without tokens keep working.
    let health = http_get(addr, "/healthz", None);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

//! A real nginx as a process of the test, for the tests that take nginx's behaviour as the
//! reference or need a real upstream web server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts the binary.
const NGINX: &str = "/usr/sbin/nginx";
/// How long one start may take (nginx itself retries a taken port for ≈2.5 s).
const START_DEADLINE: Duration = Duration::from_secs(20);

/// A running nginx; dropping it stops it.
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    /// The prefix (configuration, logs, pid file, what `prepare` put there), removed on drop.
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, installed first when missing. Panics when it cannot be had: a test that
/// needs nginx must not pass without it.
fn nginx_binary() -> &'static Path {
    let bin = Path::new(NGINX);
    if !bin.exists() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/install-nginx.sh");
        let status = Command::new("bash").arg(&script).status();
        assert!(
            status.is_ok_and(|s| s.success()) && bin.exists(),
            "nginx is required by this test and {} could not install it",
            script.display()
        );
    }
    bin
}

/// Starts nginx with `conf`, in which `@LISTEN@` stands for a free port and `@DIR@` for the
/// prefix (a new temporary directory; `prepare` fills it first). The configuration must not
/// set `daemon` or `pid`: nginx is run in the foreground and writes its pid to `@DIR@/nginx.pid`.
///
/// The port is found by binding port 0 and releasing it, so another test may take it before
/// nginx does. nginx writes its pid file only once it holds every listening socket, so a
/// start counts only when the pid file is there and the port answers; otherwise nginx is
/// stopped and started again on another port.
pub fn start_nginx(conf: &str, prepare: impl FnOnce(&Path)) -> Nginx {
    let bin = nginx_binary();
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().to_path_buf();
    prepare(&prefix);
    let pid_file = prefix.join("nginx.pid");
    let mut last_log = String::new();
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let text = conf
            .replace("@LISTEN@", &port.to_string())
            .replace("@DIR@", &prefix.display().to_string());
        let conf_path: PathBuf = prefix.join("nginx.conf");
        std::fs::write(&conf_path, text).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let mut child = Command::new(bin)
            .arg("-p")
            .arg(&prefix)
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .arg("-g")
            .arg(format!("daemon off; pid {};", pid_file.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let started = Instant::now();
        while started.elapsed() < START_DEADLINE {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            if pid_file.exists() && std::net::TcpStream::connect(addr).is_ok() {
                return Nginx {
                    child,
                    addr,
                    _dir: dir,
                };
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        last_log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
    }
    panic!("nginx did not start; its error log:\n{last_log}");
}

/// An nginx that proxies every path to `127.0.0.1:port`, with `directives` (e.g.
/// `proxy_send_timeout 1s;`) in its one location: the reference for the upstream phases.
pub fn start_proxy_nginx(port: u16, directives: &str) -> Nginx {
    let conf = format!(
        "master_process off;\nerror_log @DIR@/error.log;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path @DIR@/body;\n\
           server {{ listen 127.0.0.1:@LISTEN@;\n\
             location / {{ proxy_pass http://127.0.0.1:{port}; {directives} }} }}\n}}\n"
    );
    start_nginx(&conf, |_| {})
}

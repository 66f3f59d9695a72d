//! Upstream faults over loopback: an upstream that accepts then resets, one that answers
//! garbage, one that stops mid-body. Each gives the documented answer with a generic body, and
//! the gateway keeps serving other users.

use crate::support_proxy;

use support_proxy::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// An upstream that reads the request head, then does `fault`.
async fn faulty(fault: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                match fault {
                    "reset" => {
                        let _ = stream.set_zero_linger();
                        drop(stream);
                    }
                    "garbage" => {
                        let _ = stream.write_all(b"\x00\x01NOT HTTP AT ALL\r\n\r\n").await;
                    }
                    _ => {
                        // Promise 1 MB, send 10 bytes, hang up.
                        let _ = stream
                            .write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\n0123456789",
                            )
                            .await;
                    }
                }
            });
        }
    });
    port
}

#[tokio::test]
async fn upstream_faults_give_502_and_other_users_are_served() {
    let desktop = Desktop::http().await;
    let mut port_map = desktop.port_map();
    port_map.insert("29783".into(), faulty("reset").await); // filer
    port_map.insert("29782".into(), faulty("garbage").await); // printerfiler
    port_map.insert("29785".into(), faulty("truncated").await); // snapshot
    let running = spawn_run(file_config(port_map)).await;
    let token = token();

    for path in ["/filer?file=x", "/printerfiler?file=x"] {
        let (status, _, body) = get(&running.url(path), Some(&token)).await;
        assert_eq!(status, 502, "{path}");
        assert_eq!(body, "502 Bad Gateway\n", "{path}: generic body only");
    }
    // The head arrived, so the status is the upstream's; the body is cut short, not faked.
    let res = get_unread(&running.url("/snapshot/x"), &format!("Bearer {token}")).await;
    assert_eq!(res.status(), 200);
    assert!(
        http_body_util::BodyExt::collect(res.into_body())
            .await
            .is_err()
    );

    // Everyone else is still served.
    for _ in 0..3 {
        assert_eq!(
            get(&running.url("/spawner/getenv"), Some(&token)).await.0,
            200
        );
    }
    let text = scrape(&running).await;
    assert!(
        sample(
            &text,
            r#"gateway_upstream_errors_total{kind="reset",route="filer"}"#
        )
        .is_some()
            || sample(
                &text,
                r#"gateway_upstream_errors_total{kind="connect",route="filer"}"#
            )
            .is_some(),
        "{text}"
    );
}

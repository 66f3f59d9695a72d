//! Bodies stream through the gateway both ways: 256 MiB up and 256 MiB down, in lock-step
//! with the far end, so that no more than a few MiB can ever be in flight. A gateway that
//! buffered a whole body would deadlock here (and the test would time out).

use crate::support_proxy;

use std::time::Duration;

use bytes::Bytes;
use gateway_tooling::upstream::serve_http;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use support_proxy::*;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

const MIB: usize = 1024 * 1024;
const TOTAL_MIB: usize = 256;
/// Chunks allowed in flight between the two ends.
const WINDOW_MIB: usize = 8;

type BoxErr = Box<dyn std::error::Error + Send + Sync>;

/// Serves `handler` on 127.0.0.1:0; returns the port.
async fn serve<F, Fut>(handler: F) -> u16
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(serve_http(l, Default::default(), handler));
    port
}

async fn wait_for(progress: &mut watch::Receiver<usize>, at_least: usize) {
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|&n| n >= at_least),
    )
    .await
    .expect("the far end never got the data: is the gateway buffering the body?")
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_256_mib_streams_in_lock_step() {
    let (progress_tx, mut progress) = watch::channel(0usize);
    let port = serve(move |req: Request<Incoming>| {
        let progress_tx = progress_tx.clone();
        async move {
            let mut body = req.into_body();
            let mut n = 0usize;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    n += d.len();
                    progress_tx.send_replace(n);
                }
            }
            Response::new(full(n.to_string()))
        }
    })
    .await;
    let gw = spawn_gateway(file_config(
        [("29783".to_owned(), port)].into_iter().collect(),
    ))
    .await;

    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, BoxErr>(Frame::data(b)), rx))
    });
    let req = Request::put(gw.url("/filer?file=big.bin"))
        .header("abcauthorization", token())
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap();
    let response = tokio::spawn(send(req));
    let chunk = Bytes::from(vec![0x5a; MIB]);
    for i in 0..TOTAL_MIB {
        if i >= WINDOW_MIB {
            wait_for(&mut progress, (i - WINDOW_MIB) * MIB).await;
        }
        tx.send(chunk.clone()).await.unwrap();
    }
    drop(tx);
    let (status, _, body) = response.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, (TOTAL_MIB * MIB).to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_256_mib_streams_in_lock_step() {
    let (client_tx, client_progress) = watch::channel(0usize);
    let port = serve(move |_req: Request<Incoming>| {
        let client_progress = client_progress.clone();
        async move {
            let stream = futures_util::stream::unfold(
                (0usize, client_progress),
                |(i, mut progress)| async move {
                    if i == TOTAL_MIB {
                        return None;
                    }
                    if i >= WINDOW_MIB {
                        wait_for(&mut progress, (i - WINDOW_MIB) * MIB).await;
                    }
                    let frame = Frame::data(Bytes::from(vec![0xa5; MIB]));
                    Some((Ok::<_, BoxErr>(frame), (i + 1, progress)))
                },
            );
            Response::new(BodyExt::boxed(StreamBody::new(stream)))
        }
    })
    .await;
    let gw = spawn_gateway(file_config(
        [("29783".to_owned(), port)].into_iter().collect(),
    ))
    .await;
    let res = get_unread(&gw.url("/filer?file=big.bin"), &token()).await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut n = 0usize;
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame.unwrap().data_ref() {
            n += d.len();
            client_tx.send_replace(n);
        }
    }
    assert_eq!(n, TOTAL_MIB * MIB);
}

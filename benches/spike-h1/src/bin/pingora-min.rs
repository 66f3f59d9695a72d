//! Pingora's HTTP/1 engine as Pingora itself runs it: `pingora_core`'s server framework with
//! one thread, its HTTP/1 server session, and its HTTP/1 connector with its upstream pool.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora_core::apps::{HttpPersistentSettings, HttpServerApp, ReusedHttpStream};
use pingora_core::connectors::http::v1::Connector;
use pingora_core::protocols::http::ServerSession;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::{Server, ShutdownWatch};
use pingora_core::services::listening::Service;
use pingora_core::upstreams::peer::HttpPeer;

/// How long an idle upstream connection stays in the pool.
const IDLE: Duration = Duration::from_secs(60);

struct Forward {
    connector: Connector,
    peer: HttpPeer,
}

#[async_trait]
impl HttpServerApp for Forward {
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        _shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        if !session.read_request().await.ok()? {
            return None;
        }
        session.set_keepalive(Some(60));
        let head = Box::new(session.req_header().clone());
        let (mut up, _reused) = self.connector.get_http_session(&self.peer).await.ok()?;
        up.write_request_header(head).await.ok()?;
        up.finish_body().await.ok()?;
        up.read_response().await.ok()?;
        let answer = Box::new(up.resp_header()?.clone());
        session.write_response_header(answer).await.ok()?;
        while let Some(chunk) = up.read_body_bytes().await.ok()? {
            session.write_response_body(chunk, false).await.ok()?;
        }
        self.connector
            .release_http_session(up, &self.peer, Some(IDLE))
            .await;
        let settings = HttpPersistentSettings::for_session(&session);
        let stream = session.finish().await.ok()??;
        Some(ReusedHttpStream::new(stream, Some(settings)))
    }
}

fn main() {
    let (listen, upstream) = spike_h1::addresses();
    let conf = ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let forward = Forward {
        connector: Connector::new(None),
        peer: HttpPeer::new(upstream, false, String::new()),
    };
    let mut service = Service::new("spike".to_owned(), forward);
    service.add_tcp(&listen.to_string());
    server.add_service(service);
    server.run_forever();
}

//! The upstream executor: sends the one upstream request the request path planned, on a
//! pooled connection or a dedicated one, upgrade or not, under the route's timeouts, and
//! maps every failure to one status and one metric ([`Failure::respond`]).
//!
//! Which connection:
//! - a request without a body (and not an upgrade) takes a pooled connection that is ready
//!   at once, or a new one; the connection goes back when its response was read to the end;
//! - a request with a body, or an upgrade, gets a dedicated connection that closes after the
//!   exchange. Only a connection that carried nothing but a head can be handed to another
//!   user: whether an upstream consumed a body it answered early (or did not read at all) is
//!   unknowable from here, and a connection with unread body bytes would give the next
//!   user's request to the previous one's body (the original gateway, with one HTTP/1.0
//!   connection per request, could not mix users either).
//!
//! Timeouts (nginx's semantics): `connect_timeout` to open the connection; the route's
//! `send_timeout` between two writes to the upstream; the route's `read_timeout` from the
//! end of the request body to the response head, then between two reads of the response
//! body (and as the idle limit of a WebSocket tunnel).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use tracing::{debug, warn};

use crate::body::{BodyIdle, BodyTooLarge, IdleTimeout, Sent, caused_by};
use crate::deadline::SendTimedOut;
use crate::headers;
use crate::metrics::{Metrics, RouteMetrics};
use crate::pool::{ConnectError, Dest, Pool, PooledBody};
use crate::respond::{self, Body};
use crate::routes::Route;
use crate::upgrade::{self, Tunnels};

/// One planned upstream request, ready to go.
#[derive(Debug)]
pub(crate) struct Exchange<'r> {
    /// Where it goes.
    pub dest: Dest,
    /// The rewritten head and the body (empty, or the client's, wrapped in its limits).
    pub request: Request<Body>,
    /// Set for a streaming body: fires when it was sent whole.
    pub sent: Option<Arc<Sent>>,
    /// The client's side of a WebSocket upgrade, when the request is one.
    pub upgrade: Option<OnUpgrade>,
    pub route: &'r Route,
    pub slot: &'r RouteMetrics,
    /// The client, for the tunnel's access line.
    pub client: IpAddr,
}

/// What the executor works with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Executor<'g> {
    pub pool: &'g Arc<Pool>,
    pub metrics: &'g Arc<Metrics>,
    pub tunnels: &'g Tunnels,
}

/// Why an exchange failed; [`Failure::respond`] is the only place that turns one into a
/// status, a metric and a log line.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("no response head within the read timeout")]
    Timeout,
    #[error("upstream connection")]
    Http(#[source] hyper::Error),
    #[error("101 Switching Protocols without a WebSocket upgrade asked for")]
    UnexpectedUpgrade,
}

impl Failure {
    fn respond(&self, route: &Route, dest: &Dest, metrics: &Metrics) -> Response<Body> {
        match self {
            Failure::Http(e) if caused_by::<BodyTooLarge>(e) => {
                debug!(route = %route.name, "request body over the limit while streaming");
                respond::too_large()
            }
            Failure::Http(e) if caused_by::<BodyIdle>(e) => {
                debug!(route = %route.name, "client stopped sending its request body");
                metrics.client_closed("body_timeout");
                respond::request_timeout()
            }
            Failure::Http(e) if caused_by::<SendTimedOut>(e) => {
                // nginx: a `proxy_send_timeout` is a timeout, 504.
                metrics.upstream_error(&route.name, "timeout");
                warn!(route = %route.name, upstream = %dest, "upstream did not take the request within the send timeout");
                respond::gateway_timeout()
            }
            Failure::Connect(ConnectError::TimedOut) => {
                // nginx: a `proxy_connect_timeout` is a timeout, 504 (a refusal stays 502).
                metrics.upstream_error(&route.name, "connect");
                warn!(route = %route.name, upstream = %dest, "upstream connect timed out");
                respond::gateway_timeout()
            }
            Failure::Connect(e) => {
                metrics.upstream_error(&route.name, "connect");
                warn!(route = %route.name, upstream = %dest, error = %e, "upstream connect failed");
                respond::bad_gateway()
            }
            Failure::Timeout => {
                metrics.upstream_error(&route.name, "timeout");
                warn!(route = %route.name, upstream = %dest, "upstream timed out");
                respond::gateway_timeout()
            }
            Failure::Http(e) => {
                metrics.upstream_error(&route.name, "reset");
                warn!(route = %route.name, upstream = %dest, error = %error_chain(e), "upstream failed");
                respond::bad_gateway()
            }
            Failure::UnexpectedUpgrade => {
                metrics.upstream_error(&route.name, "protocol");
                warn!(route = %route.name, upstream = %dest, "upstream switched protocols unasked");
                respond::bad_gateway()
            }
        }
    }
}

impl Executor<'_> {
    /// Sends `exchange` and answers the client: the upstream's response (cleaned, streamed),
    /// a tunnel's `101`, or the failure's response.
    pub(crate) async fn execute(self, exchange: Exchange<'_>) -> Response<Body> {
        let route = exchange.route;
        let dest = exchange.dest;
        match self.run(exchange).await {
            Ok(res) => res,
            Err(failure) => failure.respond(route, &dest, self.metrics),
        }
    }

    async fn run(self, exchange: Exchange<'_>) -> Result<Response<Body>, Failure> {
        let Exchange {
            dest,
            request,
            sent,
            upgrade,
            route,
            slot,
            client,
        } = exchange;
        let asked = Instant::now();
        let dedicated = sent.is_some() || upgrade.is_some();
        let (res, back) = if dedicated {
            // Boxed: its state stays out of the (far more common) bodiless requests' futures.
            let dedicated =
                self.dedicated(&dest, request, sent.as_deref(), upgrade.is_some(), route);
            (Box::pin(dedicated).await?, None)
        } else {
            self.pooled(&dest, request, route).await?
        };
        self.metrics
            .record_upstream_seconds(slot, &route.name, asked.elapsed().as_secs_f64());

        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(on_client) = upgrade else {
                // The connection is in an unknown state: dropped with `back`, never pooled.
                return Err(Failure::UnexpectedUpgrade);
            };
            if !headers::is_websocket_upgrade(res.headers()) {
                return Err(Failure::UnexpectedUpgrade);
            }
            let mut res = res;
            let on_upstream = hyper::upgrade::on(&mut res);
            upgrade::splice(
                on_client,
                on_upstream,
                upgrade::TunnelInfo {
                    route,
                    client,
                    upstream: dest,
                },
                self.tunnels,
                self.metrics,
            );
            return Ok(client_response(res, route, None));
        }
        Ok(client_response(res, route, back))
    }

    /// Sends a request with a body to stream (`sent`), or an upgrade, on a connection of its
    /// own.
    async fn dedicated(
        self,
        dest: &Dest,
        mut request: Request<Body>,
        sent: Option<&Sent>,
        upgrade: bool,
        route: &Route,
    ) -> Result<Response<Incoming>, Failure> {
        if sent.is_some() {
            // The upstream may close after answering: this connection is not kept.
            request
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let mut sender = self.pool.open(dest, route.send_timeout, upgrade).await?;
        let sending = sender.send_request(request);
        match sent {
            Some(sent) => {
                tokio::pin!(sending);
                // Until the body is sent whole, the client's and the upstream's write
                // deadlines bound the exchange; the read timeout starts after.
                tokio::select! {
                    res = &mut sending => res.map_err(Failure::Http),
                    () = sent.wait() => read_head(route, sending).await,
                }
            }
            None => read_head(route, sending).await,
        }
    }

    /// Sends a bodiless request on a pooled connection (or a new one), retrying on another
    /// connection when a pooled one turns out closed before the request went out.
    async fn pooled(
        self,
        dest: &Dest,
        mut request: Request<Body>,
        route: &Route,
    ) -> Result<(Response<Incoming>, Option<crate::pool::Back>), Failure> {
        loop {
            let (mut sender, reused) = match self.pool.checkout(dest) {
                Some(sender) => (sender, true),
                // Boxed: a connect's state stays out of the futures of requests on a pooled
                // connection.
                None => (
                    Box::pin(self.pool.open(dest, route.send_timeout, false)).await?,
                    false,
                ),
            };
            if !reused {
                // A new connection: wait for its handshake to settle.
                if let Err(e) = sender.ready().await {
                    return Err(Failure::Http(e));
                }
            }
            let sending = sender.try_send_request(request);
            match tokio::time::timeout(route.read_timeout, sending).await {
                Err(_) => return Err(Failure::Timeout),
                Ok(Ok(res)) => return Ok((res, Some(self.pool.back(*dest, sender)))),
                Ok(Err(mut e)) => match e.take_message() {
                    // Not written: the upstream had closed the connection meanwhile.
                    Some(unsent) if reused => {
                        debug!(upstream = %dest, "pooled connection closed before the request went out; retrying");
                        request = unsent;
                    }
                    _ => return Err(Failure::Http(e.into_error())),
                },
            }
        }
    }
}

/// Waits for the response head for at most the route's read timeout.
async fn read_head(
    route: &Route,
    sending: impl Future<Output = hyper::Result<Response<Incoming>>>,
) -> Result<Response<Incoming>, Failure> {
    match tokio::time::timeout(route.read_timeout, sending).await {
        Ok(res) => res.map_err(Failure::Http),
        Err(_) => Err(Failure::Timeout),
    }
}

/// The upstream's response as the client gets it: cleaned headers, and a body cut off after
/// the route's read timeout without a frame (nginx `proxy_read_timeout` between two reads),
/// handing its pooled connection back when read to the end.
fn client_response(
    res: Response<Incoming>,
    route: &Route,
    back: Option<crate::pool::Back>,
) -> Response<Body> {
    let (mut parts, body) = res.into_parts();
    headers::clean_response(&mut parts.headers, parts.status);
    let body = match back {
        Some(back) => IdleTimeout::new(PooledBody::new(body, back), route.read_timeout).boxed(),
        None => IdleTimeout::new(body, route.read_timeout).boxed(),
    };
    Response::from_parts(parts, body)
}

/// The error and its sources on one line (hyper's `Display` shows one level only).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

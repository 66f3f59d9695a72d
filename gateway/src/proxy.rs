//! The request path, phase by phase: route → authorize → choose upstream → rewrite the
//! request → forward (or upgrade) → filter the response.
//!
//! Every phase that can fail turns into one of [`crate::respond`]'s responses; nothing is
//! handed to hyper as an error. The token is checked before any upstream connection is
//! opened, and bodies stream both ways (the route's body limit is enforced while streaming).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::uri::Authority;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming, SizeHint};
use tracing::{debug, warn};

use crate::body::{self, RequestBody, Sent};
use crate::config::{Config, ServiceAddr};
use crate::dns::Dns;
use crate::headers::{self, Forwarding};
use crate::metrics::{Metrics, RouteMetrics};
use crate::pool::{Dest, Pool, PoolConfig};
use crate::reclaim::ClientWait;
use crate::reload::ReloadStats;
use crate::respond::{self, Body, BoxError};
use crate::routes::{Matched, PortRule, Route, ServiceName, Upstream};
use crate::telemetry::{LogLimiter, LogPermit, redact_path, redact_uri};
use crate::throttle::AuthThrottle;
use crate::token::{
    Authenticator, RequestParts, Target, TokenDigest, TokenMemo, digest_fingerprint,
};
use crate::upgrade::Tunnels;
use crate::upstream::{Exchange, Executor};

mod static_files;

/// Longest wait for a desktop or service name's address (bounded further by the connect
/// timeout).
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a request needs: configuration, the token pipeline, the upstream pool, and
/// what it reports to (metrics, the access log, the tunnel registry).
#[derive(Debug)]
pub struct Gateway {
    config: Config,
    auth: Arc<Authenticator>,
    /// One upstream pool per connection-serving thread (see [`crate::server`]): a pooled
    /// connection's task runs on the thread that opened it, so each thread keeps its own.
    pools: Vec<Arc<Pool>>,
    /// Metric handles by route position in the table; the last one is for "none".
    route_metrics: Vec<RouteMetrics>,
    dns: Dns,
    metrics: Arc<Metrics>,
    reload_stats: ReloadStats,
    auth_log: LogLimiter,
    tunnels: Tunnels,
    throttle: AuthThrottle,
    scheme: &'static str,
}

/// The client end of a connection, computed once for all its requests.
#[derive(Debug)]
pub struct Peer {
    /// The client's address.
    pub addr: SocketAddr,
    /// Its IP as `X-Real-IP` / `X-Forwarded-For` show it.
    ip_text: HeaderValue,
    /// Its connection, told when a request body keeps it waiting on the client.
    connection: Option<Arc<ClientWait>>,
    /// The last token the connection's client had accepted (see [`TokenMemo`]).
    tokens: TokenMemo,
}

impl Peer {
    /// The peer at `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Peer {
            addr,
            ip_text: headers::peer_value(addr.ip()),
            connection: None,
            tokens: TokenMemo::default(),
        }
    }

    /// The same peer, on the connection whose `activity` notes waits on the client.
    pub(crate) fn waited_on_by(self, wait: Arc<ClientWait>) -> Self {
        Peer {
            connection: Some(wait),
            ..self
        }
    }
}

/// What the request path learned, for the metrics and the access log.
#[derive(Debug, Default)]
struct Outcome<'g> {
    /// The matched route and its metric handles.
    route: Option<(&'g Route, &'g RouteMetrics)>,
    /// Digest of the token, once one was found and hashed (logged as its fingerprint).
    token: Option<TokenDigest>,
    /// Why the token was refused.
    refusal: Option<&'static str>,
    /// The upstream dialled.
    upstream: Option<Dest>,
}

/// Where a request goes, computed before its body is touched.
#[derive(Debug)]
struct Plan {
    /// Where the request is sent.
    dial: Dest,
    /// The upstream as the route names it (nginx `$proxy_host`, the `Host` of ws/plain).
    named: Named,
    /// The upstream request target (origin form).
    uri: Uri,
}

/// An upstream's name, spelled `host:port` only when a header needs it.
#[derive(Debug)]
enum Named {
    Desktop(Target, u16),
    Service(ServiceName),
}

// === impl Gateway ===

impl Gateway {
    /// Builds the gateway; the upstream pool starts empty and nothing is resolved yet.
    pub fn new(mut config: Config) -> Self {
        let keys = std::mem::take(&mut config.keys);
        let auth = Arc::new(Authenticator::new(config.auth.clone(), keys));
        let reload_stats = ReloadStats::default();
        let metrics = Arc::new(Metrics::new(auth.clone(), Some(&reload_stats)));
        let auth_log = LogLimiter::new(config.log.auth_failure_lines_per_second);
        let throttle = AuthThrottle::from_config(&config.abuse);
        metrics.register(Box::new(throttle.throttled.clone()));
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let route_metrics = (0..=config.routes.routes().len())
            .map(|_| RouteMetrics::default())
            .collect();
        let pool_config = PoolConfig {
            connect_timeout: config.upstream.connect_timeout,
            idle_timeout: config.upstream.pool_idle_timeout,
            max_idle_per_host: config.upstream.pool_max_idle_per_host,
        };
        let pools = (0..config.limits.worker_threads())
            .map(|_| Pool::new(pool_config))
            .collect();
        let dns = Dns::new(
            &config.upstream.resolver,
            config.upstream.connect_timeout.min(DNS_TIMEOUT),
        );
        Gateway {
            config,
            auth,
            pools,
            route_metrics,
            dns,
            metrics,
            reload_stats,
            auth_log,
            tunnels: Tunnels::default(),
            throttle,
            scheme,
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token pipeline (shared with the key reloader and the metrics).
    pub fn authenticator(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// The metrics every request reports to.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The key-reload counters (registered in [`Gateway::metrics`]).
    pub fn reload_stats(&self) -> &ReloadStats {
        &self.reload_stats
    }

    /// The open WebSocket tunnels.
    pub fn tunnels(&self) -> &Tunnels {
        &self.tunnels
    }

    /// How many connection-serving threads this gateway was built for.
    pub fn workers(&self) -> usize {
        self.pools.len()
    }

    /// Answers one request received by connection-serving thread `worker` (which picks the
    /// upstream pool). Never fails: every problem becomes a response.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: &Peer,
        worker: usize,
    ) -> Response<Body> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        let mut outcome = Outcome::default();
        let pool = &self.pools[worker % self.pools.len()];
        let mut res = self.route(req, peer, pool, &mut outcome).await;
        res.headers_mut().remove(header::SERVER);
        let status = res.status().as_u16();
        let (route, slot) = match outcome.route {
            Some((route, slot)) => (route.name.as_str(), slot),
            None => ("none", self.route_slot(None)),
        };
        self.metrics
            .record_route_request(slot, route, status, started.elapsed().as_secs_f64());
        if !self.config.log.access_log || !tracing::enabled!(target: "access", tracing::Level::INFO)
        {
            return res;
        }
        // Refusals go through the limiter: a flood of forged tokens writes a bounded log.
        let suppressed = if outcome.refusal.is_some() || status == 401 {
            match self.auth_log.check() {
                LogPermit::Suppress => return res,
                LogPermit::Write => 0,
                LogPermit::WriteAfterSuppressing(n) => n,
            }
        } else {
            0
        };
        let line = AccessLine {
            method,
            uri,
            status,
            client: peer.addr.ip(),
            route: route.to_owned(),
            token: outcome.token,
            refusal: outcome.refusal,
            upstream: outcome.upstream,
            started,
            suppressed,
        };
        let (parts, body) = res.into_parts();
        Response::from_parts(parts, LoggedBody::new(body, line).boxed())
    }

    async fn route<'g>(
        &'g self,
        mut req: Request<Incoming>,
        peer: &Peer,
        pool: &Arc<Pool>,
        outcome: &mut Outcome<'g>,
    ) -> Response<Body> {
        let Ok(path) = crate::routes::RequestPath::parse(req.uri().path()) else {
            return respond::bad_request();
        };
        let Some(matched) = self.config.routes.find(&path) else {
            debug!(path = %redact_path(&path), "no route");
            return respond::not_found();
        };
        let route = matched.route;
        let slot = self.route_slot(Some(route));
        outcome.route = Some((route, slot));
        match route.upstream {
            Upstream::Healthz => return respond::text(StatusCode::OK, "OK\n"),
            Upstream::Node => {
                return respond::text(StatusCode::OK, format!("{}\n", self.config.node_name));
            }
            Upstream::Static => {
                return match &self.config.static_dir {
                    Some(dir) => static_files::serve(dir, &req, &path).await,
                    None => respond::not_found(),
                };
            }
            Upstream::Desktop(_) | Upstream::Service(_) => {}
        }

        // Container routes: the port must be allowed before any token work.
        let path_port = match (route.upstream, matched.port) {
            (Upstream::Desktop(PortRule::FromPath), Some(text)) => match text.parse::<u16>() {
                Ok(p) if self.config.routes.container_port_allowed(p) => Some(p),
                _ => {
                    debug!(route = %route.name, "container port not allowed");
                    return respond::not_found();
                }
            },
            _ => None,
        };

        if content_length(&req).is_some_and(|len| len > route.body_limit) {
            debug!(route = %route.name, "request body over the limit");
            body::discard(req.into_body());
            return respond::too_large();
        }

        let plan = match self.plan(&req, &matched, path_port, peer, outcome).await {
            Ok(plan) => plan,
            Err(res) => return res,
        };
        outcome.upstream = Some(plan.dial);

        let upgrade = if route.websocket {
            headers::upgrade_request(req.headers())
        } else {
            None
        };
        if upgrade.is_some() && !hyper::body::Body::is_end_stream(req.body()) {
            // An upgrade's bytes after the head belong to the tunnel, not to a body.
            debug!(route = %route.name, "upgrade request with a body");
            return respond::bad_request();
        }
        let Ok(client_host) = client_host(&req) else {
            debug!(route = %route.name, "repeated or invalid Host");
            return respond::bad_request();
        };

        // The client's upgrade future is taken before the request is split up.
        let on_client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let (parts, body) = req.into_parts();
        let mut up_headers = parts.headers;
        headers::remove_hop_by_hop(&mut up_headers);
        if parts.version == http::Version::HTTP_2 {
            headers::merge_cookies(&mut up_headers);
        }
        if !self.throttle.may_forward_for(peer.addr.ip()) {
            headers::remove_forwarding(&mut up_headers);
        }
        if upgrade.is_some() {
            // Checked empty above; a `Content-Length: 0` is not passed on either.
            up_headers.remove(header::CONTENT_LENGTH);
        }
        headers::apply_profile(
            &mut up_headers,
            route.headers,
            &Forwarding {
                peer: &peer.ip_text,
                client_host: client_host.as_ref().map(Authority::as_str),
                upstream_host: &|| match &plan.named {
                    Named::Desktop(target, port) => target.authority(*port),
                    Named::Service(name) => self.service(*name).authority(),
                },
                upgrade,
                scheme: self.scheme,
            },
        );

        // A body to stream makes the exchange a dedicated one (see `crate::upstream`).
        let (body, sent) = if hyper::body::Body::is_end_stream(&body) {
            (respond::empty(), None)
        } else {
            let sent = Arc::new(Sent::default());
            let body = RequestBody::new(
                body,
                route.body_limit,
                self.config.limits.client_body_timeout,
                sent.clone(),
            )
            .waited_on_by(peer.connection.clone());
            (body.boxed(), Some(sent))
        };
        let mut up = Request::new(body);
        *up.method_mut() = parts.method;
        *up.uri_mut() = plan.uri;
        *up.headers_mut() = up_headers;

        let executor = Executor {
            pool,
            metrics: &self.metrics,
            tunnels: &self.tunnels,
        };
        executor
            .execute(Exchange {
                dest: plan.dial,
                request: up,
                sent,
                upgrade: on_client_upgrade,
                route,
                slot,
                client: peer.addr.ip(),
            })
            .await
    }

    /// Authorizes the request (if the route wants a token) and computes where it goes.
    async fn plan<'r>(
        &'r self,
        req: &Request<Incoming>,
        matched: &Matched<'r, '_>,
        path_port: Option<u16>,
        peer: &Peer,
        outcome: &mut Outcome<'_>,
    ) -> Result<Plan, Response<Body>> {
        let route = matched.route;
        let query = req.uri().query();
        let (named, dial) = match route.upstream {
            Upstream::Desktop(rule) => {
                let Some(source) = route.token else {
                    // Every desktop route has a token source; a table without one is a bug.
                    tracing::error!(route = %route.name, "desktop route without a token source");
                    return Err(respond::not_found());
                };
                // A client over its failure budget gets no token work at all.
                let client = self.throttle.client(peer.addr.ip(), req.headers());
                if let Some(retry_after) = self.throttle.check(client) {
                    debug!(route = %route.name, "client throttled after authentication failures");
                    outcome.refusal = Some("throttled");
                    return Err(respond::too_many_failures(retry_after));
                }
                let parts = RequestParts {
                    header: req
                        .headers()
                        .get(crate::token::extract::HEADER_NAME)
                        .map(HeaderValue::as_bytes),
                    query,
                    container: matched.token,
                };
                let token = match source.extract(&parts) {
                    Ok(token) => token,
                    Err(refusal) => {
                        debug!(route = %route.name, reason = refusal.reason(), "token refused");
                        self.auth.record_refusal(refusal);
                        self.throttle.refused(client, refusal);
                        outcome.refusal = Some(refusal.reason());
                        return Err(respond::refusal(refusal));
                    }
                };
                let (authenticated, digest) =
                    self.auth.authenticate_on(&peer.tokens, token, now()).await;
                outcome.token = digest;
                let target = authenticated.map_err(|refusal| {
                    debug!(
                        route = %route.name,
                        token = outcome.token.as_ref().map_or_else(|| "-".to_owned(), digest_fingerprint),
                        reason = refusal.reason(),
                        "token refused"
                    );
                    outcome.refusal = Some(refusal.reason());
                    self.throttle.refused(client, refusal);
                    respond::refusal(refusal)
                })?;
                let port = match rule {
                    PortRule::Fixed(p) => p,
                    PortRule::FromPath => path_port.ok_or_else(respond::not_found)?,
                };
                let dial_port = self.config.upstream.dial_port(port);
                let dial = match &target {
                    Target::Name(name) => match self.dns.resolve(name).await {
                        Ok(ip) => Dest(SocketAddr::new(ip, dial_port)),
                        Err(e) => {
                            warn!(route = %route.name, target = %name, error = %e, "desktop name did not resolve");
                            self.metrics.upstream_error(&route.name, "dns");
                            return Err(respond::bad_gateway());
                        }
                    },
                    Target::Ip(ip) => Dest(SocketAddr::new(*ip, dial_port)),
                };
                (Named::Desktop(target, port), dial)
            }
            Upstream::Service(name) => {
                let svc = self.service(name);
                let dial = match self.dns.resolve_service(&svc.host).await {
                    Ok(ip) => Dest(SocketAddr::new(ip, svc.port)),
                    Err(e) => {
                        warn!(route = %route.name, service = %svc.host, error = %e, "service name did not resolve");
                        // Counted as before the shared resolver, when the name was resolved
                        // inside the connect: `dns` stays the desktop names' kind.
                        self.metrics.upstream_error(&route.name, "connect");
                        return Err(respond::bad_gateway());
                    }
                };
                (Named::Service(name), dial)
            }
            _ => return Err(respond::not_found()),
        };
        // Origin-form: the connection already goes to the upstream.
        let Ok(uri) = matched.upstream_request_uri(req.uri()) else {
            return Err(respond::bad_request());
        };
        Ok(Plan { dial, named, uri })
    }

    /// The metric handles of `route` (of "none" when no route matched).
    fn route_slot(&self, route: Option<&Route>) -> &RouteMetrics {
        let routes = self.config.routes.routes();
        let index = route
            .and_then(|route| routes.iter().position(|r| std::ptr::eq(r, route)))
            .unwrap_or(routes.len());
        &self.route_metrics[index]
    }

    fn service(&self, name: ServiceName) -> &ServiceAddr {
        let s = &self.config.services;
        match name {
            ServiceName::Pyos => &s.pyos,
            ServiceName::Speedtest => &s.speedtest,
            ServiceName::Console => &s.console,
            ServiceName::Website => &s.website,
        }
    }
}

/// One access-log line, written when the response body is finished (or dropped).
#[derive(Debug)]
struct AccessLine {
    method: http::Method,
    uri: Uri,
    status: u16,
    client: std::net::IpAddr,
    route: String,
    token: Option<TokenDigest>,
    refusal: Option<&'static str>,
    upstream: Option<Dest>,
    started: Instant,
    suppressed: u64,
}

impl AccessLine {
    fn write(&self, bytes_out: u64) {
        tracing::info!(
            target: "access",
            method = %self.method,
            uri = %redact_uri(self.uri.path(), self.uri.query()),
            status = self.status,
            route = %self.route,
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            bytes_out,
            client = %self.client,
            upstream = %self.upstream.as_ref().map_or_else(|| "-".to_owned(), Dest::to_string),
            token = self.token.as_ref().map_or_else(|| "-".to_owned(), digest_fingerprint),
            reason = self.refusal.unwrap_or("-"),
            suppressed = self.suppressed,
            "request"
        );
    }
}

/// A response body that counts what it sends and writes the access line when done.
struct LoggedBody {
    inner: Body,
    bytes: u64,
    line: Option<AccessLine>,
}

impl LoggedBody {
    fn new(inner: Body, line: AccessLine) -> Self {
        LoggedBody {
            inner,
            bytes: 0,
            line: Some(line),
        }
    }

    fn finish(&mut self) {
        if let Some(line) = self.line.take() {
            line.write(self.bytes);
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl hyper::body::Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => this.finish(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The current time in Unix seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The client's `Host` (HTTP/2: `:authority` when no `Host` was sent); an error for more
/// than one `Host` or one that is no valid authority (RFC 9112 §3.2; nginx answers 400 too).
fn client_host<B>(req: &Request<B>) -> Result<Option<Authority>, ()> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => Err(()),
        (Some(host), None) => {
            let text = host.to_str().map_err(|_| ())?;
            Authority::try_from(text).map(Some).map_err(|_| ())
        }
        (None, _) => Ok(req.uri().authority().cloned()),
    }
}

fn content_length<B>(req: &Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_tokens_never_reach_the_logs() {
        assert_eq!(
            redact_path("/container/abc.def.ghi/29786/spawner/x"),
            "/container/[redacted]/29786/spawner/x"
        );
        assert_eq!(
            redact_path("/filer/container/abc.def.ghi/1/y"),
            "/filer/container/[redacted]/1/y"
        );
        assert_eq!(redact_path("/container/29786"), "/container/29786");
        assert_eq!(redact_path("/spawner/x"), "/spawner/x");
    }
}

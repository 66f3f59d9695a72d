//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! Every label value comes from a bounded set: route names from the route table, status classes,
//! refusal reasons, fixed words. No label ever holds a token, a user name, a path or an address.
//! The token-pipeline and key-reload collectors are owned by [`crate::token::AuthStats`] and
//! [`crate::reload::ReloadStats`] and registered here.

use std::sync::{Arc, OnceLock};

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::reload::ReloadStats;
use crate::token::Authenticator;

/// Buckets for request and upstream latency: 100 µs to 60 s.
const LATENCY_BUCKETS: &[f64] = &[
    1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
];

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    authenticator: Arc<Authenticator>,
    /// `gateway_requests_total{route,status_class}`.
    pub requests: IntCounterVec,
    /// `gateway_request_duration_seconds{route}`: until the response head is sent.
    pub request_seconds: HistogramVec,
    /// `gateway_upstream_errors_total{route,kind}` with `kind` one of `connect`, `timeout`,
    /// `reset`, `dns`, `protocol` (an unasked `101`).
    pub upstream_errors: IntCounterVec,
    /// `gateway_upstream_response_seconds{route}`: from dialling to the upstream's response head.
    pub upstream_seconds: HistogramVec,
    /// `gateway_websocket_tunnels_open{route}`.
    pub tunnels_open: IntGaugeVec,
    /// `gateway_websocket_bytes_total{route,direction}`, `direction` `to_upstream` or
    /// `to_client`.
    pub tunnel_bytes: IntCounterVec,
    /// `gateway_token_cache_entries`, refreshed at each scrape.
    pub cache_entries: IntGauge,
    /// `gateway_client_closed_total{reason}`: connections or requests the gateway ended for
    /// the client's behaviour: `per_address_cap`, `header_timeout`, `keepalive_timeout`,
    /// `h2_idle`, `body_timeout`, `send_timeout`.
    pub client_closed: IntCounterVec,
    /// `client_closed{reason="send_timeout"}`, resolved once: each connection's writes hold it.
    pub send_timeouts: IntCounter,
    /// `gateway_worker_connections{worker}`: client connections each connection-serving
    /// thread serves (`worker` is the thread's index; the set is fixed at start).
    pub worker_connections: IntGaugeVec,
}

/// One route's request metrics, resolved from the label vectors on first use and then kept,
/// so a request costs no label hashing or registry lock. Series still appear only once used.
#[derive(Debug, Default)]
pub struct RouteMetrics {
    /// `gateway_requests_total{route,status_class}`, by class 1xx to 5xx.
    requests: [OnceLock<IntCounter>; 5],
    /// `gateway_request_duration_seconds{route}`.
    seconds: OnceLock<Histogram>,
    /// `gateway_upstream_response_seconds{route}`.
    upstream: OnceLock<Histogram>,
}

fn must<T>(result: prometheus::Result<T>) -> T {
    // Only reachable with an invalid metric name or a duplicate registration, both fixed at
    // compile time here.
    result.unwrap_or_else(|e| unreachable!("metric definition: {e}"))
}

impl Metrics {
    /// Registers every metric, including the authenticator's and (if given) the reloader's.
    pub fn new(authenticator: Arc<Authenticator>, reload: Option<&ReloadStats>) -> Self {
        let registry = Registry::new();
        let requests = must(IntCounterVec::new(
            Opts::new(
                "gateway_requests_total",
                "Requests by route and status class.",
            ),
            &["route", "status_class"],
        ));
        let request_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request head to response head, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        ));
        let upstream_errors = must(IntCounterVec::new(
            Opts::new(
                "gateway_upstream_errors_total",
                "Upstream failures by route and kind (connect, timeout, reset, dns, protocol).",
            ),
            &["route", "kind"],
        ));
        let upstream_seconds = must(HistogramVec::new(
            HistogramOpts::new(
                "gateway_upstream_response_seconds",
                "Time from dialling the upstream to its response head, by route.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        ));
        let tunnels_open = must(IntGaugeVec::new(
            Opts::new(
                "gateway_websocket_tunnels_open",
                "Open WebSocket tunnels by route.",
            ),
            &["route"],
        ));
        let client_closed = must(IntCounterVec::new(
            Opts::new(
                "gateway_client_closed_total",
                "Client connections or requests ended by a limit, by reason.",
            ),
            &["reason"],
        ));
        let tunnel_bytes = must(IntCounterVec::new(
            Opts::new(
                "gateway_websocket_bytes_total",
                "Bytes carried by WebSocket tunnels, by route and direction.",
            ),
            &["route", "direction"],
        ));
        let worker_connections = must(IntGaugeVec::new(
            Opts::new(
                "gateway_worker_connections",
                "Client connections served, by connection-serving thread.",
            ),
            &["worker"],
        ));
        let cache_entries = must(IntGauge::new(
            "gateway_token_cache_entries",
            "Tokens whose target is cached.",
        ));
        let build_info = must(IntGaugeVec::new(
            Opts::new("gateway_build_info", "Build information; always 1."),
            &["version"],
        ));
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);

        let mut collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(requests.clone()),
            Box::new(request_seconds.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(upstream_seconds.clone()),
            Box::new(tunnels_open.clone()),
            Box::new(tunnel_bytes.clone()),
            Box::new(client_closed.clone()),
            Box::new(worker_connections.clone()),
            Box::new(cache_entries.clone()),
            Box::new(build_info),
        ];
        collectors.extend(authenticator.stats().collectors());
        if let Some(reload) = reload {
            collectors.extend(reload.collectors());
        }
        collectors.push(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        for collector in collectors {
            must(registry.register(collector));
        }
        Metrics {
            registry,
            authenticator,
            requests,
            request_seconds,
            upstream_errors,
            upstream_seconds,
            tunnels_open,
            tunnel_bytes,
            cache_entries,
            send_timeouts: client_closed.with_label_values(&["send_timeout"]),
            client_closed,
            worker_connections,
        }
    }

    /// Registers one more collector (e.g. the TLS reload counters, created after the gateway).
    pub fn register(&self, collector: Box<dyn prometheus::core::Collector>) {
        if let Err(e) = self.registry.register(collector) {
            tracing::error!(error = %e, "metric registration failed");
        }
    }

    /// `2xx`, `4xx`, … for a status code.
    pub fn status_class(status: u16) -> &'static str {
        match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        }
    }

    /// Counts one finished request of `route`, through its cached handles.
    pub fn record_route_request(
        &self,
        slot: &RouteMetrics,
        route: &str,
        status: u16,
        seconds: f64,
    ) {
        let class = Self::status_class(status);
        let index = usize::from(class.as_bytes()[0] - b'1');
        slot.requests[index]
            .get_or_init(|| self.requests.with_label_values(&[route, class]))
            .inc();
        slot.seconds
            .get_or_init(|| self.request_seconds.with_label_values(&[route]))
            .observe(seconds);
    }

    /// Records how long `route`'s upstream took to answer, through its cached handle.
    pub fn record_upstream_seconds(&self, slot: &RouteMetrics, route: &str, seconds: f64) {
        slot.upstream
            .get_or_init(|| self.upstream_seconds.with_label_values(&[route]))
            .observe(seconds);
    }

    /// Counts one upstream failure of `kind` (`connect`, `timeout`, `reset`, `dns`, `protocol`).
    pub fn upstream_error(&self, route: &str, kind: &'static str) {
        self.upstream_errors.with_label_values(&[route, kind]).inc();
    }

    /// Counts one client connection or request ended by a limit (see [`Metrics::client_closed`]).
    pub fn client_closed(&self, reason: &'static str) {
        self.client_closed.with_label_values(&[reason]).inc();
    }

    /// The Prometheus text exposition of every metric.
    pub async fn render(&self) -> String {
        let entries = self.authenticator.cached_entries().await;
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for well-formed families.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            tracing::error!("metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{AuthConfig, Keys};

    #[tokio::test]
    async fn every_family_is_exposed_with_help_text() {
        let auth = Arc::new(Authenticator::new(AuthConfig::default(), Keys::default()));
        let reload = ReloadStats::default();
        let metrics = Metrics::new(auth.clone(), Some(&reload));
        metrics.record_route_request(&RouteMetrics::default(), "websockify", 101, 0.001);
        // Labelled families appear once a child exists.
        metrics
            .upstream_seconds
            .with_label_values(&["filer"])
            .observe(0.01);
        assert_eq!(
            auth.authenticate("", 0).await,
            Err(crate::token::Refusal::Missing)
        );
        reload.failures.inc();
        let text = metrics.render().await;
        for family in [
            "gateway_requests_total{route=\"websockify\",status_class=\"1xx\"} 1",
            "gateway_token_outcomes_total{outcome=\"missing\"} 1",
            "gateway_key_reloads_total{result=\"failure\"} 1",
            "gateway_token_cache_entries 0",
            "gateway_build_info{version=",
            "# HELP gateway_token_verify_seconds",
            "# HELP gateway_token_decrypt_seconds",
            "gateway_upstream_response_seconds_count{route=\"filer\"} 1",
        ] {
            assert!(text.contains(family), "{family} missing from:\n{text}");
        }
    }

    #[test]
    fn status_classes() {
        assert_eq!(Metrics::status_class(101), "1xx");
        assert_eq!(Metrics::status_class(204), "2xx");
        assert_eq!(Metrics::status_class(401), "4xx");
        assert_eq!(Metrics::status_class(504), "5xx");
    }
}

//! Operating the gateway: metrics, shutdown, TLS, reload, abuse limits, HTTP/2 abuse, upstream
//! faults, connection lifecycle, the binary as an operator runs it (`--check-config`,
//! `gateway demo`) and the Kubernetes manifests' names.
//!
//! One test binary per area (linking one binary per file cost CI time); each module is one
//! former `tests/<name>.rs`, with its test names unchanged.

#[path = "../support_proxy/mod.rs"]
mod support_proxy;

mod abuse;
mod check_config;
mod demo_smoke;
mod faults;
mod h2;
mod lifecycle;
mod manifests_names;
mod metrics;
mod reload;
mod shutdown;
mod tls;

//! The proxy over loopback: routes, errors, the upstream pool, WebSockets, streaming, DNS,
//! the example config, the server binary's listeners, and the path table against a real nginx.
//!
//! One test binary per area (linking one binary per file cost CI time); each module is one
//! former `tests/<name>.rs`, with its test names unchanged.

#[path = "../support_proxy/mod.rs"]
mod support_proxy;

mod config_example;
mod dns;
mod errors;
mod nginx;
mod paths_nginx;
mod pool;
mod routes;
mod server;
mod stream;
mod ws;

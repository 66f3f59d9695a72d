//! abcdesktop's web gateway, in Rust.
//!
//! Every request to a user's desktop carries a *desktop token* minted by pyos: an RS256 JWS
//! whose `hash` claim is the desktop pod's address, RSA-encrypted. The gateway takes the token
//! from where the route says ([`token::TokenSource`]), verifies it, decrypts and validates the
//! address ([`token::Authenticator`]) and proxies to that pod.
//!
//! Module map:
//! - [`keys`]: reading the signing and payload key files (PEM);
//! - [`token`]: the token pipeline (extract, verify, decrypt, validate, cache);
//! - [`reload`]: key hot reload (Kubernetes Secret updates, rotation overlap);
//! - [`config`]: the TOML file and environment → validated [`config::Config`]; `units`:
//!   durations and sizes as the file spells them;
//! - [`routes`]: abcdesktop's route table as data and nginx's matching rules;
//! - [`server`]: the workers' accept loops ([`server::serve`]); `connection`: one client connection's
//!   protocol and deadlines; [`proxy`]: the request path; `upstream`: the one executor of
//!   upstream exchanges (pooled or dedicated, upgrade or not); `body`: body adapters;
//!   `pool`: pooled upstream connections; `upgrade`: WebSocket tunnels; `headers`: header profiles; [`respond`]: the
//!   gateway's own responses; `dns`: desktop-name resolution.
//!
//! This crate holds only what serving needs. Key generation, token minting and `gateway demo`
//! are in the `gateway-tooling` crate, which depends on this one (never the reverse); the
//! `gateway` binary is the `gateway` package (`gateway-bin/`).
//!
//! The public surface is what the binary, `keys-tool`, the tooling, tests, benches and fuzz
//! properties use: four modules whose types they build and read (`config`, `routes`,
//! `server`, `token`) and, from the crate-private others, the items re-exported below, so the
//! compiler reports what in the rest is dead.

pub(crate) mod admin;
pub(crate) mod body;
pub mod config;
pub(crate) mod connection;
pub(crate) mod deadline;
pub(crate) mod dns;
pub(crate) mod headers;
pub(crate) mod keys;
pub(crate) mod metrics;
pub(crate) mod pool;
pub(crate) mod proxy;
pub(crate) mod reclaim;
pub(crate) mod reload;
pub(crate) mod respond;
pub mod routes;
pub mod server;
pub(crate) mod splice;
pub(crate) mod telemetry;
pub(crate) mod throttle;
pub(crate) mod tls;
pub mod token;
pub(crate) mod units;
pub(crate) mod upgrade;
pub(crate) mod upstream;

// The façade: from the crate-private modules, only what is used outside the crate.
pub use keys::{KeyError, private_key_from_pem, public_key_from_pem};
pub use proxy::Gateway;
pub use reload::{KeyReloader, KeySources, ReloadOutcome, ReloadStats, run as run_reloads};
pub use telemetry::{LogFormat, init as init_logging};
pub use throttle::DEFAULT_LIMIT as DEFAULT_AUTH_FAILURES_PER_IP;
pub use tls::TlsState;

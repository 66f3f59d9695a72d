//! What surrounds abcdesktop's gateway without being part of serving: the server library
//! (`gateway`) never depends on this crate.
//!
//! - [`keygen`]: abcdesktop's three key pairs (`keys-tool gen`, the demo, tests, benchmarks);
//! - [`mint`]: pyos-shaped desktop tokens (`keys-tool mint`, the demo, tests, the load harness);
//! - [`demo`]: `gateway demo`, the gateway with throw-away keys in front of a fake desktop;
//! - [`fixtures`]: throw-away key directories (the demo, tests, benchmarks);
//! - [`upstream`]: in-process HTTP and WebSocket upstreams on loopback (the demo's fake
//!   desktop, the tests' echo services, the load harness's bench upstream).

pub mod demo;
pub mod fixtures;
pub mod keygen;
pub mod mint;
pub mod upstream;

//! What surrounds abcdesktop's gateway without being part of serving: the server library
//! (`gateway`) never depends on this crate.
//!
//! - [`keygen`]: abcdesktop's three key pairs (`keys-tool gen`, the demo, tests, benchmarks);
//! - [`mint`]: pyos-shaped desktop tokens (`keys-tool mint`, the demo, tests, the load harness);
//! - [`demo`]: `gateway demo`, the gateway with throw-away keys in front of a fake desktop.

pub mod demo;
pub mod keygen;
pub mod mint;

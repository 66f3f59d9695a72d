//! The token pipeline end to end: cache, interop with pyos's libraries and openssl, refusals,
//! the differential test against jsonwebtoken, throttling, key reload and rotation.
//!
//! One test binary per area (linking one binary per file cost CI time); each module is one
//! former `tests/<name>.rs`, with its test names unchanged.

#[path = "../support_proxy/mod.rs"]
mod support_proxy;
#[path = "../token_support/mod.rs"]
mod token_support;

mod cache;
mod differential;
mod interop;
mod refusals;
mod reload_keys;
mod throttle;

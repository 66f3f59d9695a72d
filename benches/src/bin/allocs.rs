//! `allocs`: the gateway, in this process, under an allocator that counts; a `loadgen run`
//! command (another process, like the upstream) drives it twice, a warm-up then the measured
//! run, and the allocations made meanwhile are divided by the requests answered.
//!
//!   allocs GATEWAY_TOML -- LOADGEN_BIN run … --json FILE
//!
//! Prints one JSON object: requests, allocations and bytes allocated per request. Everything
//! this process allocates while the measured run lasts is the gateway's (the load and the
//! upstream run elsewhere), so the figure is the request path's, plus a little timer and
//! bookkeeping work that does not depend on the request count.

// A global allocator is an `unsafe` trait; this one only forwards to `System` and counts.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway::config::{Env, FileConfig};

/// The system allocator, counting calls that hand out memory (alloc, alloc_zeroed, realloc).
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to `System`; the counters are plain atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(new_size as u64, Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn snapshot() -> (u64, u64) {
    (
        ALLOCATIONS.load(Ordering::Relaxed),
        BYTES.load(Ordering::Relaxed),
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(split) = args.iter().position(|a| a == "--") else {
        eprintln!("usage: allocs GATEWAY_TOML -- LOADGEN_BIN run … --json FILE");
        std::process::exit(2);
    };
    let (config_path, command) = (&args[..split], &args[split + 1..]);
    let (Some(config_path), Some((program, load_args))) =
        (config_path.first(), command.split_first())
    else {
        eprintln!("usage: allocs GATEWAY_TOML -- LOADGEN_BIN run … --json FILE");
        std::process::exit(2);
    };
    let json = load_args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| load_args.get(i + 1))
        .expect("the loadgen command writes --json FILE");

    let env = Env::from_fn(|_| None);
    let config = FileConfig::read(Some(std::path::Path::new(config_path)), &env)
        .expect("config file")
        .validate()
        .expect("valid config");
    let listen = config.listen;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind(listen).await.expect("listen");
            let _ = gateway::server::run(listener, None, config, std::future::pending()).await;
        });
    });
    let up = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        std::net::TcpStream::connect(listen).is_ok()
    });
    assert!(up, "the gateway did not start listening on {listen}");

    let run = || {
        let status = std::process::Command::new(program)
            .args(load_args)
            .status()
            .expect("loadgen");
        assert!(status.success(), "loadgen failed: {status}");
    };
    run(); // warm-up: connections, the token cache, the upstream pool
    let before = snapshot();
    run();
    let after = snapshot();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json).expect("loadgen's JSON")).expect("JSON");
    let requests = report["ok"].as_u64().expect("ok count").max(1);
    println!(
        "{}",
        serde_json::json!({
            "requests": requests,
            "allocations_per_request": (after.0 - before.0) as f64 / requests as f64,
            "bytes_per_request": (after.1 - before.1) as f64 / requests as f64,
        })
    );
}

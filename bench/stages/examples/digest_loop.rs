//! The credential's SHA-256 (the scope caches' key) of the benchmark's 183-byte token, in a
//! loop: what one digest costs warm, built for wasm32-wasip1 and run by node's V8 like
//! `request_loop` (bench/README.md, "Floor against floor").

use keystone_prom_wasm::auth::credentials::Credential;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let mut runs = Vec::new();
    let mut acc = 0u8;
    // Built once: only the digest is timed, not the token's copy.
    let credential = Credential::Token(keystone_prom_wasm_stages::TOKEN.to_string());
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..n {
            let digest = black_box(&credential).digest();
            acc ^= digest[(i % 32) as usize];
        }
        runs.push(start.elapsed().as_secs_f64() * 1e6 / f64::from(n));
    }
    runs.sort_by(f64::total_cmp);
    println!("{n} digests x 5, {:.3} µs each (median of 5 runs; {acc})", runs[2]);
}

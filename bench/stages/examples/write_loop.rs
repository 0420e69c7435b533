//! The write workload's decode → enforce → encode in a loop (the batches of `src/write.rs`,
//! generated here: the same as `make bench` sends), natively or built for wasm32-wasip1 with
//! the filter's release profile and allocator and run by node's V8 (`make bench-loop`): how
//! much of the filter's cost per batch in Envoy is the Wasm code itself, and how much is
//! Envoy's (the body into and out of the VM, buffering). `write_loop [BATCHES_PER_RUN] [prost]`:
//! `prost` times the reference path (decode into prost's messages, enforce, encode) instead of
//! the filter's one-pass `remote_write::rewrite`.

use keystone_prom_wasm::enforce::remote_write::Limits;
use keystone_prom_wasm_stages::write;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let prost = std::env::args().nth(2).is_some_and(|a| a == "prost");
    let (rewrite, path): (fn(&[u8], &_, &_) -> usize, _) = if prost {
        (write::rewrite_prost, "decode + enforce + encode (prost)")
    } else {
        (write::rewrite, "rewrite (one pass)")
    };
    let bodies = write::bodies(write::BATCHES, write::BATCH_SAMPLES);
    let (policy, limits) = (write::policy(), Limits::default());
    for b in bodies.iter().take(8) {
        rewrite(b, &policy, &limits); // warm-up
    }
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..n {
            black_box(rewrite(black_box(&bodies[i % bodies.len()]), &policy, &limits));
        }
        runs.push(start.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    runs.sort_by(f64::total_cmp);
    let per = runs[2];
    println!(
        "{} batches of {} samples, {path}: {per:.0} µs each (median of 5 runs, fastest {:.0}), {:.0} samples/s",
        n * 5,
        write::BATCH_SAMPLES,
        runs[0],
        write::BATCH_SAMPLES as f64 / per * 1e6
    );
}

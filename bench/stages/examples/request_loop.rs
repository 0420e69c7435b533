//! The dashboard request of `DashboardRequest` in a loop, built for wasm32-wasip1 with the
//! filter's release profile (and its allocator, which the library brings), to profile the
//! core as V8 runs it. `request_loop N cold` sweeps a buffer larger than the CPU caches
//! between requests, as Envoy's own work between two requests does, and subtracts the
//! sweep's own time (a noisy figure on a busy machine: compare runs, not single numbers).

use std::hint::black_box;
use std::time::Instant;

/// Natively, heap allocations are counted too (in Wasm the library's allocator is used).
#[cfg(not(target_arch = "wasm32"))]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::sync::atomic::{AtomicU64, Ordering};

    pub static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

    pub struct Counting;

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            System.alloc(layout)
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            System.dealloc(ptr, layout)
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            System.realloc(ptr, layout, new_size)
        }
    }

    #[global_allocator]
    static ALLOCATOR: Counting = Counting;

    pub fn count() -> u64 {
        ALLOCATIONS.load(Ordering::Relaxed)
    }
}

#[cfg(target_arch = "wasm32")]
mod counting {
    pub fn count() -> u64 {
        0
    }
}

fn sweep(buf: &mut [u8], round: u8) {
    for i in (0..buf.len()).step_by(64) {
        buf[i] = buf[i].wrapping_add(round);
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: u32 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let cold = args.next().as_deref() == Some("cold");
    let mut bench = keystone_prom_wasm_stages::DashboardRequest::new();
    let mut buf = vec![0u8; if cold { 8 << 20 } else { 0 }];
    let allocations = counting::count();
    let mut runs = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        for i in 0..n {
            bench.run();
            sweep(&mut buf, i as u8);
        }
        let total = start.elapsed().as_secs_f64();
        let start = Instant::now();
        for i in 0..n {
            sweep(black_box(&mut buf), i as u8);
        }
        let sweeps = start.elapsed().as_secs_f64();
        runs.push((total - sweeps) * 1e6 / f64::from(n));
    }
    runs.sort_by(f64::total_cmp);
    let per = runs[2];
    let n = n * 5;
    let allocations = (counting::count() - allocations) as f64 / f64::from(n);
    println!("{n} requests{}, {per:.2} µs each (median of 5 runs, fastest {:.2}), {allocations} heap allocations each (native only)", if cold { " (cold caches)" } else { "" }, runs[0]);
}

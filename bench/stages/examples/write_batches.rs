//! `write_batches DIR [N [SAMPLES]]`: the remote write batches of `make bench`'s write
//! workload (see `src/write.rs`), as request bodies DIR/batch-000.bin…, and a line of JSON
//! that describes them. The native bench (`benches/stages.rs`, group `write`) reads the same
//! files when `KPW_WRITE_DIR` names DIR.

use keystone_prom_wasm::enforce::remote_write;
use keystone_prom_wasm_stages::write;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().expect("usage: write_batches DIR [N [SAMPLES]]");
    let n: usize = args.next().map_or(write::BATCHES, |a| a.parse().expect("N"));
    let samples: usize = args.next().map_or(write::BATCH_SAMPLES, |a| a.parse().expect("SAMPLES"));
    std::fs::create_dir_all(&dir).expect("DIR");
    let batches = write::batches(n, samples);
    let (mut series, mut labels, mut with_project, mut raw, mut compressed) = (0, 0, 0, 0, 0);
    for (i, b) in batches.iter().enumerate() {
        series += b.timeseries.len();
        for s in &b.timeseries {
            labels += s.labels.len();
            with_project += usize::from(s.labels.iter().any(|l| l.name == "project"));
        }
        let body = remote_write::encode(&remote_write::Decoded::V1(b.clone())).expect("encode");
        raw += remote_write::wire::decompress(&body, usize::MAX).expect("decompress").len();
        compressed += body.len();
        std::fs::write(format!("{dir}/batch-{i:03}.bin"), &body).expect("write");
    }
    // after the filter: what it forwards (the tenant label stamped, re-encoded)
    let policy = write::policy();
    let limits = Default::default();
    let forwarded: usize = (0..n)
        .map(|i| write::rewrite(&std::fs::read(format!("{dir}/batch-{i:03}.bin")).expect("read"), &policy, &limits))
        .sum();
    let nf = n as f64;
    println!(
        "{{\"batches\":{n},\"samples_per_batch\":{samples},\"series\":{series},\"labels_per_series\":{:.2},\
         \"with_project_label\":{:.3},\"protobuf_bytes\":{:.0},\"snappy_bytes\":{:.0},\"forwarded_bytes\":{:.0}}}",
        labels as f64 / series as f64,
        with_project as f64 / series as f64,
        raw as f64 / nf,
        compressed as f64 / nf,
        forwarded as f64 / nf
    );
}

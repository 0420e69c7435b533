//! Each stage of a request, natively: where the time goes when a `make bench` target is
//! missed. `cargo bench --manifest-path bench/stages/Cargo.toml` (or `make bench-stages`).

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use keystone_prom_wasm::auth::credentials::Credential;
use keystone_prom_wasm::auth::shared_cache;
use keystone_prom_wasm::config::Config;
use keystone_prom_wasm::enforce::params::Rewriter;
use keystone_prom_wasm::enforce::promql::{enforce, Tenant};
use keystone_prom_wasm::enforce::rewrite_cache::RewriteCache;
use keystone_prom_wasm::enforce::routes::{self, Endpoint};
use keystone_prom_wasm::policy::Access;

use keystone_prom_wasm_stages::{DASHBOARD, TOKEN};
const PLAIN: &str = r#"sum by (job) (rate(http_requests_total{job="api",instance!="x"}[5m]))"#;
const REGEX: &str = r#"sum by (job) (rate(http_requests_total{job=~"api|web",code=~"5.."}[5m]))"#;

fn stages(c: &mut Criterion) {
    let cfg = Config::from_json(br#"{"keystone":{"url":"http://ks:5000/v3"}}"#).unwrap();
    let tenant = Tenant::new("project_id", vec!["236330d7b278485bbb7f97d3d03965a0".into()]);
    let scope = keystone_prom_wasm_stages::member_scope();
    let digest = Credential::Token(TOKEN.into()).digest();
    let entry = shared_cache::encode(&digest, &scope, 2_000_000_000);

    c.bench_function("credential: parse X-Auth-Token", |b| {
        b.iter(|| Credential::from_headers(|n| (n == "x-auth-token").then_some(TOKEN)))
    });
    c.bench_function("credential: SHA-256", |b| b.iter(|| black_box(Credential::Token(TOKEN.into())).digest()));
    c.bench_function("cache: slot key", |b| b.iter(|| shared_cache::slot_key("ns", black_box(&digest), 16384)));
    c.bench_function("cache: decode shared entry", |b| b.iter(|| shared_cache::decode(black_box(&entry), &digest, 1)));
    c.bench_function("route: classify", |b| b.iter(|| routes::classify(black_box("/api/v1/query_range"), &routes::Paths::default())));
    c.bench_function("policy: tenant", |b| {
        b.iter(|| keystone_prom_wasm::policy::decide(&cfg, black_box(&scope), Access::Read, "GET", "/api/v1/query"))
    });
    c.bench_function("rewrite: parse + enforce + print (no regex)", |b| b.iter(|| enforce(black_box(PLAIN), &tenant, 64)));
    c.bench_function("rewrite: parse + enforce + print (two regexes)", |b| b.iter(|| enforce(black_box(REGEX), &tenant, 64)));
    let mut rc = RewriteCache::new(4 << 20);
    c.bench_function("request: dashboard query string, cached rewrite", |b| {
        b.iter(|| {
            let mut e = Rewriter { tenant: &tenant, limits: &cfg.limits, cache: &mut rc };
            e.params(black_box(DASHBOARD), Endpoint::QueryRange)
        })
    });
}

/// One whole request on the dashboard path: headers in, credential, cache, policy, cached
/// rewrite, `:path` out, then the response callbacks and the end of the stream.
fn whole_request(c: &mut Criterion) {
    let mut bench = keystone_prom_wasm_stages::DashboardRequest::new();
    c.bench_function("whole request: dashboard query, cached token and rewrite", |b| b.iter(|| bench.run()));
}

/// Remote write: decode → enforce → encode of the write workload's batches (2,000 samples
/// each), one batch per iteration, the batches in turn, as the filter does it for a tenant's
/// write (`make bench` times this beside the filter's cost in Envoy). With `KPW_WRITE_DIR`,
/// the batch files `make bench` sends (bench/stages/examples/write_batches.rs); otherwise the
/// same batches generated here.
fn write(c: &mut Criterion) {
    use keystone_prom_wasm::enforce::remote_write::Limits;
    use keystone_prom_wasm_stages::write;
    let bodies: Vec<Vec<u8>> = match std::env::var_os("KPW_WRITE_DIR") {
        Some(dir) => {
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .expect("KPW_WRITE_DIR")
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "bin"))
                .collect();
            files.sort();
            files.iter().map(|p| std::fs::read(p).expect("a batch file")).collect()
        }
        None => write::bodies(write::BATCHES, write::BATCH_SAMPLES),
    };
    assert!(!bodies.is_empty(), "no batches");
    let samples = std::env::var("KPW_WRITE_SAMPLES").map_or(write::BATCH_SAMPLES as u64, |s| s.parse().expect("KPW_WRITE_SAMPLES"));
    let (policy, limits) = (write::policy(), Limits::default());
    let mut g = c.benchmark_group("write");
    g.throughput(criterion::Throughput::Elements(samples));
    let mut i = 0;
    g.bench_function("decode_enforce_encode", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            write::rewrite(black_box(&bodies[i]), &policy, &limits)
        })
    });
    // the reference path (prost's messages), which the filter's one pass matches byte for byte
    let mut i = 0;
    g.bench_function("decode_enforce_encode_prost", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            write::rewrite_prost(black_box(&bodies[i]), &policy, &limits)
        })
    });
    // its three steps apart (not timed by `make bench`)
    use keystone_prom_wasm::enforce::remote_write::{self, Schema};
    let decoded: Vec<_> = bodies.iter().map(|b| remote_write::decode(b, Schema::V1, &limits).expect("decode")).collect();
    let mut i = 0;
    g.bench_function("decode", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            remote_write::decode(black_box(&bodies[i]), Schema::V1, &limits).is_ok()
        })
    });
    let mut i = 0;
    g.bench_function("enforce", |b| {
        b.iter_batched_ref(
            || {
                i = (i + 1) % decoded.len();
                decoded[i].clone()
            },
            |d| remote_write::enforce(d, &policy).is_ok(),
            criterion::BatchSize::LargeInput,
        )
    });
    let mut i = 0;
    g.bench_function("encode", |b| {
        b.iter(|| {
            i = (i + 1) % decoded.len();
            remote_write::encode(black_box(&decoded[i])).map(|v| v.len())
        })
    });
    g.finish();
}

criterion_group!(benches, stages, whole_request, write);
criterion_main!(benches);

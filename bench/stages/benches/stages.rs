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
    c.bench_function("route: classify", |b| b.iter(|| routes::classify(black_box("/api/v1/query_range"), "", &[])));
    c.bench_function("policy: tenant", |b| {
        b.iter(|| keystone_prom_wasm::policy::decide(&cfg, black_box(&scope), "GET", "/api/v1/query"))
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

criterion_group!(benches, stages, whole_request);
criterion_main!(benches);

//! Every query in `tests/cases/promql_prometheus.jsonl` with what Prometheus 2.42 answers
//! it: accepted (`ok`), or refused with a parse error (`bad_data` and the message). The
//! filter accepts what Prometheus accepts and refuses what it refuses, with the same
//! message (`same`), except in two recorded ways:
//! - `newer`: Prometheus 3 accepts it (numbers as durations, quoted label names); the
//!   filter accepts it and sends a form that 2.42 reads too;
//! - `upstream`: a regex that Rust's regex syntax takes and Go's refuses; the filter sends
//!   it on, tenant matcher added, and the upstream refuses it with its own message.
//!
//! The e2e test `test_promql_fidelity.py` checks each recorded answer against the live
//! Prometheus, and the filter's answers through Envoy.
use keystone_prom_wasm::enforce::promql::{enforce, EnforceError, Tenant};

#[test]
fn the_filter_answers_as_prometheus() {
    let wrong: Vec<String> = include!("cases/fidelity.rs");
    assert!(
        wrong.is_empty(),
        "{} differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

// The cases of promql_prometheus.jsonl on which the filter differs from Prometheus 2.42:
// an expression, shared by tests/promql_fidelity.rs (native) and tests/wasm.rs (Wasm).
{
    let tenant = Tenant::new("project", vec!["p1".to_string()]);
    let cases = include_str!("promql_prometheus.jsonl");
    let mut wrong = Vec::new();
    let mut n = 0;
    for line in cases.lines().filter(|l| !l.trim().is_empty()) {
        let (query, kind, message, filter): (String, String, String, String) =
            serde_json::from_str(line).expect("a case");
        n += 1;
        let got = enforce(&query, &tenant, 64);
        let ok = match (kind.as_str(), filter.as_str(), &got) {
            ("ok", "same", Ok(_)) => true,
            ("bad_data", "same", Err(EnforceError::BadData(m))) => *m == message,
            ("bad_data", "newer" | "upstream", Ok(_)) => true,
            _ => false,
        };
        if !ok {
            wrong.push(format!("{query:?} ({filter})\n    prometheus: {kind} {message}\n    filter:     {got:?}"));
        }
    }
    assert!(n > 1000, "the cases are there");
    wrong
}

//! `config.schema.json` agrees with the parser and with the README's configuration
//! reference: the same keys, the same defaults.
#![cfg(not(target_arch = "wasm32"))]

use keystone_prom_wasm::config::Config;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn schema() -> Value {
    serde_json::from_str(include_str!("../config.schema.json")).unwrap()
}

/// Leaf keys (dotted) and their defaults (`None` without one).
fn leaves(node: &Value, prefix: &str, out: &mut BTreeMap<String, Option<Value>>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, sub) in props {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let is_section =
            sub.get("type") == Some(&json!("object")) && sub.get("properties").is_some();
        if is_section && key != "keystone.service_credentials" {
            leaves(sub, &key, out);
        } else {
            out.insert(key, sub.get("default").cloned());
        }
    }
}

fn schema_keys() -> BTreeMap<String, Option<Value>> {
    let mut out = BTreeMap::new();
    leaves(&schema(), "", &mut out);
    out
}

fn set(root: &mut Map<String, Value>, dotted: &str, v: Value) {
    let mut parts: Vec<&str> = dotted.split('.').collect();
    let last = parts.pop().unwrap();
    let mut node = root;
    for p in parts {
        node = node
            .entry(p)
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .unwrap();
    }
    node.insert(last.to_string(), v);
}

#[test]
fn schema_defaults_are_the_parsers() {
    let mut cfg = Map::new();
    set(&mut cfg, "keystone.url", json!("http://ks:5000/v3"));
    for (key, default) in schema_keys() {
        if let Some(d) = default {
            set(&mut cfg, &key, d);
        }
    }
    let with_defaults = Config::from_json(Value::Object(cfg).to_string().as_bytes()).unwrap();
    let minimal = Config::from_json(br#"{"keystone":{"url":"http://ks:5000/v3"}}"#).unwrap();
    assert_eq!(with_defaults, minimal);
}

#[test]
fn every_parser_key_is_in_the_schema() {
    // A key the parser does not know is refused: so every schema key must parse…
    let keys = schema_keys();
    for key in keys.keys() {
        let mut cfg = Map::new();
        set(&mut cfg, "keystone.url", json!("http://ks:5000/v3"));
        let probe = match key.as_str() {
            "keystone.url" => continue,
            "keystone.service_credentials" => {
                json!({"application_credential_id": "a", "application_credential_secret": "s"})
            }
            "tenant_header" => json!("X-Scope-OrgID"),
            k if k.ends_with("_env") => {
                std::env::set_var("KPW_SCHEMA_PROBE", "a-secret");
                json!("KPW_SCHEMA_PROBE")
            }
            _ => match keys[key].clone() {
                Some(d) => d,
                None => json!("x"),
            },
        };
        set(&mut cfg, key, probe);
        let r = Config::from_json(Value::Object(cfg).to_string().as_bytes());
        assert!(r.is_ok(), "{key}: {r:?}");
    }
    // …and an unknown key must not.
    assert!(Config::from_json(br#"{"keystone":{"url":"http://k/v3"},"nope":1}"#).is_err());
}

/// The README's configuration table: key -> default cell.
fn readme_keys() -> BTreeMap<String, String> {
    let readme = include_str!("../README.md");
    let section = readme.split("## Configuration reference").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let key = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((key.to_string(), cells.get(2)?.to_string()))
        })
        .collect()
}

#[test]
fn readme_documents_every_key_with_its_default() {
    let readme = readme_keys();
    let schema = schema_keys();
    assert_eq!(
        readme.keys().collect::<Vec<_>>(),
        schema.keys().collect::<Vec<_>>()
    );
    for (key, default) in schema {
        let cell = readme[&key].trim_matches('`');
        match default {
            Some(Value::String(s)) if s.is_empty() => assert_eq!(cell, "\"\"", "{key}"),
            Some(Value::String(s)) => assert_eq!(cell, s, "{key}"),
            Some(v) => assert_eq!(cell, v.to_string(), "{key}"),
            None => assert!(
                !cell.is_empty() && !cell.starts_with(char::is_numeric),
                "{key}: {cell}"
            ),
        }
    }
}

#[test]
fn readme_example_parses() {
    let readme = include_str!("../README.md");
    let section = readme.split("## Configuration reference").nth(1).unwrap();
    let example = section
        .split("```json")
        .nth(1)
        .unwrap()
        .split("```")
        .next()
        .unwrap();
    // The example reads its secret from the environment, as a deployment does.
    std::env::set_var("KPW_APPCRED_SECRET", "a-secret");
    Config::from_json(example.as_bytes()).unwrap();
}

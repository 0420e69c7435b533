//! The plugin configuration: JSON, checked key by key so that a bad configuration names
//! the key and what is wrong with it (the host then refuses to start the listener).

use serde_json::{Map, Value};

pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_PROJECT_LABEL: &str = "project_id";
pub const DEFAULT_TTL_SECONDS: u64 = 300;
pub const DEFAULT_MAX_ENTRIES: u32 = 16384;
pub const DEFAULT_REWRITE_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;
pub const DEFAULT_MAX_QUERY_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub keystone: KeystoneConfig,
    pub project_label: String,
    /// Where the Prometheus API is mounted, e.g. `/prometheus`; empty for the root.
    pub path_prefix: String,
    /// Extra paths (after the prefix) forwarded with a valid credential but no tenant
    /// enforcement. Unsafe: whatever they return, every tenant sees.
    pub unsafe_passthrough: Vec<String>,
    pub cache: CacheConfig,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeystoneConfig {
    /// The v3 URL as users know it, without a trailing slash.
    pub url: String,
    /// `host[:port]` of `url`: the callout's `:authority`.
    pub authority: String,
    /// The path of `url` (e.g. `/v3`): the prefix of the callout path.
    pub path_prefix: String,
    /// Envoy cluster name, or `host:port` under NGINX.
    pub upstream: String,
    pub timeout_ms: u64,
    /// Token put in the callout's `X-Auth-Token` instead of the user's own token.
    pub service_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub ttl_seconds: u64,
    /// Number of shared-data slots: the hard bound on the number of keys.
    pub max_entries: u32,
    /// Memory budget of each VM's cache of rewritten queries (0 turns it off).
    pub rewrite_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Largest rules/alerts answer the filter buffers to filter (after inflating).
    pub max_response_bytes: usize,
    pub max_query_bytes: usize,
    pub max_depth: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "configuration key `{}`: {}", self.key, self.problem)
    }
}

fn err(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), problem: problem.into() }
}

/// A JSON object whose keys are consumed as they are read, so leftovers are unknown keys.
struct Section<'a> {
    path: &'a str,
    map: Map<String, Value>,
}

impl<'a> Section<'a> {
    fn new(path: &'a str, v: Value) -> Result<Self, ConfigError> {
        match v {
            Value::Object(map) => Ok(Section { path, map }),
            _ => Err(err(if path.is_empty() { "(root)" } else { path }, "must be a JSON object")),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        self.map.remove(name).filter(|v| !v.is_null())
    }

    fn string(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        match self.take(name) {
            None => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s)),
            Some(Value::String(_)) => Err(err(&self.key(name), "must not be empty")),
            Some(_) => Err(err(&self.key(name), "must be a string")),
        }
    }

    fn int(&mut self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(err(&self.key(name), format!("must be an integer from {min} to {max}"))),
            },
        }
    }

    fn paths(&mut self, name: &str) -> Result<Vec<String>, ConfigError> {
        let key = self.key(name);
        match self.take(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(p) if p.starts_with('/') && !p.contains(['?', '#']) => Ok(p),
                    _ => Err(err(&key, "must be a list of paths such as \"/api/v1/metadata\"")),
                })
                .collect(),
            Some(_) => Err(err(&key, "must be a list of paths")),
        }
    }

    fn section(&mut self, name: &str) -> Result<Option<Value>, ConfigError> {
        Ok(self.take(name))
    }

    fn finish(self) -> Result<(), ConfigError> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(k) => Err(err(&self.key(k), "unknown key")),
        }
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Split `http(s)://host[:port]/path` into (authority, path prefix).
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"))?;
    if rest.contains(['?', '#', '@']) {
        return None;
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains(char::is_whitespace) {
        return None;
    }
    Some((authority.to_string(), path.trim_end_matches('/').to_string()))
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| err("(root)", format!("not valid JSON: {e}")))?;
        let mut root = Section::new("", root)?;

        let ks_value = root.section("keystone")?.ok_or_else(|| err("keystone.url", "is required"))?;
        let mut ks = Section::new("keystone", ks_value)?;
        let url = ks.string("url")?.ok_or_else(|| err("keystone.url", "is required"))?;
        let url = url.trim_end_matches('/').to_string();
        let (authority, path_prefix) = split_url(&url).ok_or_else(|| {
            err("keystone.url", "must be an http:// or https:// URL such as http://keystone:5000/v3")
        })?;
        let upstream = ks.string("upstream")?.unwrap_or_else(|| authority.clone());
        let timeout_ms = ks.int("timeout_ms", DEFAULT_TIMEOUT_MS, 1, 60_000)?;
        let service_token = ks.string("service_token")?;
        ks.finish()?;
        let keystone =
            KeystoneConfig { url, authority, path_prefix, upstream, timeout_ms, service_token };

        let project_label =
            root.string("project_label")?.unwrap_or_else(|| DEFAULT_PROJECT_LABEL.to_string());
        if !is_label_name(&project_label) || project_label.starts_with("__") {
            return Err(err("project_label", "must be a Prometheus label name, not starting with __"));
        }

        let path_prefix = root.string("path_prefix")?.unwrap_or_default();
        if !path_prefix.is_empty()
            && (!path_prefix.starts_with('/') || path_prefix.ends_with('/') || path_prefix.contains(['?', '#']))
        {
            return Err(err("path_prefix", "must start with / and not end with /, e.g. /prometheus"));
        }
        let unsafe_passthrough = root.paths("unsafe_passthrough")?;

        let mut cache = Section::new("cache", root.section("cache")?.unwrap_or(Value::Object(Map::new())))?;
        let ttl_seconds = cache.int("ttl_seconds", DEFAULT_TTL_SECONDS, 1, 86_400)?;
        let max_entries = cache.int("max_entries", u64::from(DEFAULT_MAX_ENTRIES), 1, 1 << 20)?;
        let rewrite_bytes = usize_of(cache.int("rewrite_bytes", DEFAULT_REWRITE_BYTES as u64, 0, 256 << 20)?);
        cache.finish()?;
        let max_entries = u32::try_from(max_entries).unwrap_or(1 << 20);
        let cache = CacheConfig { ttl_seconds, max_entries, rewrite_bytes };

        let mut lim = Section::new("limits", root.section("limits")?.unwrap_or(Value::Object(Map::new())))?;
        let limits = Limits {
            max_body_bytes: usize_of(lim.int("max_body_bytes", DEFAULT_MAX_BODY_BYTES as u64, 1, 16 << 20)?),
            max_response_bytes: usize_of(lim.int(
                "max_response_bytes",
                DEFAULT_MAX_RESPONSE_BYTES as u64,
                1,
                256 << 20,
            )?),
            max_query_bytes: usize_of(lim.int("max_query_bytes", DEFAULT_MAX_QUERY_BYTES as u64, 1, 4 << 20)?),
            max_depth: usize_of(lim.int("max_depth", DEFAULT_MAX_DEPTH as u64, 1, 256)?),
        };
        lim.finish()?;

        root.finish()?;
        Ok(Config { keystone, project_label, path_prefix, unsafe_passthrough, cache, limits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_json(s.as_bytes())
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = parse(r#"{"keystone":{"url":"http://keystone.example:5000/v3/"}}"#).unwrap();
        assert_eq!(c.keystone.url, "http://keystone.example:5000/v3");
        assert_eq!(c.keystone.authority, "keystone.example:5000");
        assert_eq!(c.keystone.path_prefix, "/v3");
        assert_eq!(c.keystone.upstream, "keystone.example:5000");
        assert_eq!(c.keystone.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert_eq!(c.keystone.service_token, None);
        assert_eq!(c.project_label, "project_id");
        assert_eq!(c.cache.ttl_seconds, 300);
        assert_eq!(c.cache.max_entries, DEFAULT_MAX_ENTRIES);
        assert_eq!(c.cache.rewrite_bytes, DEFAULT_REWRITE_BYTES);
        assert_eq!(c.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.limits.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(c.path_prefix, "");
        assert!(c.unsafe_passthrough.is_empty());
    }

    #[test]
    fn every_key_is_read() {
        let c = parse(
            r#"{"keystone":{"url":"https://ks/identity/v3","upstream":"outbound|5000||ks","timeout_ms":500,
                "service_token":"svc"},"project_label":"tenant","cache":{"ttl_seconds":60,"max_entries":10,"rewrite_bytes":0},
                "limits":{"max_body_bytes":1000,"max_response_bytes":2000,"max_query_bytes":100,"max_depth":8},
                "path_prefix":"/prometheus","unsafe_passthrough":["/api/v1/metadata"]}"#,
        )
        .unwrap();
        assert_eq!(c.keystone.path_prefix, "/identity/v3");
        assert_eq!(c.keystone.authority, "ks");
        assert_eq!(c.keystone.upstream, "outbound|5000||ks");
        assert_eq!(c.keystone.timeout_ms, 500);
        assert_eq!(c.keystone.service_token.as_deref(), Some("svc"));
        assert_eq!(c.project_label, "tenant");
        assert_eq!(c.cache, CacheConfig { ttl_seconds: 60, max_entries: 10, rewrite_bytes: 0 });
        assert_eq!(
            c.limits,
            Limits { max_body_bytes: 1000, max_response_bytes: 2000, max_query_bytes: 100, max_depth: 8 }
        );
        assert_eq!(c.path_prefix, "/prometheus");
        assert_eq!(c.unsafe_passthrough, vec!["/api/v1/metadata"]);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("{}", "keystone.url"),
            (r#"{"keystone":{}}"#, "keystone.url"),
            (r#"{"keystone":{"url":"ftp://x"}}"#, "keystone.url"),
            (r#"{"keystone":{"url":"http://x/v3","timeout_ms":0}}"#, "keystone.timeout_ms"),
            (r#"{"keystone":{"url":"http://x/v3","timeout_ms":"5"}}"#, "keystone.timeout_ms"),
            (r#"{"keystone":{"url":"http://x/v3","tiemout_ms":5}}"#, "keystone.tiemout_ms"),
            (r#"{"keystone":{"url":"http://x/v3"},"project_label":"a-b"}"#, "project_label"),
            (r#"{"keystone":{"url":"http://x/v3"},"project_label":"__name__"}"#, "project_label"),
            (r#"{"keystone":{"url":"http://x/v3"},"cache":{"ttl_seconds":-1}}"#, "cache.ttl_seconds"),
            (r#"{"keystone":{"url":"http://x/v3"},"cache":[]}"#, "cache"),
            (r#"{"keystone":{"url":"http://x/v3"},"bogus":1}"#, "bogus"),
            (r#"{"keystone":{"url":"http://x/v3"},"path_prefix":"prom/"}"#, "path_prefix"),
            (r#"{"keystone":{"url":"http://x/v3"},"unsafe_passthrough":"/x"}"#, "unsafe_passthrough"),
            (r#"{"keystone":{"url":"http://x/v3"},"unsafe_passthrough":["x"]}"#, "unsafe_passthrough"),
            ("not json", "(root)"),
        ];
        for (json, key) in cases {
            let e = parse(json).unwrap_err();
            assert_eq!(e.key, key, "{json}: {e}");
            assert!(e.to_string().contains(key));
        }
    }
}

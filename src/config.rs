//! The plugin configuration: JSON, checked key by key so that a bad configuration names
//! the key and what is wrong with it (the host then refuses to start the listener).

use crate::enforce::remote_read;
use crate::enforce::remote_write::{self, MetadataPolicy, OnConflict};
use serde_json::{Map, Value};

pub const DEFAULT_TIMEOUT_MS: u64 = 2000;
pub const DEFAULT_PROJECT_LABEL: &str = "project";
pub const DEFAULT_TTL_SECONDS: u64 = 300;
pub const DEFAULT_MAX_ENTRIES: u32 = 16384;
pub const DEFAULT_NEGATIVE_TTL_SECONDS: u64 = 10;
pub const DEFAULT_DOMAIN_LABEL: &str = "domain";
pub const DEFAULT_SERVICE_TYPE: &str = "metric-storage";
pub const DEFAULT_REWRITE_BYTES: usize = 4 << 20;
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;
pub const DEFAULT_MAX_QUERY_BYTES: usize = 64 * 1024;
pub const DEFAULT_MAX_DEPTH: usize = 64;
pub const DEFAULT_WRITE_PATH: &str = "/api/v1/write";
pub const DEFAULT_METADATA_UPSTREAM: &str = "prometheus";
pub const DEFAULT_METADATA_TTL_SECONDS: u64 = 60;
pub const DEFAULT_METADATA_CACHE_BYTES: usize = 1 << 20;
pub const DEFAULT_ALERTMANAGER_PREFIX: &str = "/alertmanager";
pub const DEFAULT_ALERTMANAGER_UPSTREAM: &str = "alertmanager";
pub const DEFAULT_WRITE_ROLES: [&str; 2] = ["member", "admin"];
/// Envoy's and NGINX's own default buffer: a larger body needs the host's buffer raised too.
pub const DEFAULT_WRITE_MAX_BODY_BYTES: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub keystone: KeystoneConfig,
    pub project_label: String,
    /// Who sees what: scope labels, roles, tenant header.
    pub policy: Policy,
    /// Where the Prometheus API is mounted, e.g. `/prometheus`; empty for the root.
    pub path_prefix: String,
    /// Extra paths (after the prefix) forwarded with a valid credential but no tenant
    /// enforcement. Unsafe: whatever they return, every tenant sees.
    pub unsafe_passthrough: Vec<String>,
    pub cache: CacheConfig,
    pub limits: Limits,
    /// Remote write (off by default).
    pub write: WriteConfig,
    /// Remote read (off by default).
    pub read: ReadConfig,
    /// `/api/v1/metadata`, filtered to the tenant's metric names (off by default).
    pub metadata: MetadataConfig,
    /// The Alertmanager API v2 behind the same proxy (off by default).
    pub alertmanager: AlertmanagerConfig,
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
    /// Credentials the filter logs in with to get a service token (keystonemiddleware style).
    pub service_credentials: Option<ServiceCredentials>,
    /// This service's type, matched against application credentials' access rules.
    pub service_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceCredentials {
    ApplicationCredential {
        id: String,
        secret: String,
    },
    Password {
        user: UserSpec,
        password: String,
        project: ProjectSpec,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserSpec {
    Id(String),
    Name { name: String, domain_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectSpec {
    Id(String),
    Name { name: String, domain_name: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The label of a domain-scoped token's domain id.
    pub domain_label: String,
    /// A project-scoped token also sees the project's descendants.
    pub include_subprojects: bool,
    /// Any one of these roles is needed (empty: any role on the project will do).
    pub required_roles: Vec<String>,
    /// Any one of these roles lifts label enforcement (operators' cross-tenant view).
    pub unrestricted_roles: Vec<String>,
    /// Request header that carries the tenant upstream (lower case), e.g. `x-scope-orgid`.
    pub tenant_header: Option<String>,
    /// Rewrite PromQL with the tenant label (off only when `tenant_header` does the job).
    pub label_enforcement: bool,
    /// Send keystonemiddleware's identity headers upstream.
    pub forward_identity_headers: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheConfig {
    pub ttl_seconds: u64,
    /// Number of shared-data slots: the hard bound on the number of keys.
    pub max_entries: u32,
    /// Memory budget of each VM's cache of rewritten queries (0 turns it off).
    pub rewrite_bytes: usize,
    /// How long an invalid credential is remembered as invalid (0 turns it off).
    pub negative_ttl_seconds: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_body_bytes: usize,
    /// Largest rules/alerts answer the filter buffers to filter (after inflating).
    pub max_response_bytes: usize,
    pub max_query_bytes: usize,
    pub max_depth: usize,
}

/// The `write` section: remote write through the filter.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteConfig {
    /// Off: the write paths are denied like any unknown path.
    pub enabled: bool,
    /// The write paths (after `path_prefix`), e.g. `/api/v1/receive` for Thanos Receive.
    pub paths: Vec<String>,
    /// Roles of which a writer needs one (in place of the readers' `required_roles`).
    pub required_roles: Vec<String>,
    pub on_conflict: OnConflict,
    pub metadata: MetadataPolicy,
    /// Largest compressed body (413 above).
    pub max_body_bytes: usize,
    /// Bounds of the decoded request.
    pub limits: remote_write::Limits,
}

impl WriteConfig {
    /// The paths that are write endpoints: none while writing is off.
    pub fn active_paths(&self) -> &[String] {
        if self.enabled {
            &self.paths
        } else {
            &[]
        }
    }
}

/// The `read` section: remote read (`POST /api/v1/read`).
#[derive(Debug, Clone, PartialEq)]
pub struct ReadConfig {
    pub enabled: bool,
    /// Largest compressed body (413 above).
    pub max_body_bytes: usize,
    pub limits: remote_read::Limits,
}

/// Where the filter sends a request of its own (not Keystone): an Envoy cluster or NGINX's
/// `host:port`, the path prefix the upstream serves under there, and how long it may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    pub upstream: String,
    pub path_prefix: String,
    pub timeout_ms: u64,
}

/// The `metadata` section.
#[derive(Debug, Clone, PartialEq)]
pub struct MetadataConfig {
    pub enabled: bool,
    /// Where the tenant's metric names are asked for (Prometheus itself).
    pub lookup: Lookup,
    /// How long a tenant's metric names are reused.
    pub ttl_seconds: u64,
    /// Memory budget of each VM's cache of metric names.
    pub cache_bytes: usize,
}

/// The `alertmanager` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    pub enabled: bool,
    /// Where clients reach the Alertmanager API behind the proxy, e.g. `/alertmanager`.
    pub path_prefix: String,
    /// Where the filter checks a silence before it is shown, updated or deleted.
    pub lookup: Lookup,
    /// Largest silence body (413 above), and largest silences answer filtered.
    pub max_body_bytes: usize,
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
    ConfigError {
        key: key.to_string(),
        problem: problem.into(),
    }
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
            _ => Err(err(
                if path.is_empty() { "(root)" } else { path },
                "must be a JSON object",
            )),
        }
    }

    fn key(&self, name: &str) -> String {
        if self.path.is_empty() {
            name.to_string()
        } else {
            format!("{}.{}", self.path, name)
        }
    }

    /// The key is there (and not null): its value replaces the default, even an empty list.
    fn present(&self, name: &str) -> bool {
        self.map.get(name).is_some_and(|v| !v.is_null())
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

    /// A secret: inline as `name`, or read at start-up from the environment variable that
    /// `name_env` names (Envoy passes variables to the VM through `vm_config.environment_variables`;
    /// the VM reads them with WASI, so the secret stays out of the configuration).
    fn secret(&mut self, name: &str) -> Result<Option<String>, ConfigError> {
        let env_key = format!("{name}_env");
        match (self.string(name)?, self.string(&env_key)?) {
            (Some(_), Some(_)) => Err(err(
                &self.key(&env_key),
                format!("set either {name} or {env_key}, not both"),
            )),
            (Some(inline), None) => Ok(Some(inline)),
            (None, None) => Ok(None),
            (None, Some(var)) => match std::env::var(&var) {
                Ok(v) if !v.trim().is_empty() => {
                    Ok(Some(v.trim_end_matches(['\r', '\n']).to_string()))
                }
                _ => Err(err(
                    &self.key(&env_key),
                    format!(
                        "the environment variable {var} is not set for the filter, or is empty"
                    ),
                )),
            },
        }
    }

    fn int(&mut self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
        match self.take(name) {
            None => Ok(default),
            Some(v) => match v.as_u64() {
                Some(n) if (min..=max).contains(&n) => Ok(n),
                _ => Err(err(
                    &self.key(name),
                    format!("must be an integer from {min} to {max}"),
                )),
            },
        }
    }

    fn paths(&mut self, name: &str) -> Result<Vec<String>, ConfigError> {
        let is_path = |p: &str| p.starts_with('/') && !p.contains(['?', '#']);
        self.list(
            name,
            is_path,
            "must be a list of paths such as \"/api/v1/metadata\"",
        )
    }

    fn boolean(&mut self, name: &str, default: bool) -> Result<bool, ConfigError> {
        match self.take(name) {
            None => Ok(default),
            Some(Value::Bool(b)) => Ok(b),
            Some(_) => Err(err(&self.key(name), "must be true or false")),
        }
    }

    fn strings(&mut self, name: &str) -> Result<Vec<String>, ConfigError> {
        self.list(
            name,
            |s| !s.is_empty(),
            "must be a list of non-empty strings",
        )
    }

    /// A list of strings that each pass `ok`.
    fn list(
        &mut self,
        name: &str,
        ok: impl Fn(&str) -> bool,
        problem: &str,
    ) -> Result<Vec<String>, ConfigError> {
        let key = self.key(name);
        match self.take(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) if ok(&s) => Ok(s),
                    _ => Err(err(&key, problem)),
                })
                .collect(),
            Some(_) => Err(err(&key, problem)),
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
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
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
    Some((
        authority.to_string(),
        path.trim_end_matches('/').to_string(),
    ))
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

impl Config {
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let root: Value = serde_json::from_slice(bytes)
            .map_err(|e| err("(root)", format!("not valid JSON: {e}")))?;
        let mut root = Section::new("", root)?;

        let ks_value = root
            .section("keystone")?
            .ok_or_else(|| err("keystone.url", "is required"))?;
        let mut ks = Section::new("keystone", ks_value)?;
        let url = ks
            .string("url")?
            .ok_or_else(|| err("keystone.url", "is required"))?;
        let url = url.trim_end_matches('/').to_string();
        let (authority, path_prefix) = split_url(&url).ok_or_else(|| {
            err(
                "keystone.url",
                "must be an http:// or https:// URL such as http://keystone:5000/v3",
            )
        })?;
        let upstream = ks.string("upstream")?.unwrap_or_else(|| authority.clone());
        let timeout_ms = ks.int("timeout_ms", DEFAULT_TIMEOUT_MS, 1, 60_000)?;
        let service_token = ks.secret("service_token")?;
        let service_credentials = match ks.section("service_credentials")? {
            None => None,
            Some(v) => Some(service_credentials(Section::new(
                "keystone.service_credentials",
                v,
            )?)?),
        };
        let service_type = ks
            .string("service_type")?
            .unwrap_or_else(|| DEFAULT_SERVICE_TYPE.to_string());
        ks.finish()?;
        if service_token.is_some() && service_credentials.is_some() {
            return Err(err(
                "keystone.service_token",
                "set either service_token or service_credentials, not both",
            ));
        }
        let keystone = KeystoneConfig {
            url,
            authority,
            path_prefix,
            upstream,
            timeout_ms,
            service_token,
            service_credentials,
            service_type,
        };

        let label = |root: &mut Section, key: &str, default: &str| -> Result<String, ConfigError> {
            let l = root.string(key)?.unwrap_or_else(|| default.to_string());
            if !is_label_name(&l) || l.starts_with("__") {
                return Err(err(
                    key,
                    "must be a Prometheus label name, not starting with __",
                ));
            }
            Ok(l)
        };
        let project_label = label(&mut root, "project_label", DEFAULT_PROJECT_LABEL)?;
        let domain_label = label(&mut root, "domain_label", DEFAULT_DOMAIN_LABEL)?;
        let tenant_header = root
            .string("tenant_header")?
            .map(|h| h.to_ascii_lowercase());
        if let Some(h) = &tenant_header {
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(err(
                    "tenant_header",
                    "must be an HTTP header name such as X-Scope-OrgID",
                ));
            }
        }
        let policy = Policy {
            domain_label,
            include_subprojects: root.boolean("include_subprojects", false)?,
            required_roles: root.strings("required_roles")?,
            unrestricted_roles: root.strings("unrestricted_roles")?,
            label_enforcement: root.boolean("label_enforcement", true)?,
            forward_identity_headers: root.boolean("forward_identity_headers", false)?,
            tenant_header,
        };
        if !policy.label_enforcement && policy.tenant_header.is_none() {
            return Err(err(
                "label_enforcement",
                "may be false only when tenant_header is set",
            ));
        }

        // `""` (the default, spelled out) means the root.
        let path_prefix = match root.take("path_prefix") {
            None => String::new(),
            Some(Value::String(p)) => p,
            Some(_) => return Err(err("path_prefix", "must be a string such as /prometheus")),
        };
        if !path_prefix.is_empty()
            && (!path_prefix.starts_with('/')
                || path_prefix.ends_with('/')
                || path_prefix.contains(['?', '#']))
        {
            return Err(err(
                "path_prefix",
                "must start with / and not end with /, e.g. /prometheus",
            ));
        }
        let unsafe_passthrough = root.paths("unsafe_passthrough")?;

        let mut cache = Section::new(
            "cache",
            root.section("cache")?.unwrap_or(Value::Object(Map::new())),
        )?;
        let ttl_seconds = cache.int("ttl_seconds", DEFAULT_TTL_SECONDS, 1, 86_400)?;
        let max_entries = cache.int("max_entries", u64::from(DEFAULT_MAX_ENTRIES), 1, 1 << 20)?;
        let rewrite_bytes =
            usize_of(cache.int("rewrite_bytes", DEFAULT_REWRITE_BYTES as u64, 0, 256 << 20)?);
        let negative_ttl_seconds = cache.int(
            "negative_ttl_seconds",
            DEFAULT_NEGATIVE_TTL_SECONDS,
            0,
            3600,
        )?;
        cache.finish()?;
        let max_entries = u32::try_from(max_entries).unwrap_or(1 << 20);
        let cache = CacheConfig {
            ttl_seconds,
            max_entries,
            rewrite_bytes,
            negative_ttl_seconds,
        };

        let mut lim = Section::new(
            "limits",
            root.section("limits")?.unwrap_or(Value::Object(Map::new())),
        )?;
        let limits = Limits {
            max_body_bytes: usize_of(lim.int(
                "max_body_bytes",
                DEFAULT_MAX_BODY_BYTES as u64,
                1,
                16 << 20,
            )?),
            max_response_bytes: usize_of(lim.int(
                "max_response_bytes",
                DEFAULT_MAX_RESPONSE_BYTES as u64,
                1,
                256 << 20,
            )?),
            max_query_bytes: usize_of(lim.int(
                "max_query_bytes",
                DEFAULT_MAX_QUERY_BYTES as u64,
                1,
                4 << 20,
            )?),
            max_depth: usize_of(lim.int("max_depth", DEFAULT_MAX_DEPTH as u64, 1, 256)?),
        };
        lim.finish()?;

        let write = write_config(Section::new(
            "write",
            root.section("write")?.unwrap_or(Value::Object(Map::new())),
        )?)?;
        if let Some(p) = write
            .active_paths()
            .iter()
            .find(|p| unsafe_passthrough.contains(p))
        {
            return Err(err(
                "unsafe_passthrough",
                format!("{p} is a write path (write.paths): it is enforced, not passed through"),
            ));
        }

        let read = read_config(Section::new(
            "read",
            root.section("read")?.unwrap_or(Value::Object(Map::new())),
        )?)?;
        let metadata = metadata_config(Section::new(
            "metadata",
            root.section("metadata")?
                .unwrap_or(Value::Object(Map::new())),
        )?)?;
        let alertmanager = alertmanager_config(Section::new(
            "alertmanager",
            root.section("alertmanager")?
                .unwrap_or(Value::Object(Map::new())),
        )?)?;
        if alertmanager.enabled && alertmanager.path_prefix == path_prefix {
            return Err(err(
                "alertmanager.path_prefix",
                "must differ from path_prefix (Prometheus' API)",
            ));
        }

        root.finish()?;
        Ok(Config {
            keystone,
            project_label,
            policy,
            path_prefix,
            unsafe_passthrough,
            cache,
            limits,
            write,
            read,
            metadata,
            alertmanager,
        })
    }
}

/// The `write` section; see the README's configuration reference.
fn write_config(mut w: Section) -> Result<WriteConfig, ConfigError> {
    let enabled = w.boolean("enabled", false)?;
    let paths = if w.present("paths") {
        w.paths("paths")?
    } else {
        vec![DEFAULT_WRITE_PATH.to_string()]
    };
    if paths.is_empty() {
        return Err(err(
            "write.paths",
            "must name at least one path (turn writing off with write.enabled)",
        ));
    }
    let required_roles = if w.present("required_roles") {
        w.strings("required_roles")?
    } else {
        DEFAULT_WRITE_ROLES.iter().map(|r| r.to_string()).collect()
    };
    let choice = |w: &mut Section,
                  name: &str,
                  default: &str,
                  choices: &[&str]|
     -> Result<String, ConfigError> {
        let v = w.string(name)?.unwrap_or_else(|| default.to_string());
        if choices.contains(&v.as_str()) {
            Ok(v)
        } else {
            Err(err(
                &w.key(name),
                format!("must be one of {}", choices.join(", ")),
            ))
        }
    };
    let on_conflict =
        match choice(&mut w, "on_conflict", "overwrite", &["overwrite", "reject"])?.as_str() {
            "reject" => OnConflict::Reject,
            _ => OnConflict::Overwrite,
        };
    let metadata = match choice(&mut w, "metadata", "drop", &["drop", "forward"])?.as_str() {
        "forward" => MetadataPolicy::Forward,
        _ => MetadataPolicy::Drop,
    };
    let d = remote_write::Limits::default();
    let mut size = |name: &str, default: usize, min: u64, max: u64| -> Result<usize, ConfigError> {
        Ok(usize_of(w.int(name, default as u64, min, max)?))
    };
    let max_body_bytes = size("max_body_bytes", DEFAULT_WRITE_MAX_BODY_BYTES, 1, 64 << 20)?;
    let limits = remote_write::Limits {
        max_decoded_bytes: size("max_decoded_bytes", d.max_decoded_bytes, 1, 256 << 20)?,
        max_series: size("max_series", d.max_series, 1, 1 << 20)?,
        max_labels_per_series: size("max_labels_per_series", d.max_labels_per_series, 1, 4096)?,
        max_label_bytes: size("max_label_bytes", d.max_label_bytes, 1, 1 << 20)?,
        max_memory_bytes: size("max_memory_bytes", d.max_memory_bytes, 1, 1 << 30)?,
    };
    w.finish()?;
    Ok(WriteConfig {
        enabled,
        paths,
        required_roles,
        on_conflict,
        metadata,
        max_body_bytes,
        limits,
    })
}

/// The `read` section.
fn read_config(mut r: Section) -> Result<ReadConfig, ConfigError> {
    let enabled = r.boolean("enabled", false)?;
    let d = remote_read::Limits::default();
    let max_body_bytes = usize_of(r.int(
        "max_body_bytes",
        DEFAULT_WRITE_MAX_BODY_BYTES as u64,
        1,
        64 << 20,
    )?);
    let limits = remote_read::Limits {
        max_decoded_bytes: usize_of(r.int(
            "max_decoded_bytes",
            d.max_decoded_bytes as u64,
            1,
            256 << 20,
        )?),
        max_queries: usize_of(r.int("max_queries", d.max_queries as u64, 1, 4096)?),
        max_matchers: usize_of(r.int("max_matchers", d.max_matchers as u64, 1, 4096)?),
    };
    r.finish()?;
    Ok(ReadConfig {
        enabled,
        max_body_bytes,
        limits,
    })
}

/// A lookup's `upstream`, `upstream_path_prefix` and `timeout_ms`.
fn lookup(s: &mut Section, default_upstream: &str) -> Result<Lookup, ConfigError> {
    let upstream = s
        .string("upstream")?
        .unwrap_or_else(|| default_upstream.to_string());
    // `""` (the default, spelled out) means the root.
    let path_prefix = match s.take("upstream_path_prefix") {
        None => String::new(),
        Some(Value::String(p)) => p,
        Some(_) => {
            return Err(err(
                &s.key("upstream_path_prefix"),
                "must be a string such as /prometheus",
            ))
        }
    };
    if !path_prefix.is_empty()
        && (!path_prefix.starts_with('/')
            || path_prefix.ends_with('/')
            || path_prefix.contains(['?', '#']))
    {
        return Err(err(
            &s.key("upstream_path_prefix"),
            "must start with / and not end with /, e.g. /prometheus",
        ));
    }
    let timeout_ms = s.int("timeout_ms", DEFAULT_TIMEOUT_MS, 1, 60_000)?;
    Ok(Lookup {
        upstream,
        path_prefix,
        timeout_ms,
    })
}

/// The `metadata` section.
fn metadata_config(mut m: Section) -> Result<MetadataConfig, ConfigError> {
    let enabled = m.boolean("enabled", false)?;
    let lookup = lookup(&mut m, DEFAULT_METADATA_UPSTREAM)?;
    let ttl_seconds = m.int("ttl_seconds", DEFAULT_METADATA_TTL_SECONDS, 0, 3600)?;
    let cache_bytes = usize_of(m.int(
        "cache_bytes",
        DEFAULT_METADATA_CACHE_BYTES as u64,
        0,
        256 << 20,
    )?);
    m.finish()?;
    Ok(MetadataConfig {
        enabled,
        lookup,
        ttl_seconds,
        cache_bytes,
    })
}

/// The `alertmanager` section.
fn alertmanager_config(mut a: Section) -> Result<AlertmanagerConfig, ConfigError> {
    let enabled = a.boolean("enabled", false)?;
    let path_prefix = a
        .string("path_prefix")?
        .unwrap_or_else(|| DEFAULT_ALERTMANAGER_PREFIX.to_string());
    if !path_prefix.starts_with('/')
        || path_prefix.ends_with('/')
        || path_prefix.contains(['?', '#'])
    {
        return Err(err(
            &a.key("path_prefix"),
            "must start with / and not end with /, e.g. /alertmanager",
        ));
    }
    let lookup = lookup(&mut a, DEFAULT_ALERTMANAGER_UPSTREAM)?;
    let max_body_bytes = usize_of(a.int(
        "max_body_bytes",
        DEFAULT_MAX_RESPONSE_BYTES as u64,
        1,
        256 << 20,
    )?);
    a.finish()?;
    Ok(AlertmanagerConfig {
        enabled,
        path_prefix,
        lookup,
        max_body_bytes,
    })
}

/// `{"application_credential_id", "application_credential_secret"}`, or a user
/// (`user_id`, or `username` + `user_domain_name`) with `password` and a project
/// (`project_id`, or `project_name` + `project_domain_name`).
fn service_credentials(mut s: Section) -> Result<ServiceCredentials, ConfigError> {
    let key = |k: &str| format!("keystone.service_credentials.{k}");
    let creds = if let Some(id) = s.string("application_credential_id")? {
        let secret = s.secret("application_credential_secret")?.ok_or_else(|| {
            err(
                &key("application_credential_secret"),
                "is required with application_credential_id",
            )
        })?;
        ServiceCredentials::ApplicationCredential { id, secret }
    } else {
        let user = match (
            s.string("user_id")?,
            s.string("username")?,
            s.string("user_domain_name")?,
        ) {
            (Some(id), None, None) => UserSpec::Id(id),
            (None, Some(name), Some(domain_name)) => UserSpec::Name { name, domain_name },
            _ => {
                return Err(err(
                    &key("user_id"),
                    "set application_credential_id, user_id, or username with user_domain_name",
                ))
            }
        };
        let password = s
            .secret("password")?
            .ok_or_else(|| err(&key("password"), "is required (or password_env)"))?;
        let project = match (
            s.string("project_id")?,
            s.string("project_name")?,
            s.string("project_domain_name")?,
        ) {
            (Some(id), None, None) => ProjectSpec::Id(id),
            (None, Some(name), Some(domain_name)) => ProjectSpec::Name { name, domain_name },
            _ => {
                return Err(err(
                    &key("project_id"),
                    "set project_id, or project_name with project_domain_name",
                ))
            }
        };
        ServiceCredentials::Password {
            user,
            password,
            project,
        }
    };
    s.finish()?;
    Ok(creds)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::from_json(s.as_bytes())
    }

    /// Secrets may come from the environment (`*_env`), never both ways at once.
    #[test]
    fn secrets_from_the_environment() {
        std::env::set_var("KPW_TEST_APPCRED_SECRET", "from-env\n");
        let c = Config::from_json(
            br#"{"keystone":{"url":"http://x/v3","service_credentials":{"application_credential_id":"ac",
                "application_credential_secret_env":"KPW_TEST_APPCRED_SECRET"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.keystone.service_credentials,
            Some(ServiceCredentials::ApplicationCredential {
                id: "ac".into(),
                secret: "from-env".into()
            })
        );
        std::env::set_var("KPW_TEST_SERVICE_TOKEN", "s3cr3t-token-value");
        let c = Config::from_json(
            br#"{"keystone":{"url":"http://x/v3","service_token_env":"KPW_TEST_SERVICE_TOKEN"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.keystone.service_token.as_deref(),
            Some("s3cr3t-token-value")
        );
        for (json, key) in [
            (
                r#"{"keystone":{"url":"http://x/v3","service_token_env":"KPW_TEST_NOT_SET"}}"#,
                "keystone.service_token_env",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_token":"t","service_token_env":"KPW_TEST_SERVICE_TOKEN"}}"#,
                "keystone.service_token_env",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_credentials":{"user_id":"u","password_env":"KPW_TEST_NOT_SET","project_id":"p"}}}"#,
                "keystone.service_credentials.password_env",
            ),
        ] {
            let e = Config::from_json(json.as_bytes()).unwrap_err();
            assert_eq!(e.key, key, "{json}: {e:?}");
            assert!(
                !e.to_string().contains("s3cr3t"),
                "a secret in an error: {e}"
            );
        }
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
        assert_eq!(c.project_label, "project");
        assert_eq!(c.cache.ttl_seconds, 300);
        assert_eq!(c.cache.max_entries, DEFAULT_MAX_ENTRIES);
        assert_eq!(c.cache.rewrite_bytes, DEFAULT_REWRITE_BYTES);
        assert_eq!(c.limits.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert_eq!(c.limits.max_response_bytes, DEFAULT_MAX_RESPONSE_BYTES);
        assert_eq!(c.path_prefix, "");
        assert!(c.unsafe_passthrough.is_empty());
        assert_eq!(c.cache.negative_ttl_seconds, DEFAULT_NEGATIVE_TTL_SECONDS);
        assert_eq!(c.keystone.service_type, "metric-storage");
        assert_eq!(c.keystone.service_credentials, None);
        assert_eq!(
            c.policy,
            Policy {
                domain_label: "domain".into(),
                include_subprojects: false,
                required_roles: vec![],
                unrestricted_roles: vec![],
                tenant_header: None,
                label_enforcement: true,
                forward_identity_headers: false,
            }
        );
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
        assert_eq!(
            c.cache,
            CacheConfig {
                ttl_seconds: 60,
                max_entries: 10,
                rewrite_bytes: 0,
                negative_ttl_seconds: DEFAULT_NEGATIVE_TTL_SECONDS
            }
        );
        assert_eq!(
            c.limits,
            Limits {
                max_body_bytes: 1000,
                max_response_bytes: 2000,
                max_query_bytes: 100,
                max_depth: 8
            }
        );
        assert_eq!(c.path_prefix, "/prometheus");
        assert_eq!(c.unsafe_passthrough, vec!["/api/v1/metadata"]);
    }

    #[test]
    fn write_section() {
        let off = parse(r#"{"keystone":{"url":"http://k/v3"}}"#)
            .unwrap()
            .write;
        assert!(!off.enabled && off.active_paths().is_empty());
        assert_eq!(off.paths, vec!["/api/v1/write"]);
        assert_eq!(off.required_roles, vec!["member", "admin"]);
        assert_eq!(
            (off.on_conflict, off.metadata, off.max_body_bytes),
            (OnConflict::Overwrite, MetadataPolicy::Drop, 1 << 20)
        );
        assert_eq!(off.limits, remote_write::Limits::default());
        let w = parse(
            r#"{"keystone":{"url":"http://k/v3"},"write":{"enabled":true,"paths":["/api/v1/receive","/api/v1/push"],
                "required_roles":[],"on_conflict":"reject","metadata":"forward","max_body_bytes":4096,
                "max_decoded_bytes":8192,"max_series":10,"max_labels_per_series":5,"max_label_bytes":64,
                "max_memory_bytes":100000}}"#,
        )
        .unwrap()
        .write;
        assert_eq!(w.active_paths(), ["/api/v1/receive", "/api/v1/push"]);
        assert!(
            w.required_roles.is_empty(),
            "an empty list means any role will do"
        );
        assert_eq!(
            (w.on_conflict, w.metadata, w.max_body_bytes),
            (OnConflict::Reject, MetadataPolicy::Forward, 4096)
        );
        assert_eq!(
            w.limits,
            remote_write::Limits {
                max_decoded_bytes: 8192,
                max_series: 10,
                max_labels_per_series: 5,
                max_label_bytes: 64,
                max_memory_bytes: 100000
            }
        );
        for (bad, key) in [
            (r#""write":{"on_conflict":"merge"}"#, "write.on_conflict"),
            (r#""write":{"metadata":true}"#, "write.metadata"),
            (r#""write":{"paths":[]}"#, "write.paths"),
            (r#""write":{"paths":["api/v1/write"]}"#, "write.paths"),
            (r#""write":{"max_series":0}"#, "write.max_series"),
            (r#""write":{"enable":true}"#, "write.enable"),
            (
                r#""write":{"enabled":true},"unsafe_passthrough":["/api/v1/write"]"#,
                "unsafe_passthrough",
            ),
        ] {
            let e = parse(&format!(r#"{{"keystone":{{"url":"http://k/v3"}},{bad}}}"#)).unwrap_err();
            assert_eq!(e.key, key, "{bad}: {e}");
        }
    }

    #[test]
    fn policy_and_service_credentials() {
        let c = parse(
            r#"{"keystone":{"url":"http://k/v3","service_type":"prometheus",
                "service_credentials":{"application_credential_id":"ac","application_credential_secret":"s"}},
                "domain_label":"domain","include_subprojects":true,"required_roles":["reader"],
                "unrestricted_roles":["admin"],"tenant_header":"X-Scope-OrgID","label_enforcement":false,
                "forward_identity_headers":true,"cache":{"negative_ttl_seconds":0}}"#,
        )
        .unwrap();
        assert_eq!(
            c.keystone.service_credentials,
            Some(ServiceCredentials::ApplicationCredential {
                id: "ac".into(),
                secret: "s".into()
            })
        );
        assert_eq!(c.keystone.service_type, "prometheus");
        assert_eq!(c.policy.domain_label, "domain");
        assert!(
            c.policy.include_subprojects
                && c.policy.forward_identity_headers
                && !c.policy.label_enforcement
        );
        assert_eq!(c.policy.required_roles, ["reader"]);
        assert_eq!(c.policy.unrestricted_roles, ["admin"]);
        assert_eq!(c.policy.tenant_header.as_deref(), Some("x-scope-orgid"));
        assert_eq!(c.cache.negative_ttl_seconds, 0);
        let c = parse(
            r#"{"keystone":{"url":"http://k/v3","service_credentials":{"username":"svc","user_domain_name":"Default",
                "password":"p","project_name":"service","project_domain_name":"Default"}}}"#,
        )
        .unwrap();
        assert_eq!(
            c.keystone.service_credentials,
            Some(ServiceCredentials::Password {
                user: UserSpec::Name {
                    name: "svc".into(),
                    domain_name: "Default".into()
                },
                password: "p".into(),
                project: ProjectSpec::Name {
                    name: "service".into(),
                    domain_name: "Default".into()
                },
            })
        );
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("{}", "keystone.url"),
            (r#"{"keystone":{}}"#, "keystone.url"),
            (r#"{"keystone":{"url":"ftp://x"}}"#, "keystone.url"),
            (
                r#"{"keystone":{"url":"http://x/v3","timeout_ms":0}}"#,
                "keystone.timeout_ms",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","timeout_ms":"5"}}"#,
                "keystone.timeout_ms",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","tiemout_ms":5}}"#,
                "keystone.tiemout_ms",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"project_label":"a-b"}"#,
                "project_label",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"project_label":"__name__"}"#,
                "project_label",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"cache":{"ttl_seconds":-1}}"#,
                "cache.ttl_seconds",
            ),
            (r#"{"keystone":{"url":"http://x/v3"},"cache":[]}"#, "cache"),
            (r#"{"keystone":{"url":"http://x/v3"},"bogus":1}"#, "bogus"),
            (
                r#"{"keystone":{"url":"http://x/v3"},"domain_label":"a b"}"#,
                "domain_label",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"include_subprojects":"yes"}"#,
                "include_subprojects",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"required_roles":"reader"}"#,
                "required_roles",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"unrestricted_roles":[""]}"#,
                "unrestricted_roles",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"tenant_header":"X Scope"}"#,
                "tenant_header",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"label_enforcement":false}"#,
                "label_enforcement",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"cache":{"negative_ttl_seconds":99999}}"#,
                "cache.negative_ttl_seconds",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_credentials":{}}}"#,
                "keystone.service_credentials.user_id",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_credentials":{"application_credential_id":"a"}}}"#,
                "keystone.service_credentials.application_credential_secret",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_credentials":{"user_id":"u","password":"p"}}}"#,
                "keystone.service_credentials.project_id",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_credentials":{"user_id":"u","password":"p","project_id":"x","extra":1}}}"#,
                "keystone.service_credentials.extra",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3","service_token":"t","service_credentials":{"application_credential_id":"a","application_credential_secret":"s"}}}"#,
                "keystone.service_token",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"path_prefix":"prom/"}"#,
                "path_prefix",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"unsafe_passthrough":"/x"}"#,
                "unsafe_passthrough",
            ),
            (
                r#"{"keystone":{"url":"http://x/v3"},"unsafe_passthrough":["x"]}"#,
                "unsafe_passthrough",
            ),
            ("not json", "(root)"),
        ];
        for (json, key) in cases {
            let e = parse(json).unwrap_err();
            assert_eq!(e.key, key, "{json}: {e}");
            assert!(e.to_string().contains(key));
        }
    }
}

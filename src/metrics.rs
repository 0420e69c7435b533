//! The filter's own metrics, defined through the proxy-wasm metrics API (Envoy shows them
//! in `/stats/prometheus`). Plain names without tags, so every host can define them.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    RequestsAllowed,
    Denied400,
    Denied401,
    Denied403,
    /// 405, 413, 415 and other refusals.
    DeniedOther,
    Unavailable503,
    Timeout504,
    CacheHits,
    CacheMisses,
    KeystoneCallouts,
    /// Histogram of callout latency in milliseconds.
    KeystoneCalloutMs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Histogram,
}

impl Metric {
    pub const ALL: [Metric; 11] = [
        Metric::RequestsAllowed,
        Metric::Denied400,
        Metric::Denied401,
        Metric::Denied403,
        Metric::DeniedOther,
        Metric::Unavailable503,
        Metric::Timeout504,
        Metric::CacheHits,
        Metric::CacheMisses,
        Metric::KeystoneCallouts,
        Metric::KeystoneCalloutMs,
    ];

    /// The metric's position in [`Metric::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Metric::RequestsAllowed => "keystone_prom_requests_allowed",
            Metric::Denied400 => "keystone_prom_requests_denied_400",
            Metric::Denied401 => "keystone_prom_requests_denied_401",
            Metric::Denied403 => "keystone_prom_requests_denied_403",
            Metric::DeniedOther => "keystone_prom_requests_denied_other",
            Metric::Unavailable503 => "keystone_prom_requests_unavailable_503",
            Metric::Timeout504 => "keystone_prom_requests_timeout_504",
            Metric::CacheHits => "keystone_prom_cache_hits",
            Metric::CacheMisses => "keystone_prom_cache_misses",
            Metric::KeystoneCallouts => "keystone_prom_keystone_callouts",
            Metric::KeystoneCalloutMs => "keystone_prom_keystone_callout_ms",
        }
    }

    pub fn kind(self) -> Kind {
        match self {
            Metric::KeystoneCalloutMs => Kind::Histogram,
            _ => Kind::Counter,
        }
    }

    /// The outcome counter of a response the filter sent itself.
    pub fn for_status(status: u32) -> Metric {
        match status {
            400 => Metric::Denied400,
            401 => Metric::Denied401,
            403 => Metric::Denied403,
            503 => Metric::Unavailable503,
            504 => Metric::Timeout504,
            _ => Metric::DeniedOther,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_prometheus_names() {
        let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
        assert!(names.iter().all(|n| n
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())));
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Metric::ALL.len());
        assert_eq!(Metric::for_status(401), Metric::Denied401);
        for (i, m) in Metric::ALL.iter().enumerate() {
            assert_eq!(m.index(), i);
        }
        assert_eq!(Metric::for_status(415), Metric::DeniedOther);
    }
}

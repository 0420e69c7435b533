//! The fast path: a per-VM cache of rewritten PromQL, keyed by (tenant matcher, query).
//!
//! Dashboards send the same expressions on every refresh (only `time`, `start` and `end`
//! change), and parsing, rewriting and printing costs far more inside Wasm than a lookup.
//! Two generations bound the memory: lookups check the young map, then the old one
//! (promoting the hit); when the young map's bytes pass half the budget, the old map is
//! dropped and the young one becomes old. Refusals are cached too: a broken panel
//! refreshes as often as a working one.

use crate::promql::EnforceError;
use std::collections::HashMap;
use std::rc::Rc;

type Outcome = Result<Rc<str>, EnforceError>;

#[derive(Debug, Default)]
pub struct RewriteCache {
    young: HashMap<Box<str>, Outcome>,
    old: HashMap<Box<str>, Outcome>,
    young_bytes: usize,
    /// Bytes of keys and values allowed in both generations together.
    budget: usize,
    pub hits: u64,
    pub misses: u64,
}

fn cost(key: &str, v: &Outcome) -> usize {
    let value = match v {
        Ok(s) => s.len(),
        Err(EnforceError::BadData(m) | EnforceError::Forbidden(m)) => m.len(),
    };
    key.len() + value + 64
}

impl RewriteCache {
    pub fn new(budget: usize) -> RewriteCache {
        RewriteCache { budget, ..Default::default() }
    }

    /// The cached outcome for `(scope_key, query)`, or `compute()` stored and returned.
    pub fn get_or_compute(
        &mut self,
        scope_key: &str,
        query: &str,
        compute: impl FnOnce() -> Result<String, EnforceError>,
    ) -> Outcome {
        let mut key = String::with_capacity(scope_key.len() + 1 + query.len());
        key.push_str(scope_key);
        key.push('\0');
        key.push_str(query);
        if let Some(v) = self.young.get(key.as_str()) {
            self.hits += 1;
            return v.clone();
        }
        let outcome = match self.old.remove(key.as_str()) {
            Some(v) => {
                self.hits += 1;
                v
            }
            None => {
                self.misses += 1;
                compute().map(Rc::from)
            }
        };
        let c = cost(&key, &outcome);
        if c <= self.budget / 2 {
            if self.young_bytes + c > self.budget / 2 {
                self.old = std::mem::take(&mut self.young);
                self.young_bytes = 0;
            }
            self.young_bytes += c;
            self.young.insert(key.into_boxed_str(), outcome.clone());
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_do_not_recompute() {
        let mut c = RewriteCache::new(1 << 20);
        let mut calls = 0;
        for _ in 0..3 {
            let v = c.get_or_compute("t", "up", || {
                calls += 1;
                Ok("up{t}".into())
            });
            assert_eq!(&*v.unwrap(), "up{t}");
        }
        assert_eq!((calls, c.hits, c.misses), (1, 2, 1));
    }

    #[test]
    fn scopes_are_separate() {
        let mut c = RewriteCache::new(1 << 20);
        let a = c.get_or_compute("a", "up", || Ok("A".into())).unwrap();
        let b = c.get_or_compute("b", "up", || Ok("B".into())).unwrap();
        assert_eq!((&*a, &*b), ("A", "B"));
        // The separator keeps ("a\0x", "y") and ("a", "x\0y")-style keys apart.
        assert!(c.get_or_compute("a", "x", || Ok("1".into())).is_ok());
        assert_eq!(&*c.get_or_compute("a\0", "x", || Ok("2".into())).unwrap(), "2");
    }

    #[test]
    fn errors_are_cached() {
        let mut c = RewriteCache::new(1 << 20);
        let e = c.get_or_compute("a", "sum(", || Err(EnforceError::BadData("x".into())));
        assert!(e.is_err());
        let e = c.get_or_compute("a", "sum(", || panic!("recomputed"));
        assert_eq!(e.unwrap_err(), EnforceError::BadData("x".into()));
    }

    #[test]
    fn memory_is_bounded() {
        let budget = 64 * 1024;
        let mut c = RewriteCache::new(budget);
        for i in 0..100_000 {
            let q = format!("metric_{i}");
            let _ = c.get_or_compute("t", &q, || Ok(format!("{q}{{t}}")));
        }
        let bytes: usize = c.young.iter().chain(c.old.iter()).map(|(k, v)| cost(k, v)).sum();
        assert!(bytes <= budget, "{bytes}");
        assert!(c.len() > 100);
        // A recent entry survives the generation flip.
        let _ = c.get_or_compute("t", "metric_99999", || panic!("evicted too early"));
    }

    #[test]
    fn oversized_entries_are_not_stored() {
        let mut c = RewriteCache::new(100);
        let q = "x".repeat(200);
        let _ = c.get_or_compute("t", &q, || Ok(q.clone()));
        assert!(c.is_empty());
    }
}

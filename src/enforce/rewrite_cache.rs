//! The fast path: a per-VM cache of rewritten PromQL, keyed by (tenant matcher, query).
//!
//! Dashboards send the same expressions on every refresh (only `time`, `start` and `end`
//! change), and parsing, rewriting and printing costs far more inside Wasm than a lookup.
//! Two generations bound the memory: lookups check the young map, then the old one
//! (promoting the hit); when the young map's bytes pass half the budget, the old map is
//! dropped and the young one becomes old. Refusals are cached too: a broken panel
//! refreshes as often as a working one.

use crate::enforce::promql::EnforceError;
use std::collections::HashMap;
use std::rc::Rc;

type Outcome = Result<Rc<str>, EnforceError>;

/// One generation: scope key -> (input text -> outcome). Two levels, so a lookup borrows
/// both strings and allocates nothing.
type Generation = HashMap<Box<str>, HashMap<Box<str>, Outcome>>;

#[derive(Debug, Default)]
pub struct RewriteCache {
    young: Generation,
    old: Generation,
    young_bytes: usize,
    /// Bytes of keys and values allowed in both generations together.
    budget: usize,
    pub hits: u64,
    pub misses: u64,
}

fn cost(scope: &str, key: &str, v: &Outcome) -> usize {
    let value = match v {
        Ok(s) => s.len(),
        Err(EnforceError::BadData(m) | EnforceError::Forbidden(m)) => m.len(),
    };
    scope.len() + key.len() + value + 96
}

impl RewriteCache {
    pub fn new(budget: usize) -> RewriteCache {
        RewriteCache {
            budget,
            ..Default::default()
        }
    }

    /// The cached outcome for `(scope_key, input)`, or `compute()` stored and returned.
    pub fn get_or_compute(
        &mut self,
        scope_key: &str,
        input: &str,
        compute: impl FnOnce() -> Result<String, EnforceError>,
    ) -> Outcome {
        if let Some(v) = self.young.get(scope_key).and_then(|m| m.get(input)) {
            self.hits += 1;
            return v.clone();
        }
        let outcome = match self.old.get_mut(scope_key).and_then(|m| m.remove(input)) {
            Some(v) => {
                self.hits += 1;
                v
            }
            None => {
                self.misses += 1;
                compute().map(Rc::from)
            }
        };
        let c = cost(scope_key, input, &outcome);
        if c <= self.budget / 2 {
            if self.young_bytes + c > self.budget / 2 {
                self.old = std::mem::take(&mut self.young);
                self.young_bytes = 0;
            }
            self.young_bytes += c;
            self.young
                .entry(scope_key.into())
                .or_default()
                .insert(input.into(), outcome.clone());
        }
        outcome
    }

    pub fn len(&self) -> usize {
        self.young
            .values()
            .chain(self.old.values())
            .map(HashMap::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg(test)]
    fn bytes(&self) -> usize {
        self.young
            .iter()
            .chain(self.old.iter())
            .flat_map(|(s, m)| m.iter().map(move |(k, v)| cost(s, k, v)))
            .sum()
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
        assert!(c.get_or_compute("a", "bx", || Ok("1".into())).is_ok());
        assert_eq!(
            &*c.get_or_compute("ab", "x", || Ok("2".into())).unwrap(),
            "2"
        );
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
        let bytes = c.bytes();
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

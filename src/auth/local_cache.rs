//! This worker's own copy of recently used scope-cache entries, in front of shared data:
//! a hit costs a hash lookup instead of a shared-data read, a JSON decode and the policy.
//! Entries keep the shared entry's expiry, so the two caches agree on when a credential
//! must be asked about again; two generations bound the number of entries.

use crate::auth::scope::Scope;
use crate::error::ApiError;
use crate::policy::Contract;
use std::collections::HashMap;
use std::rc::Rc;

/// What this worker knows of one credential.
#[derive(Debug, Clone)]
pub struct Known {
    /// Unix seconds after which the entry is stale.
    pub until: u64,
    /// `None`: Keystone refused the credential.
    pub scope: Option<Rc<Scope>>,
    /// The policy's upstream contract, when it does not depend on the request (no access
    /// rules): a request of a known credential has nothing left to decide.
    pub contract: Option<Result<Rc<Contract>, ApiError>>,
}

#[derive(Debug, Default)]
pub struct LocalCache {
    young: HashMap<[u8; 32], Rc<Known>>,
    old: HashMap<[u8; 32], Rc<Known>>,
    /// Entries per generation.
    capacity: usize,
}

impl LocalCache {
    pub fn new(capacity: usize) -> LocalCache {
        LocalCache {
            capacity: capacity.max(1),
            ..Default::default()
        }
    }

    pub fn get(&mut self, digest: &[u8; 32], now: u64) -> Option<Rc<Known>> {
        let known = match self.young.get(digest) {
            Some(k) => k.clone(),
            None => {
                let k = self.old.remove(digest)?;
                self.insert(*digest, k.clone());
                k
            }
        };
        (known.until > now).then_some(known)
    }

    pub fn insert(&mut self, digest: [u8; 32], known: Rc<Known>) {
        if self.young.len() >= self.capacity && !self.young.contains_key(&digest) {
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(digest, known);
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

    fn known(until: u64) -> Rc<Known> {
        Rc::new(Known {
            until,
            scope: None,
            contract: None,
        })
    }

    #[test]
    fn expiry_and_bound() {
        let mut c = LocalCache::new(10);
        c.insert([1; 32], known(100));
        assert!(c.get(&[1; 32], 99).is_some());
        assert!(c.get(&[1; 32], 100).is_none());
        for i in 0..1000u32 {
            let mut d = [0u8; 32];
            d[..4].copy_from_slice(&i.to_be_bytes());
            c.insert(d, known(100));
        }
        assert!(c.len() <= 20);
        // A recent entry survives a generation change.
        let mut d = [0u8; 32];
        d[..4].copy_from_slice(&999u32.to_be_bytes());
        assert!(c.get(&d, 0).is_some());
    }
}

//! The adapter's maps of this worker's requests and callouts, keyed by the host's ids.

/// Hashes the host's context and callout ids (small sequential integers, not chosen by
/// clients) as they are: these maps are touched on every request.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub type ById = std::hash::BuildHasherDefault<IdHasher>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sequential_ids_spread_and_never_collide() {
        let mut m: HashMap<u32, u32, ById> = HashMap::default();
        for id in 0..10_000u32 {
            m.insert(id, id * 2);
        }
        assert_eq!(m.len(), 10_000);
        assert!((0..10_000u32).all(|id| m.get(&id) == Some(&(id * 2))));
        assert!(m.remove(&77).is_some() && !m.contains_key(&77));
        use std::hash::{BuildHasher, Hasher};
        let h = |id: u32| {
            let mut s = ById::default().build_hasher();
            s.write_u32(id);
            s.finish()
        };
        assert_ne!(
            h(1) >> 57,
            h(2) >> 57,
            "the top bits (hashbrown's control bytes) differ for neighbours"
        );
    }
}

//! The time for expiry checks, from a clock the host adapter refreshes on the root's
//! ticks: asking the host for the time on every request costs a host call (about 2% of
//! Envoy's throughput on the dashboard mix, bench/README.md), and expiry is checked in
//! whole seconds.

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickClock {
    /// Unix milliseconds at the last tick; 0 until the first (or without ticks).
    ms: u64,
    /// Requests that read it since.
    reads: u32,
}

impl TickClock {
    /// A tick that has not come for this many reads means the host stopped ticking: from
    /// then on every read asks the host, until a tick comes again. Far above what one worker
    /// serves between two ticks (20 ms: ~300 requests at 15k req/s), or busy workers would
    /// ask the host on most requests.
    pub const MAX_READS: u32 = 2048;

    pub fn tick(&mut self, now_ms: u64) {
        *self = TickClock {
            ms: now_ms,
            reads: 0,
        };
    }

    /// Unix seconds: the last tick's time, or `host_now_ms()` without ticks or when they
    /// stopped coming (a host reading is not a tick: it would serve the next reads however
    /// much time passes before them, and expiry would stretch with it).
    pub fn now_s(&mut self, host_now_ms: impl FnOnce() -> u64) -> u64 {
        if self.ms != 0 && self.reads < Self::MAX_READS {
            self.reads += 1;
            return self.ms / 1000;
        }
        host_now_ms() / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn without_ticks_every_read_asks_the_host() {
        let asked = Cell::new(0);
        let mut c = TickClock::default();
        for i in 0..3 {
            assert_eq!(
                c.now_s(|| {
                    asked.set(asked.get() + 1);
                    5_000 + i * 1000
                }),
                5 + i
            );
        }
        assert_eq!(asked.get(), 3);
    }

    #[test]
    fn ticks_answer_until_they_stop_coming() {
        let asked = Cell::new(0);
        let host = || {
            asked.set(asked.get() + 1);
            9_000
        };
        let mut c = TickClock::default();
        c.tick(7_500);
        for _ in 0..TickClock::MAX_READS {
            assert_eq!(c.now_s(host), 7);
        }
        assert_eq!(asked.get(), 0, "no host call while ticks come");
        assert_eq!(c.now_s(host), 9, "a missing tick: the host's clock");
        assert_eq!(c.now_s(host), 9);
        assert_eq!(
            asked.get(),
            2,
            "every read asks the host until a tick comes"
        );
        c.tick(12_000);
        assert_eq!(c.now_s(host), 12);
        assert_eq!(asked.get(), 2);
    }
}

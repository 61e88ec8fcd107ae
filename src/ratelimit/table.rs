//! Token buckets for many clients in a fixed table, checked without a lock.
//!
//! Each bucket is the generic cell rate algorithm's one number, the
//! theoretical arrival time (TAT), so a check is one compare-and-swap on one
//! `AtomicU64`. The table is set-associative: a client hashes to a set of
//! [`WAYS`] slots, and a newcomer takes the slot whose TAT is oldest: the
//! least recently seen client of the set, weighed by how much of its bucket
//! it used, so a client cannot shed its empty bucket by flooding the table
//! from other addresses. Memory is fixed at start, so a
//! flood of source addresses only evicts, never grows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Slots per set.
const WAYS: usize = 4;

/// A rate: one request every `interval`, with up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Time between requests at the sustained rate.
    pub interval: Duration,
    /// Requests a fresh client may make at once.
    pub burst: u32,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request may go on.
    pub allowed: bool,
    /// Requests the client may still make at once.
    pub remaining: u32,
    /// Until the client's bucket is full again.
    pub reset: Duration,
    /// Until a refused client may try again (zero when allowed).
    pub retry_after: Duration,
}

#[derive(Debug, Default)]
struct Slot {
    /// The client's key; 0 is a free slot.
    key: AtomicU64,
    /// Nanoseconds since the table's epoch.
    tat: AtomicU64,
}

/// A fixed table of buckets.
#[derive(Debug)]
pub struct Table {
    slots: Box<[Slot]>,
    sets: usize,
    epoch: Instant,
}

impl Table {
    /// A table for at least `clients` clients (rounded up to a power of two
    /// of sets), with time counted from `epoch`.
    pub fn new(clients: usize, epoch: Instant) -> Table {
        let sets = clients.div_ceil(WAYS).max(1).next_power_of_two();
        Table { slots: (0..sets * WAYS).map(|_| Slot::default()).collect(), sets, epoch }
    }

    /// Bytes the table holds.
    pub fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<Slot>()
    }

    /// Takes one request from the bucket of `key` (a hash of the client)
    /// at `now`.
    pub fn check(&self, key: u64, rate: Rate, now: Instant) -> Decision {
        let key = key | 1; // never the free mark
        let slot = self.slot(key);
        let now = u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let interval = u64::try_from(rate.interval.as_nanos()).unwrap_or(u64::MAX).max(1);
        let tolerance = interval.saturating_mul(u64::from(rate.burst.max(1)));
        let mut tat = slot.tat.load(Ordering::Acquire);
        loop {
            let next = tat.max(now).saturating_add(interval);
            let ahead = next - now;
            if ahead > tolerance {
                return Decision {
                    allowed: false,
                    remaining: 0,
                    reset: Duration::from_nanos(tat.saturating_sub(now)),
                    retry_after: Duration::from_nanos(ahead - tolerance),
                };
            }
            match slot.tat.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    return Decision {
                        allowed: true,
                        remaining: u32::try_from((tolerance - ahead) / interval).unwrap_or(u32::MAX),
                        reset: Duration::from_nanos(ahead),
                        retry_after: Duration::ZERO,
                    }
                }
                Err(current) => tat = current,
            }
        }
    }

    /// The slot of `key`: its own if present, else the set's least recently
    /// seen one, taken over with an empty bucket. Two newcomers racing for
    /// one slot may share its bucket for a moment; neither can grow memory.
    fn slot(&self, key: u64) -> &Slot {
        // Fibonacci hashing spreads keys that differ only in high bits.
        let set = (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & (self.sets - 1);
        let ways = &self.slots[set * WAYS..(set + 1) * WAYS];
        if let Some(slot) = ways.iter().find(|s| s.key.load(Ordering::Acquire) == key) {
            return slot;
        }
        // The slice holds WAYS >= 1 slots, so a minimum exists.
        let victim = ways.iter().min_by_key(|s| s.tat.load(Ordering::Relaxed)).unwrap_or(&ways[0]);
        victim.tat.store(0, Ordering::Release);
        victim.key.store(key, Ordering::Release);
        victim
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEN_A_SECOND: Rate = Rate { interval: Duration::from_millis(100), burst: 3 };

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let table = Table::new(16, start);
        let at = |ms| start + Duration::from_millis(ms);
        let remaining: Vec<u32> = (0..3).map(|_| table.check(7, TEN_A_SECOND, at(0)).remaining).collect();
        assert_eq!(remaining, [2, 1, 0]);
        let refused = table.check(7, TEN_A_SECOND, at(0));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(100));
        assert_eq!(refused.reset, Duration::from_millis(300));
        assert!(!table.check(7, TEN_A_SECOND, at(99)).allowed);
        assert!(table.check(7, TEN_A_SECOND, at(100)).allowed, "one more each interval");
        assert!(!table.check(7, TEN_A_SECOND, at(150)).allowed);
        // Idle long enough, the whole burst is back.
        let later = table.check(7, TEN_A_SECOND, at(10_000));
        assert_eq!((later.allowed, later.remaining), (true, 2));
        assert!(table.check(8, TEN_A_SECOND, at(0)).allowed, "other clients have their own bucket");
    }

    #[test]
    fn a_flood_of_clients_evicts_and_never_grows() {
        let start = Instant::now();
        let table = Table::new(64, start);
        let bytes = table.bytes();
        // The heavy client is refused now; a million others come and go.
        for _ in 0..3 {
            table.check(42, TEN_A_SECOND, start);
        }
        assert!(!table.check(42, TEN_A_SECOND, start).allowed);
        for key in 1_000..1_001_000u64 {
            assert!(table.check(key * 2, TEN_A_SECOND, start).allowed);
        }
        assert_eq!(table.bytes(), bytes);
        // A newcomer evicts the bucket that would be full soonest, so the
        // emptied bucket of the heavy client outlives the flood.
        assert!(!table.check(42, TEN_A_SECOND, start).allowed);
    }

    #[test]
    fn threads_share_a_bucket_exactly() {
        let start = Instant::now();
        let table = Table::new(16, start);
        let rate = Rate { interval: Duration::from_secs(3600), burst: 1000 };
        let allowed: usize = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..4).map(|_| s.spawn(|| (0..500).filter(|_| table.check(9, rate, start).allowed).count())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(allowed, 1000, "the burst is granted exactly once across threads");
    }
}

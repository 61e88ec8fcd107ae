//! Per-origin politeness: a cap on concurrent connections, idle connections
//! kept for reuse, and an adaptive token bucket that halves its rate on
//! `429`/`503` (pausing for `Retry-After`) and recovers gradually.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The slowest an origin is ever throttled to, in requests per second.
const MIN_RATE: f64 = 0.1;
/// Recovery per second of calm, as a share of the configured rate.
const RECOVERY: f64 = 0.05;

/// A token bucket whose rate adapts to the origin's pushback.
#[derive(Debug, Clone)]
pub struct Bucket {
    base: f64,
    rate: f64,
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    /// A bucket allowing `rate` requests per second, with a burst of one second's worth.
    pub fn new(rate: f64, now: Instant) -> Bucket {
        let rate = rate.max(MIN_RATE);
        Bucket { base: rate, rate, tokens: rate.max(1.0), last: now, paused_until: None }
    }

    /// The current rate.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        if self.paused_until.is_some_and(|until| now < until) {
            return;
        }
        self.paused_until = None;
        self.rate = (self.rate + self.base * RECOVERY * elapsed).min(self.base);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate.max(1.0));
    }

    /// The rate now, after recovery since the last look.
    pub fn rate_at(&mut self, now: Instant) -> f64 {
        self.refill(now);
        self.rate
    }

    /// Takes a token, or says when one will be there.
    pub fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if let Some(until) = self.paused_until {
            return Err(until);
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }

    /// The origin pushed back: halve the rate, and pause for `retry_after` if it said.
    pub fn back_off(&mut self, now: Instant, retry_after: Option<Duration>) {
        self.refill(now);
        self.rate = (self.rate / 2.0).max(MIN_RATE);
        self.tokens = self.tokens.min(0.0);
        let pause =
            retry_after.unwrap_or_else(|| Duration::from_secs_f64(1.0 / self.rate)).min(Duration::from_secs(300));
        self.paused_until = Some(now + pause);
    }
}

/// One origin's connections and waiting fetches.
#[derive(Debug)]
pub struct Origin {
    /// Connections open (busy, idle or connecting).
    pub open: usize,
    /// Idle connections, most recently used last, with when they went idle.
    pub idle: Vec<(u64, Instant)>,
    /// Fetches waiting for a connection or a token, in order.
    pub queue: VecDeque<u64>,
    /// The rate limit.
    pub bucket: Bucket,
    /// When a wake-up for this origin is already set.
    pub wake_at: Option<Instant>,
}

impl Origin {
    /// An origin limited to `rate` requests per second.
    pub fn new(rate: f64, now: Instant) -> Origin {
        Origin { open: 0, idle: Vec::new(), queue: VecDeque::new(), bucket: Bucket::new(rate, now), wake_at: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_limits_backs_off_and_recovers() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, t0);
        for _ in 0..10 {
            assert!(b.take(t0).is_ok());
        }
        let next = b.take(t0).unwrap_err();
        assert_eq!(next, t0 + Duration::from_millis(100));
        assert!(b.take(t0 + Duration::from_millis(100)).is_ok());

        b.back_off(t0 + Duration::from_millis(100), Some(Duration::from_secs(2)));
        assert_eq!(b.rate(), 5.0);
        assert_eq!(b.take(t0 + Duration::from_secs(1)), Err(t0 + Duration::from_millis(2100)));
        // After the pause the rate climbs back by 5% of 10/s per second.
        b.take(t0 + Duration::from_secs(4)).unwrap_or(());
        assert!((b.rate() - 6.5).abs() < 1e-9, "{}", b.rate());
        b.take(t0 + Duration::from_secs(200)).unwrap_or(());
        assert_eq!(b.rate(), 10.0);
    }
}

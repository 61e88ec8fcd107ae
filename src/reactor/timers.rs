//! Connection deadlines: a min-heap with lazy cancellation.
//!
//! Each connection keeps at most one live entry, `armed`. Moving a deadline
//! later (the common case: every request pushes the idle deadline out) costs
//! nothing; the entry fires at the old time, finds the connection's real
//! deadline later, and re-arms. Moving it earlier pushes a new entry and
//! orphans the old one, which is skipped when it surfaces. So the heap holds
//! at most about two entries per connection and no per-request work.
//! All deadlines here are coarse (seconds), which is why a wheel would buy
//! nothing measurable at these sizes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use mio::Token;

/// Pending deadlines of one reactor.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

impl Timers {
    /// Makes sure the connection `token` is woken by `deadline`. `armed` is
    /// the connection's record of its earliest live entry.
    pub fn arm(&mut self, token: Token, deadline: Instant, armed: &mut Option<Instant>) {
        if armed.is_none_or(|at| deadline < at) {
            self.heap.push(Reverse((deadline, token.0)));
            *armed = Some(deadline);
        }
    }

    /// The earliest entry, live or stale.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Takes the earliest entry if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, Token)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse((at, t))| (at, Token(t))),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn later_deadlines_reuse_the_armed_entry() {
        let mut timers = Timers::default();
        let now = Instant::now();
        let mut armed = None;
        timers.arm(Token(1), now + Duration::from_secs(5), &mut armed);
        timers.arm(Token(1), now + Duration::from_secs(9), &mut armed);
        assert_eq!(timers.heap.len(), 1);
        timers.arm(Token(1), now + Duration::from_secs(2), &mut armed);
        assert_eq!(timers.heap.len(), 2);
        assert_eq!(armed, Some(now + Duration::from_secs(2)));
        assert_eq!(timers.next(), Some(now + Duration::from_secs(2)));
        assert!(timers.pop_due(now).is_none());
        let (at, token) = timers.pop_due(now + Duration::from_secs(3)).unwrap();
        assert_eq!((at, token), (now + Duration::from_secs(2), Token(1)));
    }
}

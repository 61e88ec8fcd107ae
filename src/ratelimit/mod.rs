//! Per-client rate limits: a token bucket per client (see [`client`]) and
//! route class, in a fixed lock-free table (see [`table`]), with the
//! `RateLimit-Policy` and `RateLimit` fields of the IETF httpapi draft.

pub mod client;
mod table;

use std::hash::RandomState;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub use table::{Decision, Rate, Table};

use crate::cidr::Cidr;
use crate::http::request::Head;

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Requests that start work (analyses, batches).
    Submit,
    /// Everything else a client asks of the API.
    Read,
    /// An API key's own rate.
    Key,
}

impl Class {
    /// The policy's name in the `RateLimit` fields.
    pub fn name(self) -> &'static str {
        match self {
            Class::Submit => "submit",
            Class::Read => "read",
            Class::Key => "key",
        }
    }
}

/// The limits of `serve`.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    /// The rate of submissions, if limited.
    pub submit: Option<Rate>,
    /// The rate of other API requests, if limited.
    pub read: Option<Rate>,
    /// Clients the table holds before the least recently seen are forgotten.
    pub clients: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` name the client.
    pub trust_proxy: Vec<Cidr>,
}

impl RateLimitConfig {
    fn rate(&self, class: Class) -> Option<Rate> {
        match class {
            Class::Submit => self.submit,
            Class::Read => self.read,
            Class::Key => None,
        }
    }
}

/// The rate limiter shared by every reactor.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    table: Table,
    hasher: RandomState,
    /// Refusals by route pattern (the patterns are fixed at start).
    refused: Box<[(&'static str, AtomicU64)]>,
}

/// What the limiter said of one request.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    /// The request's class.
    pub class: Class,
    /// Its class's rate.
    pub rate: Rate,
    /// The bucket's answer.
    pub decision: Decision,
}

impl RateLimiter {
    /// A limiter for `config`, counting refusals for each of `routes`;
    /// `None` when no class is limited.
    pub fn new(config: RateLimitConfig, routes: impl IntoIterator<Item = &'static str>) -> Option<RateLimiter> {
        if config.submit.is_none() && config.read.is_none() {
            return None;
        }
        let refused = routes.into_iter().map(|r| (r, AtomicU64::new(0))).collect();
        Some(RateLimiter {
            table: Table::new(config.clients, Instant::now()),
            config,
            hasher: RandomState::new(),
            refused,
        })
    }

    /// Takes one request of `class` from the bucket of the client behind
    /// `peer` at `now`; `None` when the class is not limited.
    pub fn check(&self, class: Class, peer: IpAddr, head: &Head<'_>, now: Instant) -> Option<Verdict> {
        let rate = self.config.rate(class)?;
        let client = client::client(peer, head, &self.config.trust_proxy);
        let key = client::key(client, class as u8, &self.hasher);
        Some(Verdict { class, rate, decision: self.table.check(key, rate, now) })
    }

    /// Counts a refusal of a request to `route`.
    pub fn count_refused(&self, route: &str) {
        if let Some((_, n)) = self.refused.iter().find(|(r, _)| *r == route) {
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Refusals so far, by route.
    pub fn refused(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.refused.iter().map(|(r, n)| (*r, n.load(Ordering::Relaxed)))
    }

    /// Bytes the client table holds (fixed at start).
    pub fn table_bytes(&self) -> usize {
        self.table.bytes()
    }
}

impl Verdict {
    /// `RateLimit-Policy`: the bucket as a quota of `burst` requests per
    /// the `w` seconds it takes to refill, which is the sustained rate.
    pub fn policy(&self) -> String {
        let window = self.rate.interval.saturating_mul(self.rate.burst.max(1));
        format!("\"{}\";q={};w={}", self.class.name(), self.rate.burst.max(1), ceil_secs(window).max(1))
    }

    /// `RateLimit`: requests left now and seconds until the quota is whole.
    pub fn state(&self) -> String {
        format!("\"{}\";r={};t={}", self.class.name(), self.decision.remaining, ceil_secs(self.decision.reset))
    }

    /// `Retry-After` of a refusal, in whole seconds (at least 1).
    pub fn retry_after(&self) -> u64 {
        ceil_secs(self.decision.retry_after).max(1)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Parses a rate: `20`, `20/s`, `600/min` or `36000/h`.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("unknown unit {other:?} in rate {text:?} (use /s, /min or /h)")),
    };
    let count: f64 = count.trim().parse().map_err(|_| format!("{text:?} is not a rate such as 20/s"))?;
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("rate {text:?} must be above zero"));
    }
    Ok(count / seconds)
}

/// The bucket of `per_second` requests a second with `burst` at once (by
/// default one second's worth, at least 1).
pub fn rate(per_second: f64, burst: Option<u32>) -> Rate {
    let burst = burst.unwrap_or_else(|| per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
    Rate { interval: Duration::from_secs_f64(1.0 / per_second), burst: burst.max(1) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_any_unit() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("120/min"), Ok(2.0));
        assert!(parse_rate("0/s").is_err());
        assert!(parse_rate("x/s").unwrap_err().contains("not a rate"));
        assert!(parse_rate("5/week").unwrap_err().contains("unknown unit"));
        assert_eq!(rate(0.5, None), Rate { interval: Duration::from_secs(2), burst: 1 });
        assert_eq!(rate(20.0, Some(5)).burst, 5);
    }

    #[test]
    fn headers_follow_the_draft() {
        let rate = rate(10.0, Some(20));
        let decision =
            Decision { allowed: true, remaining: 7, reset: Duration::from_millis(1300), retry_after: Duration::ZERO };
        let v = Verdict { class: Class::Submit, rate, decision };
        assert_eq!(v.policy(), "\"submit\";q=20;w=2");
        assert_eq!(v.state(), "\"submit\";r=7;t=2");
        assert_eq!(v.retry_after(), 1);
    }
}

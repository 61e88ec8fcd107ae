//! API keys (`--api-keys FILE`): who a request comes from and what it may
//! do. A key is a random secret given to a client once; the file holds only
//! its SHA-256, a name, its scopes, and optional limits. Keys are compared
//! in constant time, and the file is read again on SIGHUP.

pub mod file;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::ratelimit::{Decision, Rate};

pub use file::{generate, KeyFile};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Submit and cancel tasks.
    Submit,
    /// Read its tasks, their results and events, the history and figures.
    Read,
    /// Read the metrics, the live stream, alerts and the dashboard.
    Metrics,
    /// Everything, every key's tasks included.
    Admin,
}

impl Scope {
    /// Every scope, in the file's words.
    pub const ALL: [Scope; 4] = [Scope::Submit, Scope::Read, Scope::Metrics, Scope::Admin];

    /// The scope's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// One key, as the file describes it, with its use today.
#[derive(Debug)]
pub struct Key {
    /// Its name: in logs, metrics and task ownership (never the key).
    pub name: &'static str,
    sha256: [u8; 32],
    scopes: u8,
    /// Its own rate, beside the per-client one.
    pub rate: Option<Rate>,
    /// Requests a UTC day.
    pub daily_quota: Option<u64>,
    /// (day number, requests that day), packed: day in the high 32 bits.
    used: AtomicU64,
}

impl Key {
    /// Whether the key has `scope` (admin has every scope).
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes & (scope.bit() | Scope::Admin.bit()) != 0
    }

    /// One line for people: name, scopes, limits.
    pub fn describe(&self) -> String {
        let scopes: Vec<&str> = Scope::ALL.iter().filter(|s| self.scopes & s.bit() != 0).map(|s| s.name()).collect();
        let mut line = format!("{}: {}", self.name, scopes.join(","));
        if let Some(rate) = self.rate {
            line.push_str(&format!("; rate {:.3}/s, burst {}", 1.0 / rate.interval.as_secs_f64(), rate.burst));
        }
        if let Some(quota) = self.daily_quota {
            line.push_str(&format!("; {quota} requests a day"));
        }
        line
    }

    /// Whether it sees every key's tasks.
    pub fn is_admin(&self) -> bool {
        self.scopes & Scope::Admin.bit() != 0
    }

    /// Counts one request against the daily quota at `now`; `Err` with the
    /// quota when it is used up.
    pub fn spend(&self, now: SystemTime) -> Result<(), u64> {
        let Some(quota) = self.daily_quota else { return Ok(()) };
        let day = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
        let mut current = self.used.load(Ordering::Relaxed);
        loop {
            let (used_day, used) = (current >> 32, current & 0xffff_ffff);
            let used = if used_day == day { used } else { 0 };
            if used >= quota {
                return Err(quota);
            }
            let next = (day << 32) | (used + 1);
            match self.used.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

/// Why a request was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A key that is not in the file.
    Invalid,
}

/// The keys of the file, swapped whole on a reload.
#[derive(Debug)]
pub struct Keys {
    path: std::path::PathBuf,
    current: RwLock<Arc<Vec<Key>>>,
    /// Per-key rates, in one fixed table (see `ratelimit`).
    rates: crate::ratelimit::Table,
}

impl Keys {
    /// Reads the file; an error says what is wrong with it.
    pub fn load(path: &std::path::Path) -> Result<Keys, String> {
        let keys = KeyFile::read(path)?.keys()?;
        Ok(Keys {
            path: path.to_path_buf(),
            current: RwLock::new(Arc::new(keys)),
            rates: crate::ratelimit::Table::new(4096, Instant::now()),
        })
    }

    /// Reads the file again; on an error the keys stay as they were.
    /// Returns how many keys there are now.
    pub fn reload(&self) -> Result<usize, String> {
        let keys = KeyFile::read(&self.path)?.keys()?;
        let n = keys.len();
        // A poisoned lock only means a reader panicked; the Arc is whole.
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(n)
    }

    /// The key a request's `Authorization` header names. Every key's hash is
    /// compared, each in constant time, so the time taken says nothing of
    /// which (or whether one) matched.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<KeyRef, Denied> {
        let header = authorization.ok_or(Denied::Missing)?;
        let token = std::str::from_utf8(header)
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .ok_or(Denied::Missing)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let keys = Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()));
        let mut found = None;
        for (i, key) in keys.iter().enumerate() {
            let same = key.sha256.iter().zip(digest.as_ref()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0;
            if same {
                found = Some(i);
            }
        }
        found.map(|index| KeyRef { keys, index }).ok_or(Denied::Invalid)
    }

    /// Whether the key named `name` is an admin key.
    pub fn is_admin(&self, name: &str) -> bool {
        self.current.read().unwrap_or_else(|e| e.into_inner()).iter().any(|k| k.name == name && k.is_admin())
    }

    /// The keys: names, scopes and limits, as the file says.
    pub fn describe(&self) -> Vec<String> {
        let keys = self.current.read().unwrap_or_else(|e| e.into_inner());
        keys.iter().map(Key::describe).collect()
    }

    /// Takes one request from `key`'s own rate at `now`, if it has one.
    pub fn check_rate(&self, key: &Key, now: Instant) -> Option<(Rate, Decision)> {
        let rate = key.rate?;
        let hash = u64::from_le_bytes(key.sha256[..8].try_into().unwrap_or_default());
        Some((rate, self.rates.check(hash, rate, now)))
    }
}

/// A key found by [`Keys::authenticate`], kept alive across a reload.
#[derive(Debug, Clone)]
pub struct KeyRef {
    keys: Arc<Vec<Key>>,
    index: usize,
}

impl std::ops::Deref for KeyRef {
    type Target = Key;

    fn deref(&self) -> &Key {
        // `index` was found in this very list.
        &self.keys[self.index]
    }
}

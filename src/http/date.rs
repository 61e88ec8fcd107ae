//! The `Date` header value, formatted once a second per reactor thread.
//!
//! Each reactor owns its cache, so there is nothing to share and nothing to
//! race on; formatting costs one `httpdate` call a second and no allocation.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) refreshed on demand.
#[derive(Debug)]
pub struct DateCache {
    second: u64,
    text: [u8; 29],
}

impl DateCache {
    /// A cache holding the current time.
    pub fn new() -> Self {
        let mut cache = DateCache { second: u64::MAX, text: [b' '; 29] };
        cache.refresh(SystemTime::now());
        cache
    }

    /// Reformats if `now` is in a later second than the cached value.
    pub fn refresh(&mut self, now: SystemTime) {
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second {
            self.second = second;
            // Formatted into the fixed array: IMF-fixdate is 29 bytes for
            // years 1000-9999, and a longer one is left unwritten, not truncated.
            let mut text = [b' '; 29];
            if write!(&mut text[..], "{}", httpdate::HttpDate::from(now)).is_ok() {
                self.text = text;
            }
        }
    }

    /// The cached header value.
    pub fn get(&self) -> &[u8] {
        &self.text
    }
}

impl Default for DateCache {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_imf_fixdate_and_refreshes_each_second() {
        let mut cache = DateCache::new();
        cache.refresh(UNIX_EPOCH + Duration::from_secs(784_111_777));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(UNIX_EPOCH + Duration::from_millis(784_111_777_900));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:37 GMT");
        cache.refresh(UNIX_EPOCH + Duration::from_secs(784_111_778));
        assert_eq!(cache.get(), b"Sun, 06 Nov 1994 08:49:38 GMT");
    }
}

//! Log lines of the service on standard error: a timestamp and a level on
//! each, as text (`2026-11-30T01:02:03.456Z WARN message`) or one JSON
//! object a line (`--log-format json`).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use crate::clock::rfc3339;

/// How bad a line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something that happened as it should.
    Info,
    /// Something an operator may want to look at.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Writes lines as JSON objects from now on (`--log-format json`).
pub fn use_json(json: bool) {
    JSON.store(json, Ordering::Relaxed);
}

/// The line for `message` at `level` and `time`, in the chosen format.
pub fn line(level: Level, message: &str, time: SystemTime) -> String {
    let ts = rfc3339(time);
    if JSON.load(Ordering::Relaxed) {
        // Three strings: serialising cannot fail.
        serde_json::json!({ "ts": ts, "level": level.name(), "msg": message }).to_string()
    } else {
        format!("{ts} {:5} {message}", level.name().to_ascii_uppercase())
    }
}

/// Writes one line (one write, so lines of several threads do not mix).
pub fn write(level: Level, message: &str) {
    let mut text = line(level, message, SystemTime::now());
    text.push('\n');
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// Logs at info level, `format!`-style.
#[macro_export]
macro_rules! info {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &format!($($arg)*)) };
}

/// Logs at warn level, `format!`-style.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &format!($($arg)*)) };
}

/// Logs at error level, `format!`-style.
#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($arg)*)) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn lines_carry_a_timestamp_and_a_level() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_340_096_123);
        assert_eq!(line(Level::Warn, "disk \"full\"", t), "2026-11-22T09:34:56.123Z WARN  disk \"full\"");
        use_json(true);
        let json: serde_json::Value = serde_json::from_str(&line(Level::Error, "disk \"full\"", t)).unwrap();
        use_json(false);
        assert_eq!(
            json,
            serde_json::json!({"ts": "2026-11-22T09:34:56.123Z", "level": "error", "msg": "disk \"full\""})
        );
    }
}

//! Durations and sizes as people write them on a command line.
//!
//! `10s`, `500ms`, `2m`, `1h`, `250us` or a plain number of seconds;
//! `16KiB`, `10MiB`, `1GiB`, `64kB`, `1MB` or a plain number of bytes.

use std::time::Duration;

/// Parses a duration: a non-negative decimal number followed by `us`, `ms`,
/// `s`, `m` or `h`; a bare number means seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = split_number(text)?;
    let scale = match unit.to_ascii_lowercase().as_str() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" | "mins" => 60.0,
        "h" => 3600.0,
        _ => return Err(format!("unknown duration unit {unit:?} in {text:?} (use us, ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(number * scale).map_err(|_| format!("duration {text:?} is out of range"))
}

/// Parses a size in bytes: a non-negative number followed by `B`, `KiB`,
/// `MiB`, `GiB` (powers of 1024) or `kB`, `MB`, `GB` (powers of 1000); a bare
/// number means bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let (number, unit) = split_number(text)?;
    let scale: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        _ => return Err(format!("unknown size unit {unit:?} in {text:?} (use B, KiB, MiB, GiB, kB, MB or GB)")),
    };
    let bytes = (number * scale).round();
    if bytes > usize::MAX as f64 {
        return Err(format!("size {text:?} is out of range"));
    }
    Ok(bytes as usize)
}

/// Splits `"10.5MiB"` into `(10.5, "MiB")`, rejecting negatives and garbage.
fn split_number(text: &str) -> Result<(f64, &str), String> {
    let text = text.trim();
    let end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (digits, unit) = text.split_at(end);
    if digits.is_empty() {
        return Err(format!("{text:?} does not start with a number"));
    }
    let number: f64 = digits.parse().map_err(|_| format!("{digits:?} is not a number"))?;
    Ok((number, unit.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_people_write() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
    }

    #[test]
    fn bad_durations_say_why() {
        assert!(parse_duration("").unwrap_err().contains("number"));
        assert!(parse_duration("-1s").unwrap_err().contains("number"));
        assert!(parse_duration("10 parsecs").unwrap_err().contains("unit"));
        assert!(parse_duration("1.2.3s").unwrap_err().contains("not a number"));
    }

    #[test]
    fn sizes_people_write() {
        assert_eq!(parse_size("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_size("10MiB"), Ok(10 * 1024 * 1024));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("64kB"), Ok(64_000));
        assert_eq!(parse_size("2MB"), Ok(2_000_000));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("0.5KiB"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_why() {
        assert!(parse_size("lots").is_err());
        assert!(parse_size("3 furlongs").unwrap_err().contains("unit"));
    }
}

//! The keys file: TOML, one `[[key]]` table a key, holding its name, the
//! SHA-256 of the key (never the key), its scopes and optional limits.
//!
//! ```toml
//! [[key]]
//! name = "ci"
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! scopes = ["submit", "read"]
//! rate_limit = "20/s"
//! daily_quota = 10000
//! ```

use std::collections::HashSet;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Key, Scope};
use crate::ratelimit::{parse_rate, rate};

/// The file as written.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    /// Its keys.
    #[serde(default, rename = "key")]
    pub keys: Vec<Entry>,
}

/// One `[[key]]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// A name for people (logs, metrics, task ownership).
    pub name: String,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    /// What it may do: `submit`, `read`, `metrics`, `admin`.
    pub scopes: Vec<String>,
    /// Its own rate, e.g. `20/s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<String>,
    /// Requests a UTC day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_quota: Option<u64>,
}

impl KeyFile {
    /// Reads and parses `path`.
    pub fn read(path: &Path) -> Result<KeyFile, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("--api-keys {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("--api-keys {}: {e}", path.display()))
    }

    /// The keys, checked: names unique and not empty, hashes well formed,
    /// scopes known, limits valid.
    pub fn keys(&self) -> Result<Vec<Key>, String> {
        let mut names = HashSet::new();
        self.keys
            .iter()
            .map(|e| {
                let bad = |what: String| format!("key {:?}: {what}", e.name);
                if e.name.trim().is_empty() || !names.insert(e.name.as_str()) {
                    return Err(format!("key names must be unique and not empty: {:?}", e.name));
                }
                let sha256 = hex32(&e.sha256).ok_or_else(|| bad("sha256 must be 64 hex digits".into()))?;
                let mut scopes = 0;
                for s in &e.scopes {
                    let scope = Scope::ALL
                        .into_iter()
                        .find(|x| x.name() == s)
                        .ok_or_else(|| bad(format!("unknown scope {s:?} (submit, read, metrics or admin)")))?;
                    scopes |= scope.bit();
                }
                if scopes == 0 {
                    return Err(bad("give at least one scope".into()));
                }
                let rate = e.rate_limit.as_deref().map(parse_rate).transpose().map_err(bad)?.map(|r| rate(r, None));
                if e.daily_quota == Some(0) {
                    return Err(bad("daily_quota must be at least 1".into()));
                }
                Ok(Key {
                    name: intern(&e.name),
                    sha256,
                    scopes,
                    rate,
                    daily_quota: e.daily_quota,
                    used: AtomicU64::new(0),
                })
            })
            .collect()
    }

    /// Appends `entry` to the file at `path` (made if missing), after
    /// checking that the result still reads.
    pub fn append(path: &Path, entry: &Entry) -> Result<(), String> {
        let mut file = if path.exists() { KeyFile::read(path)? } else { KeyFile::default() };
        file.keys.push(entry.clone());
        file.keys()?;
        let table = toml::to_string(&KeyFile { keys: vec![entry.clone()] }).map_err(|e| e.to_string())?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        out.write_all(format!("\n{table}").as_bytes()).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// A new random key (`plk_` and 64 hex digits) and its file entry.
pub fn generate(name: &str, scopes: &[Scope]) -> Result<(String, Entry), String> {
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| "no randomness from the system".to_string())?;
    let key = format!("plk_{}", hex(&secret));
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let entry = Entry {
        name: name.to_string(),
        sha256: hex(digest.as_ref()),
        scopes: scopes.iter().map(|s| s.name().to_string()).collect(),
        rate_limit: None,
        daily_quota: None,
    };
    Ok((key, entry))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A key name as `&'static str` (metrics labels and log fields are static):
/// each distinct name is kept once, so reloads do not grow memory.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.iter().find(|n| **n == name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.push(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_authenticate_and_bad_files_say_why() {
        let dir = std::env::temp_dir().join(format!("pagelens-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.toml");
        let _ = std::fs::remove_file(&path);
        let (key, entry) = generate("ci", &[Scope::Submit, Scope::Read]).unwrap();
        assert!(key.starts_with("plk_") && key.len() == 68);
        KeyFile::append(&path, &entry).unwrap();
        let (other, entry) = generate("ops", &[Scope::Admin]).unwrap();
        KeyFile::append(&path, &entry).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains(&key), "the file never holds a key");
        let keys = super::super::Keys::load(&path).unwrap();
        let ci = keys.authenticate(Some(format!("Bearer {key}").as_bytes())).unwrap();
        assert_eq!(ci.name, "ci");
        assert!(ci.may(Scope::Read) && ci.may(Scope::Submit) && !ci.may(Scope::Metrics) && !ci.is_admin());
        let ops = keys.authenticate(Some(format!("bearer {other}").as_bytes())).unwrap();
        assert!(ops.may(Scope::Metrics) && ops.is_admin());
        use super::super::Denied;
        assert_eq!(keys.authenticate(None).unwrap_err(), Denied::Missing);
        assert_eq!(keys.authenticate(Some(b"Basic abc")).unwrap_err(), Denied::Missing);
        assert_eq!(keys.authenticate(Some(b"Bearer plk_nope")).unwrap_err(), Denied::Invalid);
        let (_, twin) = generate("ci", &[Scope::Read]).unwrap();
        assert!(KeyFile::append(&path, &twin).unwrap_err().contains("unique"));

        for (text, needle) in [
            ("[[key]]\nname = \"a\"\nsha256 = \"abc\"\nscopes = [\"read\"]\n", "64 hex digits"),
            (
                &format!("[[key]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"root\"]\n", "0".repeat(64)),
                "unknown scope",
            ),
            (&format!("[[key]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = []\n", "0".repeat(64)), "at least one scope"),
            (
                &format!(
                    "[[key]]\nname = \"a\"\nsha256 = \"{}\"\nscopes = [\"read\"]\nrate_limit = \"fast\"\n",
                    "0".repeat(64)
                ),
                "not a rate",
            ),
            ("[[key]]\nname = \"a\"\ncolour = 1\n", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = super::super::Keys::load(&path).unwrap_err();
            assert!(e.contains(needle), "{text}: {e}");
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_daily_quota_counts_and_turns_over_at_midnight() {
        let key =
            Key { name: "q", sha256: [0; 32], scopes: 1, rate: None, daily_quota: Some(2), used: AtomicU64::new(0) };
        let day = std::time::UNIX_EPOCH + std::time::Duration::from_secs(20_000 * 86_400 + 5);
        assert_eq!((key.spend(day), key.spend(day), key.spend(day)), (Ok(()), Ok(()), Err(2)));
        let next = day + std::time::Duration::from_secs(86_400);
        assert_eq!(key.spend(next), Ok(()), "a new day, a new quota");
    }
}

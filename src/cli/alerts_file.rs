//! `--alerts-file`: alert rules' thresholds, `for` durations and a webhook,
//! in TOML, over the `--alert-*` flags.
//!
//! ```toml
//! for = "30s"                 # every rule's default
//! window = "60s"              # the sliding window for rates
//! webhook = "https://hooks.example.com/pagelens"   # POSTed on every change
//!
//! [rules.high_latency]
//! threshold = 0.5             # seconds of p99
//! for = "10s"
//!
//! [rules.task_timeouts]
//! enabled = false
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use url::Url;

use super::units::parse_duration;
use crate::metrics::alerts::{AlertConfig, RuleSettings, RULES};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(rename = "for")]
    hold: Option<String>,
    window: Option<String>,
    webhook: Option<String>,
    #[serde(default)]
    rules: BTreeMap<String, RuleEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    threshold: Option<f64>,
    #[serde(rename = "for")]
    hold: Option<String>,
    enabled: Option<bool>,
}

/// Reads `path` over `config`; returns the webhook URL if the file names one.
pub fn apply(path: &Path, config: &mut AlertConfig) -> Result<Option<Url>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("--alerts-file {}: {e}", path.display()))?;
    apply_text(&text, config).map_err(|e| format!("--alerts-file {}: {e}", path.display()))
}

fn apply_text(text: &str, config: &mut AlertConfig) -> Result<Option<Url>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    if let Some(hold) = &file.hold {
        config.hold = parse_duration(hold).map_err(|e| format!("for: {e}"))?;
    }
    if let Some(window) = &file.window {
        config.window = parse_duration(window).map_err(|e| format!("window: {e}"))?;
        if config.window.is_zero() {
            return Err("window must be above zero".into());
        }
    }
    for (name, entry) in file.rules {
        if !RULES.contains(&name.as_str()) {
            return Err(format!("no rule named {name:?}; the rules are {}", RULES.join(", ")));
        }
        if let Some(t) = entry.threshold {
            if !(t.is_finite() && t >= 0.0) {
                return Err(format!("rules.{name}.threshold must be a number >= 0"));
            }
        }
        let hold =
            entry.hold.as_deref().map(parse_duration).transpose().map_err(|e| format!("rules.{name}.for: {e}"))?;
        config.rules.insert(name, RuleSettings { threshold: entry.threshold, hold, enabled: entry.enabled });
    }
    file.webhook.map(|w| Url::parse(&w).map_err(|e| format!("webhook {w:?}: {e}"))).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn base() -> AlertConfig {
        AlertConfig {
            p99: Duration::from_secs(1),
            error_rate: 0.01,
            queue_fill: 0.8,
            connection_fill: 0.9,
            timeout_rate: 0.05,
            hold: Duration::from_secs(30),
            window: Duration::from_secs(60),
            rules: BTreeMap::new(),
        }
    }

    #[test]
    fn reads_rules_and_the_webhook() {
        let mut c = base();
        let text = "for = \"5s\"\nwebhook = \"https://hooks.example.com/x\"\n[rules.high_latency]\nthreshold = 0.25\nfor = \"1s\"\n[rules.error_rate]\nenabled = false\n";
        let hook = apply_text(text, &mut c).unwrap();
        assert_eq!(hook.unwrap().as_str(), "https://hooks.example.com/x");
        assert_eq!(c.hold, Duration::from_secs(5));
        let hl = c.rules["high_latency"];
        assert_eq!((hl.threshold, hl.hold), (Some(0.25), Some(Duration::from_secs(1))));
        assert_eq!(c.rules["error_rate"].enabled, Some(false));
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        for (text, want) in [
            ("[rules.nope]\nthreshold = 1\n", "no rule named \"nope\""),
            ("[rules.high_latency]\nthreshold = -1\n", "must be a number >= 0"),
            ("[rules.high_latency]\ncolour = 1\n", "unknown field"),
            ("for = \"soon\"\n", "for:"),
            ("window = \"0s\"\n", "window must be above zero"),
            ("webhook = \"not a url\"\n", "webhook"),
            ("for = ", "expected"),
        ] {
            let err = apply_text(text, &mut base()).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }
}

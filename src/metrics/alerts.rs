//! Alert rules, evaluated once a second on the metrics thread.
//!
//! Each rule compares one figure with its threshold; a rule whose condition
//! holds goes `pending`, and `firing` once it has held for the `for`
//! duration; when it stops holding a firing rule is `resolved` (a pending
//! one simply returns to `inactive`). [`Alerts::evaluate`] is the one
//! function that moves the states, and time is passed in.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use serde::Serialize;

/// The rules' names, in order.
pub const RULES: [&str; 5] = ["high_latency", "error_rate", "queue_full", "connections_near_limit", "task_timeouts"];

/// One rule's settings from an alerts file, over the flags.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RuleSettings {
    /// Its threshold, in the rule's unit (seconds or a share).
    pub threshold: Option<f64>,
    /// Its `for` duration.
    pub hold: Option<Duration>,
    /// False turns the rule off.
    pub enabled: Option<bool>,
}

/// Thresholds and timing of the rules.
#[derive(Debug, Clone)]
pub struct AlertConfig {
    /// p99 latency of any route over the last interval.
    pub p99: Duration,
    /// Share of 5xx responses over the window.
    pub error_rate: f64,
    /// Share of the task queue in use.
    pub queue_fill: f64,
    /// Share of `--max-connections` in use.
    pub connection_fill: f64,
    /// Share of finished tasks that timed out over the window.
    pub timeout_rate: f64,
    /// How long a condition must hold before the alert fires.
    pub hold: Duration,
    /// The sliding window for rates.
    pub window: Duration,
    /// Per-rule settings by rule name (from `--alerts-file`).
    pub rules: BTreeMap<String, RuleSettings>,
}

/// What the rules look at, once a second.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The highest p99 (seconds) of any route over the last interval, and that route.
    pub worst_p99: Option<(String, f64)>,
    /// Responses in the last interval, and how many were 5xx.
    pub responses: u64,
    /// 5xx responses in the last interval.
    pub errors: u64,
    /// Queue in use / capacity.
    pub queue_fill: f64,
    /// Connections open / maximum.
    pub connection_fill: f64,
    /// Tasks that ended in the last interval, and how many timed out.
    pub tasks_ended: u64,
    /// Tasks that timed out in the last interval.
    pub tasks_timed_out: u64,
}

/// Where a rule is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition does not hold.
    Inactive,
    /// It holds, not yet for long enough.
    Pending,
    /// It has held for the `for` duration.
    Firing,
    /// It fired and no longer holds.
    Resolved,
}

impl AlertState {
    /// The name `/alerts` uses.
    pub fn name(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One rule and its state.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    /// Stable name, the `alert` label.
    pub name: &'static str,
    /// What it watches, for a person.
    pub description: &'static str,
    /// Its threshold.
    pub threshold: f64,
    /// The latest value.
    pub value: f64,
    /// Its state.
    pub state: AlertState,
    /// What the value refers to (the worst route, for latency).
    pub subject: Option<String>,
    /// How long the condition must hold before firing, in seconds.
    pub for_seconds: f64,
    #[serde(skip)]
    hold: Duration,
    #[serde(skip)]
    since: Option<Instant>,
}

/// A rule's change of state.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// The rule, after the change.
    #[serde(flatten)]
    pub rule: Rule,
    /// Its state before.
    pub previous: AlertState,
}

impl Change {
    /// The log line.
    pub fn line(&self) -> String {
        let r = &self.rule;
        format!(
            "alert {}: {} -> {} (value {:.4}, threshold {})",
            r.name,
            self.previous.name(),
            r.state.name(),
            r.value,
            r.threshold
        )
    }
}

/// One second of counts, for the sliding window.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    responses: u64,
    errors: u64,
    tasks_ended: u64,
    tasks_timed_out: u64,
}

/// The rules of one server.
#[derive(Debug)]
pub struct Alerts {
    config: AlertConfig,
    rules: Vec<Rule>,
    window: VecDeque<Second>,
}

impl Alerts {
    /// The default rules with `config`'s thresholds and per-rule settings.
    pub fn new(config: AlertConfig) -> Self {
        let rule = |name: &'static str, description, threshold| {
            let settings = config.rules.get(name).copied().unwrap_or_default();
            let hold = settings.hold.unwrap_or(config.hold);
            let rule = Rule {
                name,
                description,
                threshold: settings.threshold.unwrap_or(threshold),
                value: 0.0,
                state: AlertState::Inactive,
                subject: None,
                for_seconds: hold.as_secs_f64(),
                hold,
                since: None,
            };
            (settings.enabled != Some(false)).then_some(rule)
        };
        let rules = [
            rule(RULES[0], "p99 latency of a route over the last second (seconds)", config.p99.as_secs_f64()),
            rule(RULES[1], "share of 5xx responses over the window", config.error_rate),
            rule(RULES[2], "share of the task queue in use", config.queue_fill),
            rule(RULES[3], "share of --max-connections in use", config.connection_fill),
            rule(RULES[4], "share of ended tasks that timed out over the window", config.timeout_rate),
        ];
        Alerts { rules: rules.into_iter().flatten().collect(), config, window: VecDeque::new() }
    }

    /// The rules and their states.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Evaluates every rule at `now`; returns the changes of state.
    pub fn evaluate(&mut self, now: Instant, inputs: &Inputs) -> Vec<Change> {
        self.window.push_back(Second {
            responses: inputs.responses,
            errors: inputs.errors,
            tasks_ended: inputs.tasks_ended,
            tasks_timed_out: inputs.tasks_timed_out,
        });
        let seconds = self.config.window.as_secs().max(1) as usize;
        while self.window.len() > seconds {
            self.window.pop_front();
        }
        let sum = |f: fn(&Second) -> u64| self.window.iter().map(f).sum::<u64>();
        let ratio = |part: u64, whole: u64| if whole == 0 { 0.0 } else { part as f64 / whole as f64 };
        let error_rate = ratio(sum(|s| s.errors), sum(|s| s.responses));
        let timeout_rate = ratio(sum(|s| s.tasks_timed_out), sum(|s| s.tasks_ended));
        let (worst_route, worst_p99) = inputs.worst_p99.clone().map_or((None, 0.0), |(r, v)| (Some(r), v));
        let values = [worst_p99, error_rate, inputs.queue_fill, inputs.connection_fill, timeout_rate];
        let mut changes = Vec::new();
        for rule in self.rules.iter_mut() {
            let value = RULES.iter().position(|n| *n == rule.name).map_or(0.0, |i| values[i]);
            let hold = rule.hold;
            rule.value = value;
            if rule.name == "high_latency" {
                rule.subject = worst_route.clone();
            }
            let holds = value > rule.threshold;
            let next = match (rule.state, holds) {
                (AlertState::Inactive | AlertState::Resolved, true) => {
                    rule.since = Some(now);
                    if hold.is_zero() {
                        AlertState::Firing
                    } else {
                        AlertState::Pending
                    }
                }
                (AlertState::Pending, true) if rule.since.is_some_and(|s| now.duration_since(s) >= hold) => {
                    AlertState::Firing
                }
                (AlertState::Pending, false) => AlertState::Inactive,
                (AlertState::Firing, false) => AlertState::Resolved,
                (state, _) => state,
            };
            if next != rule.state {
                let previous = std::mem::replace(&mut rule.state, next);
                changes.push(Change { rule: rule.clone(), previous });
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(hold: u64) -> AlertConfig {
        AlertConfig {
            p99: Duration::from_millis(100),
            error_rate: 0.01,
            queue_fill: 0.8,
            connection_fill: 0.9,
            timeout_rate: 0.05,
            hold: Duration::from_secs(hold),
            window: Duration::from_secs(10),
            rules: BTreeMap::new(),
        }
    }

    #[test]
    fn per_rule_settings_override_and_disable() {
        let mut c = config(5);
        c.rules.insert(
            "queue_full".into(),
            RuleSettings { threshold: Some(0.5), hold: Some(Duration::ZERO), enabled: None },
        );
        c.rules.insert("task_timeouts".into(), RuleSettings { enabled: Some(false), ..RuleSettings::default() });
        let mut alerts = Alerts::new(c);
        assert!(alerts.rules().iter().all(|r| r.name != "task_timeouts"));
        let changes = alerts.evaluate(Instant::now(), &Inputs { queue_fill: 0.6, ..Inputs::default() });
        assert_eq!(state(&alerts, "queue_full"), AlertState::Firing, "threshold 0.5, no hold");
        assert_eq!((changes[0].previous, changes[0].rule.state), (AlertState::Inactive, AlertState::Firing));
        assert!(changes[0].line().contains("alert queue_full: inactive -> firing"), "the states as /alerts names them");
    }

    fn state(alerts: &Alerts, name: &str) -> AlertState {
        alerts.rules().iter().find(|r| r.name == name).unwrap().state
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let mut alerts = Alerts::new(config(2));
        let t0 = Instant::now();
        let slow = Inputs { worst_p99: Some(("/x".into(), 0.5)), responses: 10, ..Inputs::default() };
        let changes = alerts.evaluate(t0, &slow);
        assert_eq!(state(&alerts, "high_latency"), AlertState::Pending);
        assert_eq!(changes.len(), 1, "{changes:?}");
        alerts.evaluate(t0 + Duration::from_secs(1), &slow);
        assert_eq!(state(&alerts, "high_latency"), AlertState::Pending);
        alerts.evaluate(t0 + Duration::from_secs(2), &slow);
        assert_eq!(state(&alerts, "high_latency"), AlertState::Firing);
        assert_eq!(alerts.rules()[0].subject.as_deref(), Some("/x"));
        let fast = Inputs { worst_p99: Some(("/x".into(), 0.01)), responses: 10, ..Inputs::default() };
        alerts.evaluate(t0 + Duration::from_secs(3), &fast);
        assert_eq!(state(&alerts, "high_latency"), AlertState::Resolved);
    }

    #[test]
    fn a_short_blip_never_fires() {
        let mut alerts = Alerts::new(config(5));
        let t0 = Instant::now();
        alerts.evaluate(t0, &Inputs { queue_fill: 0.95, ..Inputs::default() });
        assert_eq!(state(&alerts, "queue_full"), AlertState::Pending);
        alerts.evaluate(t0 + Duration::from_secs(1), &Inputs { queue_fill: 0.1, ..Inputs::default() });
        assert_eq!(state(&alerts, "queue_full"), AlertState::Inactive);
    }

    #[test]
    fn rates_use_the_sliding_window() {
        let mut alerts = Alerts::new(config(0));
        let t0 = Instant::now();
        // 1 error in 50 responses: 2 % > 1 %, fires at once with no hold.
        alerts.evaluate(t0, &Inputs { responses: 50, errors: 1, ..Inputs::default() });
        assert_eq!(state(&alerts, "error_rate"), AlertState::Firing);
        // Then 200 clean responses a second: the share falls under 1 % within the window.
        let mut t = t0;
        for _ in 0..3 {
            t += Duration::from_secs(1);
            alerts.evaluate(t, &Inputs { responses: 200, ..Inputs::default() });
        }
        assert_eq!(state(&alerts, "error_rate"), AlertState::Resolved);
        // Timeouts: 1 of 10 ended tasks is 10 % > 5 %.
        alerts
            .evaluate(t + Duration::from_secs(1), &Inputs { tasks_ended: 10, tasks_timed_out: 1, ..Inputs::default() });
        assert_eq!(state(&alerts, "task_timeouts"), AlertState::Firing);
    }
}

//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0,
//! written by hand: families with HELP and TYPE, samples with escaped label
//! values. The two differ, for what we write, in that an OpenMetrics counter
//! family is named without its `_total` suffix and the text ends in `# EOF`,
//! so both are written in one pass: every collector reads its source once a
//! rendering and the two formats always show the same values.

use std::fmt::Write;

/// A text exposition being written in both formats.
#[derive(Debug, Default)]
pub struct Exposition {
    prometheus: String,
    openmetrics: String,
}

/// A finished exposition.
#[derive(Debug)]
pub struct Texts {
    /// Prometheus text format 0.0.4.
    pub prometheus: String,
    /// OpenMetrics 1.0.
    pub openmetrics: String,
}

impl Exposition {
    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = escape_help(help);
        let om_name = match kind {
            "counter" => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        // Writing to a String cannot fail.
        for (out, name) in [(&mut self.prometheus, name), (&mut self.openmetrics, om_name)] {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
        }
    }

    /// Adds one sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let start = self.prometheus.len();
        let out = &mut self.prometheus;
        out.push_str(name);
        if !labels.is_empty() {
            out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{key}=\"{}\"", escape_label(value));
            }
            out.push('}');
        }
        let _ = writeln!(out, " {}", number(value));
        self.openmetrics.push_str(&self.prometheus[start..]);
    }

    /// Adds one histogram bucket sample (`le` last, as is customary).
    pub fn sample_le(&mut self, name: &str, labels: &[(&str, &str)], le: &str, value: f64) {
        let mut all: Vec<(&str, &str)> = labels.to_vec();
        all.push(("le", le));
        self.sample(name, &all, value);
    }

    /// A family with one unlabelled sample.
    pub fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    /// The finished texts.
    pub fn finish(mut self) -> Texts {
        self.openmetrics.push_str("# EOF\n");
        Texts { prometheus: self.prometheus, openmetrics: self.openmetrics }
    }
}

fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".into()
    } else if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn escape_help(value: &str) -> String {
    value.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_families_and_escaped_samples() {
        let mut e = Exposition::default();
        e.family("pagelens_x_total", "counter", "A \\ thing\nwith lines.");
        e.sample("pagelens_x_total", &[("route", "/a\"b\\c")], 3.0);
        e.sample_le("pagelens_y_bucket", &[("m", "GET")], "0.5", 1.5);
        e.single("pagelens_z", "gauge", "Z.", f64::INFINITY);
        assert_eq!(
            e.finish().prometheus,
            "# HELP pagelens_x_total A \\\\ thing\\nwith lines.\n# TYPE pagelens_x_total counter\n\
             pagelens_x_total{route=\"/a\\\"b\\\\c\"} 3\npagelens_y_bucket{m=\"GET\",le=\"0.5\"} 1.5\n\
             # HELP pagelens_z Z.\n# TYPE pagelens_z gauge\npagelens_z +Inf\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut e = Exposition::default();
        e.single("pagelens_x_total", "counter", "X.", 1.0);
        e.single("pagelens_y", "gauge", "Y.", 2.0);
        let texts = e.finish();
        assert_eq!(
            texts.openmetrics,
            "# HELP pagelens_x X.\n# TYPE pagelens_x counter\npagelens_x_total 1\n\
             # HELP pagelens_y Y.\n# TYPE pagelens_y gauge\npagelens_y 2\n# EOF\n"
        );
        assert_eq!(
            texts.prometheus,
            "# HELP pagelens_x_total X.\n# TYPE pagelens_x_total counter\npagelens_x_total 1\n\
             # HELP pagelens_y Y.\n# TYPE pagelens_y gauge\npagelens_y 2\n"
        );
    }
}

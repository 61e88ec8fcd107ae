//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0,
//! written by hand: families with HELP and TYPE, samples with escaped label
//! values. The two differ, for what we write, in that an OpenMetrics counter
//! family is named without its `_total` suffix and the text ends in `# EOF`.

use std::fmt::Write;

/// A text exposition being written.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
    openmetrics: bool,
}

impl Exposition {
    /// An empty exposition in OpenMetrics 1.0 (`true`) or Prometheus 0.0.4 format.
    pub fn new(openmetrics: bool) -> Self {
        Exposition { out: String::new(), openmetrics }
    }

    /// Starts a metric family.
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let name = match (self.openmetrics, kind) {
            (true, "counter") => name.strip_suffix("_total").unwrap_or(name),
            _ => name,
        };
        // Writing to a String cannot fail.
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// Adds one sample.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{key}=\"{}\"", escape_label(value));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {}", number(value));
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

    /// The finished text.
    pub fn finish(mut self) -> String {
        if self.openmetrics {
            self.out.push_str("# EOF\n");
        }
        self.out
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
            e.finish(),
            "# HELP pagelens_x_total A \\\\ thing\\nwith lines.\n# TYPE pagelens_x_total counter\n\
             pagelens_x_total{route=\"/a\\\"b\\\\c\"} 3\npagelens_y_bucket{m=\"GET\",le=\"0.5\"} 1.5\n\
             # HELP pagelens_z Z.\n# TYPE pagelens_z gauge\npagelens_z +Inf\n"
        );
    }

    #[test]
    fn openmetrics_names_counter_families_without_total_and_ends_with_eof() {
        let mut e = Exposition::new(true);
        e.single("pagelens_x_total", "counter", "X.", 1.0);
        assert_eq!(e.finish(), "# HELP pagelens_x X.\n# TYPE pagelens_x counter\npagelens_x_total 1\n# EOF\n");
    }
}

//! What a load test sends: the target, request templates encoded once, task
//! flows, and their weights. Built from the command line, a `--urls` file
//! or a scenario file.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::cli::units::parse_duration;
use crate::http::client::encode_request;

/// Where the load goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The URL given.
    pub url: Url,
    /// The address connected to.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// TLS server name, for https.
    pub tls_name: Option<String>,
}

impl Target {
    /// Parses and resolves `url` (http or https).
    pub fn parse(url: &str) -> Result<Target, String> {
        let url = Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(format!("{url}: the {other}: scheme is not supported; use http or https")),
        };
        let host = url.host_str().ok_or_else(|| format!("{url}: no host"))?.to_string();
        let port = url.port_or_known_default().unwrap_or(80);
        let addr = (host.trim_start_matches('[').trim_end_matches(']'), port)
            .to_socket_addrs()
            .map_err(|e| format!("{url}: cannot resolve {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{url}: {host} has no address"))?;
        let host_header = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        Ok(Target { addr, host: host_header, tls_name: tls.then_some(host), url })
    }

    /// The request target (path and query) of `url`, checked to be on this target.
    fn path_of(&self, url: &str) -> Result<String, String> {
        let full = self.url.join(url).map_err(|e| format!("{url}: {e}"))?;
        if full.origin() != self.url.origin() {
            return Err(format!("{url}: not on the target {}", self.url.origin().ascii_serialization()));
        }
        Ok(full[url::Position::BeforePath..url::Position::AfterQuery].to_string())
    }
}

/// One request, encoded once.
#[derive(Debug, Clone)]
pub struct Template {
    /// Its name in reports.
    pub name: String,
    /// The bytes sent.
    pub bytes: Vec<u8>,
    /// Whether it is `HEAD` (its response has no body).
    pub head: bool,
}

/// A task flow: submit, then poll the status URL until the task ends.
#[derive(Debug, Clone)]
pub struct Flow {
    /// Its name in reports.
    pub name: String,
    /// The submit request.
    pub submit: Template,
    /// Time between polls.
    pub poll_interval: Duration,
}

/// What a slot in the mix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// Template `n`.
    Request(usize),
    /// Flow `n`.
    Flow(usize),
}

/// Everything a load test sends.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where.
    pub target: Target,
    /// The requests.
    pub templates: Vec<Template>,
    /// The task flows.
    pub flows: Vec<Flow>,
    /// Cumulative weights and what they pick.
    mix: Vec<(u64, Pick)>,
}

/// How each request is built from the command line.
#[derive(Debug, Clone, Default)]
pub struct RequestOptions {
    /// Method.
    pub method: String,
    /// Extra headers, `Name: value`.
    pub headers: Vec<String>,
    /// The body.
    pub body: Vec<u8>,
    /// Send `Connection: close` on each request.
    pub close: bool,
}

impl Plan {
    /// One request to `target`, as the flags describe it.
    pub fn single(target: Target, options: &RequestOptions) -> Result<Plan, String> {
        let path = target.path_of(target.url.as_str())?;
        let template =
            encode(&target, "default", &options.method, &path, &options.headers, &options.body, options.close)?;
        Ok(Plan::from_parts(target, vec![(template, 1)], Vec::new()))
    }

    /// The URLs of `file` (`URL [weight]` a line; `#` comments), each with the flags' method, headers and body.
    pub fn urls(target: Target, file: &Path, options: &RequestOptions) -> Result<Plan, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let mut templates = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let at = |e: String| format!("{}:{}: {e}", file.display(), n + 1);
            let mut parts = line.split_whitespace();
            let url = parts.next().unwrap_or_default();
            let weight = match parts.next() {
                None => 1,
                Some(w) => w.parse::<u64>().ok().filter(|w| *w > 0).ok_or_else(|| at(format!("bad weight {w:?}")))?,
            };
            let path = target.path_of(url).map_err(at)?;
            let t = encode(&target, url, &options.method, &path, &options.headers, &options.body, options.close)
                .map_err(at)?;
            templates.push((t, weight));
        }
        if templates.is_empty() {
            return Err(format!("{}: no URLs in it", file.display()));
        }
        Ok(Plan::from_parts(target, templates, Vec::new()))
    }

    /// The requests and flows of a scenario file.
    pub fn scenario(target: Target, file: &Path, close: bool) -> Result<Plan, String> {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let scenario: Scenario = toml::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
        let dir = file.parent().unwrap_or(Path::new("."));
        let mut templates = Vec::new();
        for step in &scenario.request {
            let t = step
                .template(&target, dir, close)
                .map_err(|e| format!("{}: request {:?}: {e}", file.display(), step.name))?;
            templates.push((t, step.weight()?));
        }
        let mut flows = Vec::new();
        for task in &scenario.task {
            let at = |e: String| format!("{}: task {:?}: {e}", file.display(), task.step.name);
            let submit = task.step.template(&target, dir, close).map_err(at)?;
            let poll_interval = match &task.poll_interval {
                Some(d) => parse_duration(d).map_err(at)?,
                None => Duration::from_millis(100),
            };
            if poll_interval.is_zero() {
                return Err(at("poll_interval must be above zero".into()));
            }
            flows.push((Flow { name: task.step.name.clone(), submit, poll_interval }, task.step.weight()?));
        }
        if templates.is_empty() && flows.is_empty() {
            return Err(format!("{}: no [[request]] or [[task]] in it", file.display()));
        }
        Ok(Plan::from_parts(target, templates, flows))
    }

    fn from_parts(target: Target, templates: Vec<(Template, u64)>, flows: Vec<(Flow, u64)>) -> Plan {
        let mut mix = Vec::new();
        let mut total = 0;
        for (i, (_, w)) in templates.iter().enumerate() {
            total += w;
            mix.push((total, Pick::Request(i)));
        }
        for (i, (_, w)) in flows.iter().enumerate() {
            total += w;
            mix.push((total, Pick::Flow(i)));
        }
        Plan {
            target,
            templates: templates.into_iter().map(|(t, _)| t).collect(),
            flows: flows.into_iter().map(|(f, _)| f).collect(),
            mix,
        }
    }

    /// What to send next, for a random number `r`.
    pub fn pick(&self, r: u64) -> Pick {
        let total = self.mix.last().map_or(1, |(t, _)| *t);
        let at = r % total;
        let i = self.mix.partition_point(|(cum, _)| *cum <= at);
        self.mix.get(i).map_or(Pick::Request(0), |(_, p)| *p)
    }

    /// A `GET` of `path` on the target (task status polls).
    pub fn poll(&self, path: &str) -> Vec<u8> {
        encode_request("GET", path, &self.target.host, &[("User-Agent", USER_AGENT)], b"")
    }
}

const USER_AGENT: &str = concat!("pagelens-loadtest/", env!("CARGO_PKG_VERSION"));

fn encode(
    target: &Target,
    name: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: &[u8],
    close: bool,
) -> Result<Template, String> {
    let method = method.to_ascii_uppercase();
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
        return Err(format!("bad method {method:?}"));
    }
    let mut pairs: Vec<(&str, &str)> = Vec::new();
    for h in headers {
        let (n, v) = h.split_once(':').ok_or_else(|| format!("header {h:?} is not `Name: value`"))?;
        if n.trim().is_empty() || n.trim().bytes().any(|b| !b.is_ascii_graphic() || b == b':') {
            return Err(format!("bad header name in {h:?}"));
        }
        pairs.push((n.trim(), v.trim()));
    }
    if !pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case("user-agent")) {
        pairs.push(("User-Agent", USER_AGENT));
    }
    if close {
        pairs.push(("Connection", "close"));
    }
    Ok(Template {
        name: name.to_string(),
        bytes: encode_request(&method, path, &target.host, &pairs, body),
        head: method == "HEAD",
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    #[serde(default)]
    request: Vec<Step>,
    #[serde(default)]
    task: Vec<TaskStep>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    name: String,
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    body_file: Option<String>,
    weight: Option<u64>,
}

fn get() -> String {
    "GET".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskStep {
    #[serde(flatten)]
    step: Step,
    poll_interval: Option<String>,
}

impl Step {
    fn weight(&self) -> Result<u64, String> {
        match self.weight {
            None => Ok(1),
            Some(0) => Err(format!("{:?}: weight must be at least 1", self.name)),
            Some(w) => Ok(w),
        }
    }

    fn template(&self, target: &Target, dir: &Path, close: bool) -> Result<Template, String> {
        let body = match (&self.body, &self.body_file) {
            (Some(_), Some(_)) => return Err("give body or body_file, not both".into()),
            (Some(b), None) => b.clone().into_bytes(),
            (None, Some(f)) => {
                let path = dir.join(f);
                std::fs::read(&path).map_err(|e| format!("body_file {}: {e}", path.display()))?
            }
            (None, None) => Vec::new(),
        };
        let headers: Vec<String> = self.headers.iter().map(|(n, v)| format!("{n}: {v}")).collect();
        let path = target.path_of(&self.path)?;
        encode(target, &self.name, &self.method, &path, &headers, &body, close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::parse("http://127.0.0.1:9/base").unwrap()
    }

    #[test]
    fn weights_pick_in_proportion() {
        let t = target();
        let plan = Plan::from_parts(
            t.clone(),
            vec![
                (encode(&t, "a", "GET", "/a", &[], b"", false).unwrap(), 3),
                (encode(&t, "b", "GET", "/b", &[], b"", false).unwrap(), 1),
            ],
            Vec::new(),
        );
        let picks: Vec<Pick> = (0..8).map(|r| plan.pick(r)).collect();
        assert_eq!(picks.iter().filter(|p| **p == Pick::Request(0)).count(), 6);
        assert_eq!(picks.iter().filter(|p| **p == Pick::Request(1)).count(), 2);
    }

    #[test]
    fn requests_are_encoded_once_and_checked() {
        let t = target();
        let r = encode(&t, "x", "post", "/p", &["Content-Type: text/html".into()], b"<p>", true).unwrap();
        let text = String::from_utf8(r.bytes).unwrap();
        assert!(text.starts_with("POST /p HTTP/1.1\r\nHost: 127.0.0.1:9\r\nContent-Type: text/html\r\n"), "{text}");
        assert!(text.contains("Connection: close\r\n") && text.ends_with("Content-Length: 3\r\n\r\n<p>"), "{text}");
        assert!(encode(&t, "x", "GE T", "/", &[], b"", false).is_err());
        assert!(encode(&t, "x", "GET", "/", &["no colon".into()], b"", false).is_err());
        assert!(t.path_of("http://other.example/").is_err());
        assert_eq!(t.path_of("/q?x=1").unwrap(), "/q?x=1");
        assert!(Target::parse("ftp://127.0.0.1/").is_err());
    }
}

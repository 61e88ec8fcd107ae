//! The command line: `pagelens serve` and its flags.
//!
//! Parsing is two-phase: clap reads raw values (flags or `PAGELENS_*`
//! environment variables), then [`ServeArgs::config`] checks them together
//! and builds the server's configuration.

mod alerts_file;
pub mod units;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::input::InputLimits;
use crate::api::ApiConfig;
use crate::fetch::{Cidr, FetchConfig, Guard};
use crate::jobs::{Durability, EngineConfig};
use crate::metrics::alerts::AlertConfig;
use crate::ratelimit::{rate, RateLimitConfig};
use crate::reactor::{AccessLog, Limits, ServerConfig, TlsListen};
use crate::tls::Certificates;
use units::{parse_duration, parse_size};

/// pagelens: a non-blocking SEO analysis service.
#[derive(Debug, Parser)]
#[command(name = "pagelens", version, about, long_about = None)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The jobs of the binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service.
    Serve(Box<ServeArgs>),
    /// Analyse one page (a file, or `-` for stdin) and print the analysis as JSON.
    Analyze(Box<AnalyzeArgs>),
    /// Crawl a site and report what is wrong across its pages (broken links, duplicates, redirect chains,
    /// canonical and hreflang mistakes, orphans...). With --out, writes report.json, report.html, issues.csv
    /// and pages.csv there and prints a summary; without it, prints the report as JSON.
    Crawl(Box<CrawlArgs>),
    /// Load-test an HTTP/1.1 server (closed or open loop, coordinated omission corrected).
    ///
    /// Exit status: 0 all requests answered; 1 could not run (bad file, unreachable target);
    /// 2 bad flags; 3 ran, but some requests failed (or --find-max found no rate within the SLO).
    Loadtest(Box<LoadtestArgs>),
    /// Print a shell completion script, e.g. `pagelens completions bash > /etc/bash_completion.d/pagelens`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), e.g. `pagelens manpage > pagelens.1`.
    Manpage,
    /// Manage the API keys file of `serve --api-keys`.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `pagelens keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new random key: prints it once (keep it: the file holds only its SHA-256) and appends it to the file.
    Add {
        /// The key's name (in logs, metrics and task ownership).
        name: String,
        /// What it may do: a comma-separated list of submit, read, metrics, admin.
        #[arg(long, value_delimiter = ',', required = true, value_parser = parse_scope)]
        scopes: Vec<crate::auth::Scope>,
        /// Its own rate, e.g. 20/s.
        #[arg(long, value_parser = crate::ratelimit::parse_rate)]
        rate_limit: Option<f64>,
        /// Requests it may make a UTC day.
        #[arg(long)]
        daily_quota: Option<u64>,
        /// The keys file (made if missing).
        #[arg(long, env = "PAGELENS_API_KEYS")]
        file: PathBuf,
    },
    /// List the keys of the file: names, scopes and limits (never the keys).
    List {
        /// The keys file.
        #[arg(long, env = "PAGELENS_API_KEYS")]
        file: PathBuf,
    },
}

fn parse_scope(text: &str) -> Result<crate::auth::Scope, String> {
    crate::auth::Scope::ALL
        .into_iter()
        .find(|s| s.name() == text)
        .ok_or_else(|| format!("unknown scope {text:?}: submit, read, metrics or admin"))
}

/// Flags of `pagelens loadtest`.
#[derive(Debug, Args)]
pub struct LoadtestArgs {
    /// The target: http://host:port/path (https too). With --urls or --scenario, the origin their paths are on.
    pub url: String,

    /// Connections to keep open.
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,

    /// PEM file of CA certificates to trust for an https target, beside the web PKI roots (a staging or test CA).
    #[arg(long = "ca-file", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Resume TLS sessions on new connections. Off by default, so that each new connection (see --no-keepalive) costs the server a full handshake, as distinct clients do.
    #[arg(long)]
    pub tls_resume: bool,

    /// Threads (0: one per core, at most one per connection).
    #[arg(short = 't', long, default_value_t = 0)]
    pub threads: usize,

    /// How long to measure.
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,

    /// Send exactly this many measured requests instead of running for a duration.
    #[arg(short = 'n', long, conflicts_with = "duration")]
    pub requests: Option<u64>,

    /// Request method.
    #[arg(short = 'm', long, default_value = "GET")]
    pub method: String,

    /// A request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,

    /// A file whose bytes are the request body.
    #[arg(long)]
    pub body: Option<std::path::PathBuf>,

    /// A request without a complete response after this long counts as a timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Requests in flight per connection (HTTP/1.1 pipelining), at most N;
    /// without --rate a connection is topped up once half of N has room,
    /// several requests to a write.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,

    /// Close the connection after each request (keep-alive is the default).
    #[arg(long)]
    pub no_keepalive: bool,

    /// Unmeasured load at full rate before measuring.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Open loop: this many requests per second, spread evenly; latency counts from the intended send time.
    #[arg(short = 'R', long)]
    pub rate: Option<f64>,

    /// With --rate: halve the rate on 429, 503 and timeouts; recover gradually.
    #[arg(long, requires = "rate")]
    pub adaptive: bool,

    /// Raise the rate (open loop) or the active connections (closed loop) from zero over this long first.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub ramp: Duration,

    /// A scenario file (TOML): weighted `[[request]]`s and `[[task]]` flows (submit, poll until done).
    #[arg(long, conflicts_with = "urls")]
    pub scenario: Option<std::path::PathBuf>,

    /// A file of URLs on the target, one a line, each optionally followed by a weight.
    #[arg(long)]
    pub urls: Option<std::path::PathBuf>,

    /// Step the open-loop rate up (from --rate, default 1000) until p99 breaks --slo-p99 or errors appear; report the knee.
    #[arg(long, requires = "slo_p99")]
    pub find_max: bool,

    /// The p99 latency a rate must keep to pass, for --find-max.
    #[arg(long, value_parser = parse_duration)]
    pub slo_p99: Option<Duration>,

    /// Most steps of --find-max (each lasts --duration).
    #[arg(long, default_value_t = 8)]
    pub max_steps: usize,

    /// Print the detailed percentile spectrum.
    #[arg(long)]
    pub latency: bool,

    /// Write the whole report as JSON to this file.
    #[arg(long)]
    pub json: Option<std::path::PathBuf>,

    /// Write the HDR percentile distribution (HdrHistogram's .hgrm) to this file.
    #[arg(long)]
    pub hgrm: Option<std::path::PathBuf>,
}

impl LoadtestArgs {
    /// The load test's settings; reads the body, URL and scenario files.
    pub fn config(&self) -> Result<crate::loadtest::LoadConfig, String> {
        use crate::loadtest::plan::{Plan, RequestOptions, Target};
        if self.connections == 0 {
            return Err("-c must be at least 1".into());
        }
        if self.pipeline == 0 {
            return Err("--pipeline must be at least 1".into());
        }
        if let Some(rate) = self.rate {
            if !(rate > 0.0 && rate.is_finite()) {
                return Err("--rate must be a positive number".into());
            }
        }
        if self.requests == Some(0) {
            return Err("-n must be at least 1".into());
        }
        if self.duration.is_zero() && self.requests.is_none() {
            return Err("-d must be above zero".into());
        }
        let target = Target::parse(&self.url)?;
        let body = match &self.body {
            Some(path) => std::fs::read(path).map_err(|e| format!("--body {}: {e}", path.display()))?,
            None => Vec::new(),
        };
        let options = RequestOptions {
            method: self.method.clone(),
            headers: self.headers.clone(),
            body,
            close: self.no_keepalive,
        };
        let plan = match (&self.scenario, &self.urls) {
            (Some(file), _) => Plan::scenario(target, file, self.no_keepalive)?,
            (None, Some(file)) => Plan::urls(target, file, &options)?,
            (None, None) => Plan::single(target, &options)?,
        };
        if !plan.flows.is_empty() && self.pipeline > 1 {
            return Err(
                "task flows poll on their connection: use --pipeline 1 with a scenario that has [[task]]s".into()
            );
        }
        let cores = crate::system::cores();
        let extra_roots = match &self.ca_file {
            Some(path) => crate::tls::read_certificates(path, "--ca-file")?,
            None => Vec::new(),
        };
        Ok(crate::loadtest::LoadConfig {
            plan,
            extra_roots,
            tls_resume: self.tls_resume,
            threads: if self.threads == 0 { cores } else { self.threads },
            connections: self.connections,
            duration: self.duration,
            requests: self.requests,
            rate: self.rate,
            adaptive: self.adaptive,
            pipeline: self.pipeline,
            timeout: self.timeout,
            warmup: self.warmup,
            ramp: self.ramp,
            // SAFETY: isatty only inspects the descriptor.
            progress: unsafe { libc::isatty(2) } == 1,
            stop: Default::default(),
        })
    }
}

/// Flags of `pagelens analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// The page: a file, an http:// or https:// URL, or `-` to read standard input.
    pub page: String,

    /// Where the page was published, so that links, canonical and <base> resolve as for the live page.
    #[arg(long)]
    pub url: Option<url::Url>,

    /// Pretty-print the JSON for people.
    #[arg(long)]
    pub pretty: bool,

    /// Leave out the list of links (counts stay).
    #[arg(long)]
    pub no_links: bool,

    /// Leave out the list of images (counts stay).
    #[arg(long)]
    pub no_images: bool,

    /// Fetching, when the page is a URL.
    #[command(flatten)]
    pub fetch: FetchArgs,

    /// Largest page accepted, e.g. 10MiB.
    #[arg(long, default_value = "10MiB", value_parser = parse_size)]
    pub max_page_bytes: usize,
}

/// Flags of `pagelens crawl`.
#[derive(Debug, Args)]
pub struct CrawlArgs {
    /// Where the crawl starts (http:// or https://).
    pub url: String,

    /// Most pages fetched (redirects and other files included).
    #[arg(long, default_value_t = 10_000)]
    pub max_pages: usize,

    /// Most clicks from the start page.
    #[arg(long, default_value_t = 10)]
    pub max_depth: u16,

    /// Which URLs are the site's: host (the start URL's), domain (and its subdomains) or prefix (under the start URL's path).
    #[arg(long, default_value = "host", value_parser = parse_crawl_scope)]
    pub scope: crate::crawl::urls::Scope,

    /// Crawl only URLs matching this pattern (`*` any characters, `^` start, `$` end); repeatable.
    #[arg(long)]
    pub include: Vec<String>,

    /// Do not crawl URLs matching this pattern; repeatable.
    #[arg(long)]
    pub exclude: Vec<String>,

    /// Requests a second to the site; 0 for no limit (only for addresses opened with --fetch-allow or --allow-private-fetch).
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,

    /// Most pages of one URL shape (the path with its numbers as N), against endless calendars.
    #[arg(long, default_value_t = 10_000)]
    pub max_per_pattern: usize,

    /// Fetch what robots.txt disallows, and ignore its Crawl-delay.
    #[arg(long)]
    pub ignore_robots: bool,

    /// Do not read sitemaps (robots.txt's Sitemap: lines, /sitemap.xml).
    #[arg(long)]
    pub no_sitemaps: bool,

    /// Do not check links to other sites.
    #[arg(long)]
    pub no_external: bool,

    /// Report pages more clicks than this from the start page.
    #[arg(long, default_value_t = 4)]
    pub deep_after: u16,

    /// Report pages whose first byte comes later than this (ms).
    #[arg(long, default_value_t = 800.0)]
    pub slow_first_byte_ms: f64,

    /// Write report.json, report.html, issues.csv and pages.csv into this folder (made if missing).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Fetching.
    #[command(flatten)]
    pub fetch: FetchArgs,
}

impl CrawlArgs {
    /// The crawl's settings.
    pub fn settings(&self) -> crate::crawl::CrawlSettings {
        crate::crawl::CrawlSettings {
            url: self.url.clone(),
            max_pages: self.max_pages,
            max_depth: self.max_depth,
            scope: self.scope,
            include: self.include.clone(),
            exclude: self.exclude.clone(),
            rate: self.rate,
            respect_robots: !self.ignore_robots,
            sitemaps: !self.no_sitemaps,
            max_per_pattern: self.max_per_pattern,
            check_external: !self.no_external,
            deep_after: self.deep_after,
            slow_first_byte_ms: self.slow_first_byte_ms,
            ..crate::crawl::CrawlSettings::default()
        }
    }
}

fn parse_crawl_scope(text: &str) -> Result<crate::crawl::urls::Scope, String> {
    serde_json::from_value(serde_json::Value::String(text.to_ascii_lowercase()))
        .map_err(|_| format!("{text:?}: the scope is host, domain or prefix"))
}

/// Flags of `pagelens serve`. Each can also be set through the environment
/// variable named in its help; a flag on the command line wins.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address and port to listen on.
    #[arg(long, env = "PAGELENS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// PEM certificate chain to serve TLS with (with --tls-key): on --tls-listen if given, else on --listen itself. Read again on SIGHUP without dropping connections.
    #[arg(long, env = "PAGELENS_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "PAGELENS_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Write one line a response (time, client, method, target, status, body bytes, duration) to FILE, appending, or `-` for standard output; JSON lines with --log-format json. Written by a thread of its own (never blocking a reactor); lines past 65,536 waiting are dropped and counted. Off by default.
    #[arg(long, env = "PAGELENS_ACCESS_LOG", value_name = "FILE")]
    pub access_log: Option<PathBuf>,

    /// A keys file (TOML; see `pagelens keys add`): with it every route but /livez and /readyz needs `Authorization: Bearer KEY` with the route's scope, and a task is seen only by the key that submitted it (and admin keys). Read again on SIGHUP. Without it the service is open.
    #[arg(long, env = "PAGELENS_API_KEYS", value_name = "FILE")]
    pub api_keys: Option<PathBuf>,

    /// How long an analysis of a URL is answered again from the result cache without a fetch (then revalidated with the origin); 0 turns the cache off.
    #[arg(long, env = "PAGELENS_CACHE_TTL", default_value = "1h", value_parser = parse_duration)]
    pub cache_ttl: Duration,

    /// Most bytes of analyses the result cache keeps (in memory, and again in a SQLite store); past it the oldest go.
    #[arg(long, env = "PAGELENS_CACHE_MAX_BYTES", default_value = "256MiB", value_parser = parse_size)]
    pub cache_max_bytes: usize,

    /// A separate address for TLS, so that --listen stays plain HTTP (e.g. for probes on a private port).
    #[arg(long, env = "PAGELENS_TLS_LISTEN", value_name = "ADDR", requires = "tls_cert")]
    pub tls_listen: Option<SocketAddr>,

    /// Reactor (event loop) threads; 0 means one per available core.
    #[arg(long, env = "PAGELENS_REACTORS", default_value_t = 0)]
    pub reactors: usize,

    /// How the reactors talk to the kernel: epoll, io_uring (falls back to epoll, with a log line, where the kernel
    /// refuses it), or auto (epoll: io_uring measured no faster; see the README).
    #[arg(long, env = "PAGELENS_IO_ENGINE", default_value = "auto", value_parser = ["auto", "epoll", "io_uring"])]
    pub io_engine: String,

    /// Connections open at once over all reactors; past it new ones get 503.
    #[arg(long, env = "PAGELENS_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,

    /// Time a client has to send a full request head (e.g. 10s, 500ms).
    #[arg(long, env = "PAGELENS_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub header_timeout: Duration,

    /// Time a client has to send a request body once its head arrived.
    #[arg(long, env = "PAGELENS_BODY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// How long an idle keep-alive connection is kept open.
    #[arg(long, env = "PAGELENS_IDLE_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// How long a response write may make no progress before the connection is dropped.
    #[arg(long, env = "PAGELENS_WRITE_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub write_timeout: Duration,

    /// On SIGTERM or SIGINT, how long in-flight requests get to finish.
    #[arg(long, env = "PAGELENS_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Log lines on standard error: `text` (timestamp, level, message) or `json` (one object a line).
    #[arg(long, env = "PAGELENS_LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// On SIGTERM or SIGINT, how long to keep accepting first, answering 503 on /readyz and closing every connection after its response, so a load balancer can move clients away.
    #[arg(long, env = "PAGELENS_DRAIN_GRACE", default_value = "0s", value_parser = parse_duration)]
    pub drain_grace: Duration,

    /// Largest request head (request line and headers), e.g. 16KiB; larger is 431.
    #[arg(long, env = "PAGELENS_MAX_HEADER_BYTES", default_value = "16KiB", value_parser = parse_size)]
    pub max_header_bytes: usize,

    /// Largest request body, e.g. 10MiB; larger is 413.
    #[arg(long, env = "PAGELENS_MAX_BODY_BYTES", default_value = "10MiB", value_parser = parse_size)]
    pub max_body_bytes: usize,

    /// Worker threads for analysis; 0 means one per available core.
    #[arg(long, env = "PAGELENS_WORKERS", default_value_t = 0)]
    pub workers: usize,

    /// Most tasks (and batch items) waiting for a worker; past it, 503 with Retry-After.
    #[arg(long, env = "PAGELENS_QUEUE_CAPACITY", default_value_t = 10_000)]
    pub queue_capacity: usize,

    /// How long POST /analyze waits for its result before answering 202 with a task.
    #[arg(long, env = "PAGELENS_SYNC_WAIT", default_value = "10s", value_parser = parse_duration)]
    pub sync_wait: Duration,

    /// Timeout of a task that asks for none.
    #[arg(long, env = "PAGELENS_TASK_TIMEOUT", default_value = "60s", value_parser = parse_duration)]
    pub task_timeout: Duration,

    /// Longest timeout (timeout_ms) a task may ask for.
    #[arg(long, env = "PAGELENS_MAX_TASK_TIMEOUT", default_value = "10m", value_parser = parse_duration)]
    pub max_task_timeout: Duration,

    /// How long finished tasks and their results are kept.
    #[arg(long, env = "PAGELENS_RESULT_TTL", default_value = "1h", value_parser = parse_duration)]
    pub result_ttl: Duration,

    /// Where tasks are kept: `sqlite:PATH` (durable; the folder is made if missing), `memory` (lost on exit), or `redis://HOST:PORT/DB` (shared: every instance on it takes, runs and answers for every task).
    #[arg(long, env = "PAGELENS_STORE", default_value = "sqlite:pagelens-data/pagelens.db", value_parser = parse_store)]
    pub store: StoreSpec,

    /// With a Redis store: the password, when the URL has none.
    #[arg(long, env = "PAGELENS_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// With a `rediss://` store: the CA (PEM) its certificate is checked against, instead of the public roots.
    #[arg(long, env = "PAGELENS_REDIS_CA")]
    pub redis_ca: Option<std::path::PathBuf>,

    /// With a Redis store: a task another instance has held this long without a sign of life is taken over.
    #[arg(long, env = "PAGELENS_RECLAIM_AFTER", default_value = "30s", value_parser = parse_duration)]
    pub reclaim_after: Duration,

    /// With a Redis store: a task started this many times without ending ends `poison-task` instead of running again.
    #[arg(long, env = "PAGELENS_MAX_DELIVERIES", default_value_t = 3)]
    pub max_deliveries: u32,

    /// What an accepted task survives: `process` (a crash of the process) or `power` (a power loss: an fsync every commit).
    #[arg(long, env = "PAGELENS_DURABILITY", default_value = "process", value_parser = parse_durability)]
    pub durability: Durability,

    /// Most bytes of task input waiting for a worker, e.g. 512MiB; past it, 503 with Retry-After.
    #[arg(long, env = "PAGELENS_MAX_QUEUED_BYTES", default_value = "512MiB", value_parser = parse_size)]
    pub max_queued_bytes: usize,

    /// With --store memory: most bytes of finished tasks' results kept; the oldest are forgotten first.
    #[arg(long, env = "PAGELENS_MAX_RESULT_BYTES", default_value = "1GiB", value_parser = parse_size)]
    pub max_result_bytes: usize,

    /// Most items in one POST /bulk/analyze/async; more is 413.
    #[arg(long, env = "PAGELENS_MAX_BULK_ITEMS", default_value_t = 1000)]
    pub max_bulk_items: usize,

    /// Record no metrics (GET /metrics answers 404); for measuring their cost.
    #[arg(long, env = "PAGELENS_NO_METRICS")]
    pub no_metrics: bool,

    /// Alert when a route's p99 latency over the last second exceeds this.
    #[arg(long, env = "PAGELENS_ALERT_P99", default_value = "2s", value_parser = parse_duration)]
    pub alert_p99: Duration,

    /// Alert when the share of 5xx responses over the window exceeds this (0-1).
    #[arg(long, env = "PAGELENS_ALERT_ERROR_RATE", default_value_t = 0.01)]
    pub alert_error_rate: f64,

    /// Alert when the share of the task queue in use exceeds this (0-1).
    #[arg(long, env = "PAGELENS_ALERT_QUEUE_FILL", default_value_t = 0.8)]
    pub alert_queue_fill: f64,

    /// Alert when the share of --max-connections in use exceeds this (0-1).
    #[arg(long, env = "PAGELENS_ALERT_CONNECTION_FILL", default_value_t = 0.9)]
    pub alert_connection_fill: f64,

    /// Alert when the share of ended tasks that timed out over the window exceeds this (0-1).
    #[arg(long, env = "PAGELENS_ALERT_TIMEOUT_RATE", default_value_t = 0.05)]
    pub alert_timeout_rate: f64,

    /// How long a condition must hold before its alert fires.
    #[arg(long, env = "PAGELENS_ALERT_FOR", default_value = "30s", value_parser = parse_duration)]
    pub alert_for: Duration,

    /// The sliding window over which alert rates are computed.
    #[arg(long, env = "PAGELENS_ALERT_WINDOW", default_value = "60s", value_parser = parse_duration)]
    pub alert_window: Duration,

    /// A TOML file of alert rule settings (thresholds, `for`, enabled) and a webhook URL, over the --alert-* flags.
    #[arg(long, env = "PAGELENS_ALERTS_FILE")]
    pub alerts_file: Option<std::path::PathBuf>,

    /// Fetching pages by URL.
    #[command(flatten)]
    pub fetch: FetchArgs,

    /// Key for the HMAC-SHA256 signature of callbacks (header X-Pagelens-Signature: sha256=HEX). Unsigned without it.
    #[arg(long, env = "PAGELENS_CALLBACK_SECRET", hide_env_values = true)]
    pub callback_secret: Option<String>,

    /// Requests a client (an address; IPv6 by /64) may make, e.g. 20/s or 600/min; past it, 429 with Retry-After and RateLimit headers. Probes and /metrics are not limited. Off by default.
    #[arg(long, env = "PAGELENS_RATE_LIMIT", value_name = "RATE", value_parser = crate::ratelimit::parse_rate)]
    pub rate_limit: Option<f64>,

    /// A separate rate for submissions (POST /analyze, /analyze/async, /bulk/analyze/async); without it they share --rate-limit.
    #[arg(long, env = "PAGELENS_RATE_LIMIT_SUBMIT", value_name = "RATE", value_parser = crate::ratelimit::parse_rate)]
    pub rate_limit_submit: Option<f64>,

    /// Requests a client may make at once before the rate applies; default one second's worth.
    #[arg(long, env = "PAGELENS_RATE_BURST")]
    pub rate_burst: Option<u32>,

    /// Clients the rate limiter remembers (16 bytes each, fixed at start); past it the least recently seen are forgotten.
    #[arg(long, env = "PAGELENS_RATE_LIMIT_CLIENTS", default_value_t = 65_536)]
    pub rate_limit_clients: usize,

    /// Proxies (CIDR) whose Forwarded / X-Forwarded-For header names the client for rate limits; repeatable (the variable takes a comma-separated list). Without it the peer address is the client.
    #[arg(long = "trust-proxy", value_name = "CIDR", env = "PAGELENS_TRUST_PROXY", value_delimiter = ',', value_parser = parse_cidr)]
    pub trust_proxy: Vec<Cidr>,
}

/// Flags of the outbound client.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// Allow fetching private, loopback, link-local and other special-purpose addresses. For local use and tests only.
    #[arg(long, env = "PAGELENS_ALLOW_PRIVATE_FETCH")]
    pub allow_private_fetch: bool,

    /// Open one address range (CIDR, e.g. 10.1.0.0/16) to fetching; repeatable (the variable takes a comma-separated list). Nothing else is opened.
    #[arg(long = "fetch-allow", value_name = "CIDR", env = "PAGELENS_FETCH_ALLOW", value_delimiter = ',', value_parser = parse_cidr)]
    pub fetch_allow: Vec<Cidr>,

    /// Ports URLs may name: a comma-separated list, or `any`.
    #[arg(long, env = "PAGELENS_FETCH_PORTS", default_value = "80,443,8080,8443", value_parser = parse_ports)]
    pub fetch_ports: Ports,

    /// PEM file of extra CA certificates to trust beside the web PKI roots.
    #[arg(long, env = "PAGELENS_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Redirects followed per fetch.
    #[arg(long, env = "PAGELENS_MAX_REDIRECTS", default_value_t = 5)]
    pub max_redirects: u32,

    /// Retries of transient fetch failures (refused, reset, timeouts, 429, 502-504).
    #[arg(long, env = "PAGELENS_FETCH_RETRIES", default_value_t = 2)]
    pub fetch_retries: u32,

    /// TCP connect timeout (and, separately, the TLS handshake's).
    #[arg(long, env = "PAGELENS_FETCH_CONNECT_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub fetch_connect_timeout: Duration,

    /// Wait for the first byte of a response.
    #[arg(long, env = "PAGELENS_FETCH_FIRST_BYTE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub fetch_first_byte_timeout: Duration,

    /// A whole fetch, redirects and retries included.
    #[arg(long, env = "PAGELENS_FETCH_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub fetch_timeout: Duration,

    /// Largest response body, as sent and as decoded.
    #[arg(long, env = "PAGELENS_FETCH_MAX_BYTES", default_value = "10MiB", value_parser = parse_size)]
    pub fetch_max_bytes: usize,

    /// Concurrent connections per origin.
    #[arg(long, env = "PAGELENS_FETCH_PER_ORIGIN", default_value_t = 6)]
    pub fetch_per_origin: usize,

    /// Requests per second per origin; halved on 429/503 and recovered gradually.
    #[arg(long, env = "PAGELENS_FETCH_RATE", default_value_t = 20.0)]
    pub fetch_rate: f64,

    /// How long an idle upstream connection is kept for reuse.
    #[arg(long, env = "PAGELENS_FETCH_IDLE_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub fetch_idle_timeout: Duration,

    /// Open a new connection for every fetch (for comparison; keep-alive is the default).
    #[arg(long, env = "PAGELENS_FETCH_NO_KEEPALIVE")]
    pub fetch_no_keepalive: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `2026-11-30T01:02:03.456Z WARN message`.
    Text,
    /// `{"ts": ..., "level": ..., "msg": ...}`.
    Json,
}

/// A queue shared with other instances, and its settings.
pub type Shared = (std::sync::Arc<dyn crate::jobs::queue::TaskQueue>, crate::jobs::engine::SharedConfig);

/// Where tasks are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSpec {
    /// In memory.
    Memory,
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A Redis server, shared with other instances.
    Redis(String),
}

fn parse_store(text: &str) -> Result<StoreSpec, String> {
    match text.split_once(':') {
        _ if text == "memory" => Ok(StoreSpec::Memory),
        Some(("sqlite", path)) if !path.is_empty() => Ok(StoreSpec::Sqlite(path.into())),
        Some(("redis" | "rediss", _)) => Ok(StoreSpec::Redis(text.to_string())),
        _ => Err(format!("{text:?}: give sqlite:PATH, memory, redis://HOST:PORT/DB or rediss://HOST:PORT/DB")),
    }
}

fn parse_durability(text: &str) -> Result<Durability, String> {
    match text {
        "process" => Ok(Durability::Process),
        "power" => Ok(Durability::Power),
        _ => Err(format!("{text:?}: give process or power")),
    }
}

impl ServeArgs {
    /// Opens the task store the flags name, and the queue it shares with
    /// other instances, if it is one that does.
    pub fn open_store(&self) -> Result<(crate::jobs::Store, Option<Shared>), String> {
        Ok(match &self.store {
            StoreSpec::Memory => (std::sync::Arc::new(crate::jobs::MemoryStore::new(self.max_result_bytes)), None),
            StoreSpec::Sqlite(path) => (
                std::sync::Arc::new(
                    crate::jobs::SqliteStore::open(path, self.durability).map_err(|e| format!("--store: {e}"))?,
                ),
                None,
            ),
            StoreSpec::Redis(url) => {
                let password = self.redis_password.as_deref();
                let ca = match &self.redis_ca {
                    Some(path) => Some(std::fs::read(path).map_err(|e| format!("--redis-ca {}: {e}", path.display()))?),
                    None => None,
                };
                // The queue bounds hold for the cluster: they are Redis's.
                let redis = crate::jobs::RedisStore::open(url, password, "pagelens:", ca)
                    .map_err(|e| format!("--store: {e}"))?
                    .limit(self.queue_capacity, self.max_queued_bytes);
                let redis = std::sync::Arc::new(redis);
                let config = crate::jobs::engine::SharedConfig {
                    reclaim_after: self.reclaim_after,
                    max_deliveries: self.max_deliveries.max(1),
                };
                (redis.clone(), Some((redis, config)))
            }
        })
    }
}

/// Allowed ports: a list, or any.
#[derive(Debug, Clone)]
pub struct Ports(Option<Vec<u16>>);

fn parse_ports(text: &str) -> Result<Ports, String> {
    if text.eq_ignore_ascii_case("any") {
        return Ok(Ports(None));
    }
    let ports: Result<Vec<u16>, _> = text.split(',').map(|p| p.trim().parse::<u16>()).collect();
    match ports {
        Ok(ports) if !ports.is_empty() && !ports.contains(&0) => Ok(Ports(Some(ports))),
        _ => Err(format!("{text:?}: give ports 1-65535 separated by commas, or `any`")),
    }
}

fn parse_cidr(text: &str) -> Result<Cidr, String> {
    text.parse()
}

impl FetchArgs {
    /// The fetcher's configuration; reads `--ca-file`.
    pub fn config(&self) -> Result<FetchConfig, String> {
        let extra_roots = match &self.ca_file {
            None => Vec::new(),
            Some(path) => crate::tls::read_certificates(path, "--ca-file")?,
        };
        if !(self.fetch_rate > 0.0 && self.fetch_rate.is_finite()) {
            return Err("--fetch-rate must be a positive number".into());
        }
        if self.fetch_per_origin == 0 {
            return Err("--fetch-per-origin must be at least 1".into());
        }
        Ok(FetchConfig {
            guard: Guard {
                allow_private: self.allow_private_fetch,
                allow: self.fetch_allow.clone(),
                ports: self.fetch_ports.0.clone(),
            },
            connect_timeout: self.fetch_connect_timeout,
            first_byte_timeout: self.fetch_first_byte_timeout,
            total_timeout: self.fetch_timeout,
            max_redirects: self.max_redirects,
            retries: self.fetch_retries,
            max_response_bytes: self.fetch_max_bytes,
            per_origin_connections: self.fetch_per_origin,
            per_origin_rate: self.fetch_rate,
            idle_timeout: self.fetch_idle_timeout,
            keep_alive: !self.fetch_no_keepalive,
            extra_roots,
            ..FetchConfig::default()
        })
    }
}

/// Everything `serve` needs, checked.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The reactors.
    pub server: ServerConfig,
    /// The task engine.
    pub engine: EngineConfig,
    /// The API layer.
    pub api: ApiConfig,
    /// Alert rules.
    pub alerts: AlertConfig,
    /// The outbound client.
    pub fetch: FetchConfig,
    /// Where alert changes are POSTed (from `--alerts-file`).
    pub alert_webhook: Option<url::Url>,
    /// The certificate served over TLS, reloaded on SIGHUP.
    pub certificates: Option<Arc<Certificates>>,
    /// The result cache of URL analyses, unless off.
    pub cache: Option<Arc<crate::api::cache::ResultCache>>,
}

impl ServeArgs {
    /// Checks the flags together and builds the configuration.
    pub fn config(&self) -> Result<ServeConfig, String> {
        let cores = crate::system::cores();
        if self.max_connections == 0 {
            return Err("--max-connections must be at least 1".into());
        }
        if self.max_header_bytes < 256 {
            return Err("--max-header-bytes must be at least 256 bytes".into());
        }
        for (name, value) in [
            ("--header-timeout", self.header_timeout),
            ("--body-timeout", self.body_timeout),
            ("--idle-timeout", self.idle_timeout),
            ("--write-timeout", self.write_timeout),
            ("--sync-wait", self.sync_wait),
            ("--task-timeout", self.task_timeout),
            ("--max-task-timeout", self.max_task_timeout),
        ] {
            if value.is_zero() {
                return Err(format!("{name} must be more than zero"));
            }
        }
        if self.queue_capacity == 0 || self.max_bulk_items == 0 {
            return Err("--queue-capacity and --max-bulk-items must be at least 1".into());
        }
        if self.task_timeout > self.max_task_timeout {
            return Err("--task-timeout must not exceed --max-task-timeout".into());
        }
        let engine = EngineConfig {
            workers: if self.workers == 0 { cores } else { self.workers },
            queue_capacity: self.queue_capacity,
            default_timeout: self.task_timeout,
            max_timeout: self.max_task_timeout,
            result_ttl: self.result_ttl,
            max_queued_bytes: self.max_queued_bytes,
        };
        let api = ApiConfig {
            sync_wait: self.sync_wait,
            limits: InputLimits { max_timeout: self.max_task_timeout, max_bulk_items: self.max_bulk_items },
            callback_secret: self.callback_secret.as_ref().map(|s| s.as_bytes().into()),
            keys: match &self.api_keys {
                Some(path) => Some(Arc::new(crate::auth::Keys::load(path)?)),
                None => None,
            },
            rate_limits: RateLimitConfig {
                submit: self.rate_limit_submit.or(self.rate_limit).map(|r| rate(r, self.rate_burst)),
                read: self.rate_limit.map(|r| rate(r, self.rate_burst)),
                clients: self.rate_limit_clients.max(1),
                trust_proxy: self.trust_proxy.clone(),
            },
        };
        let certificates = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(Certificates::load(cert, key)?),
            // clap's `requires` lets neither come alone.
            _ => None,
        };
        let tls = match &certificates {
            Some(certs) => Some(TlsListen { addr: self.tls_listen, config: certs.server_config()? }),
            None => None,
        };
        let access_log = match &self.access_log {
            Some(path) => Some(
                AccessLog::open(path, self.log_format == LogFormat::Json)
                    .map_err(|e| format!("--access-log {}: {e}", path.display()))?,
            ),
            None => None,
        };
        let server = ServerConfig {
            tls,
            access_log,
            listen: self.listen,
            reactors: if self.reactors == 0 { cores } else { self.reactors },
            max_connections: self.max_connections,
            io_engine: self.io_engine.parse()?,
            shutdown_timeout: self.shutdown_timeout,
            limits: Limits {
                header_timeout: self.header_timeout,
                body_timeout: self.body_timeout,
                idle_timeout: self.idle_timeout,
                write_timeout: self.write_timeout,
                max_header_bytes: self.max_header_bytes,
                max_body_bytes: self.max_body_bytes,
            },
        };
        for (name, value) in [
            ("--alert-error-rate", self.alert_error_rate),
            ("--alert-queue-fill", self.alert_queue_fill),
            ("--alert-connection-fill", self.alert_connection_fill),
            ("--alert-timeout-rate", self.alert_timeout_rate),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(format!("{name} is a share: from 0 to 1"));
            }
        }
        let alerts = AlertConfig {
            p99: self.alert_p99,
            error_rate: self.alert_error_rate,
            queue_fill: self.alert_queue_fill,
            connection_fill: self.alert_connection_fill,
            timeout_rate: self.alert_timeout_rate,
            hold: self.alert_for,
            window: self.alert_window,
            rules: Default::default(),
        };
        let mut alerts = alerts;
        let alert_webhook = match &self.alerts_file {
            Some(path) => alerts_file::apply(path, &mut alerts)?,
            None => None,
        };
        let fetch = self.fetch.config()?;
        if let Some(hook) = &alert_webhook {
            fetch.guard.check_url(hook).map_err(|e| format!("--alerts-file webhook: {e}"))?;
        }
        let cache = (!self.cache_ttl.is_zero())
            .then(|| Arc::new(crate::api::cache::ResultCache::new(self.cache_ttl, self.cache_max_bytes)));
        Ok(ServeConfig { server, engine, api, alerts, fetch, alert_webhook, certificates, cache })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// The README promises a `PAGELENS_*` variable for every flag of
    /// `serve`: a flag without one would ignore a set variable silently.
    #[test]
    fn every_serve_flag_has_an_environment_variable() {
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve exists");
        for arg in serve.get_arguments() {
            let name = arg.get_id().as_str();
            if matches!(name, "help" | "version") {
                continue;
            }
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert!(env.as_deref().is_some_and(|e| e.starts_with("PAGELENS_")), "--{name} has no PAGELENS_ variable");
        }
    }
}

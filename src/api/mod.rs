//! The HTTP API of `pagelens serve`: which path means what.
//!
//! [`App`] is the [`Service`] the reactors call. Handlers run on a reactor
//! thread and answer at once from memory; anything that takes time
//! (parsing a body, analysing a page) goes to the pool through the engine.

mod analyze;
mod bulk;
pub mod cache;
pub mod crawl;
mod health;
pub mod input;
mod intake;
mod json_string;
pub mod robots;
mod tasks;
mod websocket;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Denied, Keys, Scope};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::{Match, Params, Router};
use crate::jobs::Engine;
use crate::metrics::Metrics;
use crate::ratelimit::{Class, RateLimitConfig, RateLimiter, Verdict};
use crate::reactor::{Context, Reply, Service};
use input::InputLimits;

/// `429 rate-limited` for a refused `verdict`, with `Retry-After` and the
/// draft's `RateLimit-Policy` / `RateLimit` fields.
fn too_many(verdict: &Verdict, detail: &str) -> Response {
    Response::problem(429, "rate-limited", detail)
        .header("Retry-After", verdict.retry_after().to_string())
        .header("RateLimit-Policy", verdict.policy())
        .header("RateLimit", verdict.state())
}

/// The scope a route needs with API keys on; `None`: open to all
/// (the probes).
fn scope_of(method: &str, route: &str) -> Option<Scope> {
    match (method, route) {
        // The dashboard's page holds no data with keys on: it asks for a
        // key and sends it with each of its requests (a browser sends none
        // when it opens a page).
        (_, "/livez" | "/readyz" | "/dashboard") => None,
        (_, "/metrics" | "/non-blocking/metrics" | "/performance/real-time" | "/alerts") => Some(Scope::Metrics),
        ("POST", "/analyze" | "/analyze/async" | "/bulk/analyze/async" | "/tasks/{id}/revoke" | "/crawl") => {
            Some(Scope::Submit)
        }
        ("DELETE", "/tasks/{id}" | "/crawl/{id}") => Some(Scope::Submit),
        _ => Some(Scope::Read),
    }
}

/// The route label of a request no route matched.
const UNMATCHED: &str = "unmatched";

/// A request handler: the app, the request, its path parameters, the context.
type Handler = fn(&App, &Request<'_>, Params<'_>, &mut Context<'_>) -> Reply;

/// Settings of the API layer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// How long `POST /analyze` waits before answering `202` with a task.
    pub sync_wait: Duration,
    /// Limits on request bodies.
    pub limits: InputLimits,
    /// The key callbacks are signed with (`--callback-secret`).
    pub callback_secret: Option<Arc<[u8]>>,
    /// Per-client rate limits (none by default).
    pub rate_limits: RateLimitConfig,
    /// API keys (`--api-keys`); `None`: the service is open.
    pub keys: Option<Arc<Keys>>,
}

/// The pagelens HTTP API.
#[derive(Debug)]
pub struct App {
    router: Router<Handler>,
    engine: Arc<Engine>,
    intake: intake::Intake,
    pages: work::Pages,
    config: ApiConfig,
    metrics: Option<Arc<Metrics>>,
    limiter: Option<Arc<RateLimiter>>,
}

impl App {
    /// The API with all its routes, running tasks on `engine` (started
    /// with [`work::handlers`] of the same `pages`); starts the intake thread.
    pub fn new(engine: Arc<Engine>, pages: work::Pages, config: ApiConfig) -> std::io::Result<Self> {
        let router = Router::new()
            .route("GET", "/livez", health::livez as Handler)
            .route("GET", "/readyz", health::readyz)
            .route("GET", "/health", health::health)
            .route("GET", "/metrics", health::metrics)
            .route("GET", "/non-blocking/metrics", health::snapshot)
            .route("GET", "/performance/real-time", health::real_time)
            .route("GET", "/alerts", health::alerts)
            .route("GET", "/dashboard", health::dashboard)
            .route("GET", "/openapi.json", health::openapi)
            .route("POST", "/analyze", analyze::analyze)
            .route("POST", "/analyze/async", analyze::analyze_async)
            .route("GET", "/analyze/status/{id}", tasks::status)
            .route("GET", "/analyze/status/{id}/events", tasks::events)
            .route("DELETE", "/tasks/{id}", tasks::cancel)
            .route("POST", "/tasks/{id}/revoke", tasks::cancel)
            .route("GET", "/tasks", tasks::history)
            .route("GET", "/tasks/active", tasks::active)
            .route("GET", "/tasks/analytics", tasks::analytics)
            .route("GET", "/tasks/stats", tasks::stats)
            .route("POST", "/bulk/analyze/async", bulk::submit)
            .route("GET", "/bulk/{id}/results", bulk::results)
            .route("POST", "/crawl", crawl::submit)
            .route("GET", "/crawl/{id}", crawl::status)
            .route("DELETE", "/crawl/{id}", crawl::cancel)
            .route("GET", "/crawl/{id}/issues", crawl::issues)
            .route("GET", "/crawl/{id}/pages", crawl::pages)
            .route("GET", "/crawl/{id}/report.csv", crawl::report_csv)
            .route("GET", "/crawl/{id}/report.html", crawl::report_html)
            .route("GET", "/ws", websocket::open);
        let routes = router.patterns().into_iter().chain([UNMATCHED]);
        let limiter = RateLimiter::new(config.rate_limits.clone(), routes).map(Arc::new);
        Ok(App { router, engine, intake: intake::Intake::start()?, pages, config, metrics: None, limiter })
    }

    /// Every route: its method and path pattern, in the order added.
    pub fn routes(&self) -> Vec<(&'static str, &'static str)> {
        self.router.routes()
    }

    /// The rate limiter, if any class is limited (for its metrics).
    pub fn rate_limiter(&self) -> Option<&Arc<RateLimiter>> {
        self.limiter.as_ref()
    }

    /// With API keys on: the request's key, known and holding the route's
    /// scope, within its own rate and daily quota; its name goes on the
    /// context. `Err` is the answer: 401, 403 or 429.
    fn authorize(&self, request: &Request<'_>, route: &'static str, cx: &mut Context<'_>) -> Result<(), Response> {
        let Some(keys) = &self.config.keys else { return Ok(()) };
        let Some(scope) = scope_of(request.head.method, route) else { return Ok(()) };
        let key = keys.authenticate(request.head.header("authorization")).map_err(|denied| {
            let (detail, challenge) = match denied {
                Denied::Missing => {
                    ("this server needs an API key: send Authorization: Bearer KEY", "Bearer realm=\"pagelens\"")
                }
                Denied::Invalid => ("this API key is not known", "Bearer realm=\"pagelens\", error=\"invalid_token\""),
            };
            Response::problem(401, "unauthorized", detail).header("WWW-Authenticate", challenge)
        })?;
        cx.set_client(key.name);
        if !key.may(scope) {
            let detail = format!("the key {:?} does not have the {} scope this route needs", key.name, scope.name());
            return Err(Response::problem(403, "forbidden", &detail));
        }
        if let Some((rate, decision)) = keys.check_rate(&key, cx.now()).filter(|(_, d)| !d.allowed) {
            let verdict = Verdict { class: Class::Key, rate, decision };
            return Err(too_many(&verdict, &format!("the key {:?} is over its rate", key.name)));
        }
        let now = std::time::SystemTime::now();
        if let Err(quota) = key.spend(now) {
            let since_epoch = now.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            let to_midnight = 86_400 - since_epoch.as_secs() % 86_400;
            let detail = format!("the key {:?} has used its {quota} requests of today (UTC)", key.name);
            return Err(
                Response::problem(429, "quota-exceeded", &detail).header("Retry-After", to_midnight.to_string())
            );
        }
        Ok(())
    }

    /// Whose tasks the caller sees: `None` for all (no keys, or an admin
    /// key), else its own key's name.
    pub fn viewer(&self, cx: &Context<'_>) -> Option<&'static str> {
        let keys = self.config.keys.as_ref()?;
        cx.client().filter(|name| !keys.is_admin(name))
    }

    /// The owner a new task of this caller gets (its key's name).
    pub fn owner(cx: &Context<'_>) -> Option<String> {
        cx.client().map(str::to_string)
    }

    /// Draws on the client's budget for this request: `Err` with the `429`
    /// when it is spent; else the budget's state goes on the response.
    fn limit(&self, request: &Request<'_>, route: &'static str, cx: &mut Context<'_>) -> Result<(), Response> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        let class = match route {
            // Probes and scrapes come from the infrastructure, not clients.
            "/livez" | "/readyz" | "/metrics" => return Ok(()),
            "/analyze" | "/analyze/async" | "/bulk/analyze/async" if request.head.method == "POST" => Class::Submit,
            _ => Class::Read,
        };
        let Some(verdict) = limiter.check(class, cx.peer(), &request.head, cx.now()) else { return Ok(()) };
        if !verdict.decision.allowed {
            limiter.count_refused(route);
            let detail = format!(
                "this client is over its rate for {} requests (see the RateLimit-Policy header); try again in {} s",
                class.name(),
                verdict.retry_after()
            );
            return Err(too_many(&verdict, &detail));
        }
        cx.add_header("RateLimit-Policy", verdict.policy());
        cx.add_header("RateLimit", verdict.state());
        Ok(())
    }

    /// Serves `GET /metrics` from `metrics`.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The engine tasks run on.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}

impl Service for App {
    fn call(&self, request: &Request<'_>, cx: &mut Context<'_>) -> Reply {
        let found = self.router.find(request.head.method, request.head.path);
        let route = match &found {
            Match::Found(_, _, pattern) | Match::MethodNotAllowed(_, pattern) => pattern,
            Match::NotFound => UNMATCHED,
        };
        cx.set_route(route);
        if let Err(refused) = self.authorize(request, route, cx).and_then(|()| self.limit(request, route, cx)) {
            return Reply::Now(refused);
        }
        match found {
            Match::Found(handler, params, _) => handler(self, request, params, cx),
            Match::MethodNotAllowed(allow, _) => Reply::Now(
                Response::problem(405, "method-not-allowed", &format!("{} is not allowed here", request.head.method))
                    .header("Allow", allow),
            ),
            Match::NotFound => {
                Reply::Now(Response::problem(404, "not-found", &format!("no resource at {}", request.head.path)))
            }
        }
    }
}

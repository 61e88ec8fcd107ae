//! The HTTP API of `pagelens serve`: which path means what.
//!
//! [`App`] is the [`Service`] the reactors call. Handlers run on a reactor
//! thread and answer at once from memory; anything that takes time
//! (parsing a body, analysing a page) goes to the pool through the engine.

mod analyze;
mod bulk;
mod health;
pub mod input;
mod intake;
pub mod robots;
mod tasks;
pub mod work;

use std::sync::Arc;
use std::time::Duration;

use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::{Match, Params, Router};
use crate::jobs::Engine;
use crate::metrics::Metrics;
use crate::reactor::{Context, Reply, Service};
use input::InputLimits;

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
            .route("POST", "/analyze", analyze::analyze)
            .route("POST", "/analyze/async", analyze::analyze_async)
            .route("GET", "/analyze/status/{id}", tasks::status)
            .route("DELETE", "/tasks/{id}", tasks::cancel)
            .route("POST", "/tasks/{id}/revoke", tasks::cancel)
            .route("GET", "/tasks/active", tasks::active)
            .route("GET", "/tasks/stats", tasks::stats)
            .route("POST", "/bulk/analyze/async", bulk::submit)
            .route("GET", "/bulk/{id}/results", bulk::results);
        Ok(App { router, engine, intake: intake::Intake::start()?, pages, config, metrics: None })
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
        match self.router.find(request.head.method, request.head.path) {
            Match::Found(handler, params, pattern) => {
                cx.set_route(pattern);
                handler(self, request, params, cx)
            }
            Match::MethodNotAllowed(allow, pattern) => {
                cx.set_route(pattern);
                Reply::Now(
                    Response::problem(
                        405,
                        "method-not-allowed",
                        &format!("{} is not allowed here", request.head.method),
                    )
                    .header("Allow", allow),
                )
            }
            Match::NotFound => {
                Reply::Now(Response::problem(404, "not-found", &format!("no resource at {}", request.head.path)))
            }
        }
    }
}

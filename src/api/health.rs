//! Liveness, readiness and detailed health.

use serde_json::json;

use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::reactor::{Context, Reply};

/// `GET /livez`: the process answers. Allocates nothing.
pub fn livez(_: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    Reply::Now(Response::text(200, "ok"))
}

/// `GET /readyz`: ready to take new work; `503` while draining.
pub fn readyz(_: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    if cx.server().is_draining() {
        Reply::Now(Response::text(503, "draining").header("Retry-After", "1"))
    } else {
        Reply::Now(Response::text(200, "ready"))
    }
}

/// `GET /health`: the server's state as JSON.
pub fn health(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let server = cx.server();
    let status = if server.is_draining() { "draining" } else { "ok" };
    Reply::Now(Response::json(
        200,
        &json!({
            "status": status,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_seconds": server.uptime().as_secs_f64(),
            "reactors": server.reactors(),
            "connections": {
                "open": server.connections_open(),
                "max": server.max_connections(),
                "accepted_total": server.connections_accepted(),
                "refused_total": server.connections_refused(),
                "timed_out_total": server.connections_timed_out(),
            },
            "work": super::tasks::figures(app),
        }),
    ))
}

/// `GET /metrics`: the Prometheus text exposition, rendered once a second
/// by the metrics thread (never on a reactor).
pub fn metrics(app: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    Reply::Now(match &app.metrics {
        Some(metrics) => {
            Response::with_body(200, "text/plain; version=0.0.4; charset=utf-8", metrics.rendered().as_bytes().to_vec())
        }
        None => Response::problem(404, "metrics-off", "this server records no metrics"),
    })
}

//! Liveness, readiness and health; the metrics pages and the dashboard; the API description.

use serde_json::json;

use super::analyze::via_reader;
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::store::HistoryQuery;
use crate::reactor::{Context, Reply};

/// `GET /livez`: the process answers. Allocates nothing.
pub fn livez(_: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    Reply::Now(Response::text(200, "ok"))
}

/// `GET /readyz`: ready to take new work; `503` while draining.
pub fn readyz(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    if cx.server().is_draining() {
        Reply::Now(Response::text(503, "draining").header("Retry-After", "1"))
    } else if app.engine.queue_down() {
        Reply::Now(Response::text(503, "store unreachable").header("Retry-After", "1"))
    } else {
        Reply::Now(Response::text(200, "ready"))
    }
}

/// `GET /health`: the server's state as JSON.
pub fn health(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let server = cx.server();
    let status = if server.is_draining() { "draining" } else { "ok" };
    let mut doc = json!({
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
    });
    // The task figures read the store: off the reactor.
    via_reader(app, cx, move |engine| {
        match super::tasks::figures(engine) {
            Ok(work) => doc["work"] = work,
            Err(e) => {
                doc["status"] = json!("degraded");
                doc["store_error"] = json!(e.to_string());
            }
        }
        Response::json(200, &doc)
    })
}

/// `GET /metrics`: the Prometheus text exposition (OpenMetrics 1.0 when the
/// scraper's `Accept` asks for it), rendered once a second by the metrics
/// thread, never on a reactor.
pub fn metrics(app: &App, request: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    let Some(metrics) = &app.metrics else {
        return Reply::Now(Response::problem(404, "metrics-off", "this server records no metrics"));
    };
    let openmetrics = request
        .head
        .header("accept")
        .is_some_and(|accept| String::from_utf8_lossy(accept).contains("application/openmetrics-text"));
    let texts = metrics.rendered();
    let (content_type, text) = if openmetrics {
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", &texts.openmetrics)
    } else {
        ("text/plain; version=0.0.4; charset=utf-8", &texts.prometheus)
    };
    Reply::Now(Response::with_body(200, content_type, text.as_bytes().to_vec()))
}

/// `GET /non-blocking/metrics`: the runtime snapshot as JSON.
pub fn snapshot(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let server = cx.server();
    let mut doc = json!({
        "connections": {
            "open": server.connections_open(),
            "max": server.max_connections(),
            "capacity_left": server.max_connections().saturating_sub(server.connections_open()),
            "accepted_total": server.connections_accepted(),
            "refused_total": server.connections_refused(),
            "timed_out_total": server.connections_timed_out(),
        },
        "system": {
            "pid": std::process::id(),
            "cores": crate::system::cores(),
            "reactors": server.reactors(),
            "uptime_seconds": server.uptime().as_secs_f64(),
            "version": env!("CARGO_PKG_VERSION"),
        },
    });
    via_reader(app, cx, move |engine| match super::tasks::figures(engine) {
        Ok(mut work) => {
            let capacity = engine.config().queue_capacity;
            work["queue"]["capacity_left"] = json!(capacity.saturating_sub(engine.waiting()));
            doc["work"] = work;
            Response::json(200, &doc)
        }
        Err(e) => super::tasks::store_failed(&e),
    })
}

/// `GET /performance/real-time`: Server-Sent Events, one JSON snapshot a
/// second (requests/s, 5xx, latency, connections, queue), built once for all
/// watchers by the metrics thread.
pub fn real_time(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let Some(metrics) = &app.metrics else {
        return Reply::Now(Response::problem(404, "metrics-off", "this server records no metrics"));
    };
    let head = Response::streaming(200, "text/event-stream").header("Cache-Control", "no-cache");
    metrics.watch(cx.defer().stream(head));
    Reply::Later
}

/// `GET /alerts`: the alert rules, their thresholds, latest values and states.
pub fn alerts(app: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    let Some(metrics) = &app.metrics else {
        return Reply::Now(Response::problem(404, "metrics-off", "this server records no metrics"));
    };
    Reply::Now(Response::json(200, &json!({ "alerts": metrics.alerts().unwrap_or_default() })))
}

/// The dashboard page: HTML that draws the live stream.
const DASHBOARD: &str = include_str!("dashboard.html");

/// Where the page takes the server's recent history.
const SEED: &str = "/*SEED*/null";

/// Tasks the dashboard's list shows.
const DASHBOARD_TASKS: usize = 20;

/// `GET /dashboard`: a live page drawn from `GET /performance/real-time`,
/// with the recent history and newest tasks in it so that it shows
/// figures from the start (the tasks are read on a store reader).
pub fn dashboard(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let Some(metrics) = app.metrics.clone() else {
        return Reply::Now(Response::problem(404, "metrics-off", "this server records no metrics"));
    };
    if app.config.keys.is_some() {
        // Open to all, so without the figures and tasks it would show:
        // the page fetches them with the key it is given.
        let page = DASHBOARD.replacen(SEED, "null", 1);
        let response = Response::with_body(200, "text/html; charset=utf-8", page.into_bytes());
        return Reply::Now(response.header("Cache-Control", "no-cache"));
    }
    via_reader(app, cx, move |engine| {
        let query = HistoryQuery { limit: DASHBOARD_TASKS, ..HistoryQuery::default() };
        // A store that fails leaves the list to the page's own refresh.
        let tasks: Vec<serde_json::Value> = engine
            .history(&query)
            .unwrap_or_default()
            .iter()
            .map(|t| serde_json::to_value(&t.view).unwrap_or_default())
            .collect();
        let mut seed = metrics.history();
        seed["tasks"] = tasks.into();
        // Inside a <script>: `<` escaped so that no `</script>` can end it early.
        let seed = seed.to_string().replace('<', "\\u003c");
        let page = DASHBOARD.replacen(SEED, &seed, 1);
        Response::with_body(200, "text/html; charset=utf-8", page.into_bytes()).header("Cache-Control", "no-cache")
    })
}

/// The OpenAPI 3.1 description of every route (kept true by the tests:
/// every route is in it, and schemathesis checks the server against it).
const OPENAPI: &[u8] = include_bytes!("openapi.json");

/// `GET /openapi.json`.
pub fn openapi(_: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    Reply::Now(Response::with_static(200, "application/json", OPENAPI))
}

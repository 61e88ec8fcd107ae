//! `POST /analyze` (sync, with the hand-over to a task past `--sync-wait`)
//! and `POST /analyze/async`.

use std::sync::Arc;

use serde_json::json;

use super::input::{parse_analyze, BodyKind};
use super::work::callback_on_done;
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::Engine;
use crate::jobs::task::rfc3339;
use crate::jobs::{SubmitError, Submitted, SyncOutcome, TaskError, TaskSpec, TaskState, TaskView, Work};
use crate::reactor::{Context, Reply};

/// The problem document for a task error.
pub fn problem(e: &TaskError) -> Response {
    // 499 is how the engine marks cancellation; clients get 409 Conflict.
    let status = if e.status == 499 { 409 } else { e.status };
    Response::problem(status, &e.code, &e.detail)
}

/// `503` with `Retry-After` for a full queue.
pub fn queue_full(e: &SubmitError) -> Response {
    let SubmitError::Full { retry_after } = e;
    Response::problem(503, "queue-full", "the task queue is full; retry later")
        .header("Retry-After", retry_after.to_string())
}

/// The `202` (or `200` for an idempotent repeat) answer naming a task to follow.
pub fn accepted(engine: &Engine, status: u16, view: &TaskView) -> Response {
    let url = format!("/analyze/status/{}", view.task_id);
    let mut body = json!({
        "task_id": view.task_id,
        "status": view.status,
        "priority": view.priority,
        "check_status_url": url,
        "estimated_completion": rfc3339(engine.estimated_completion()),
    });
    if view.kind == "bulk" {
        body["results_url"] = json!(format!("/bulk/{}/results", view.task_id));
    }
    Response::json(status, &body).header("Location", url)
}

/// The answer to a task that has ended: its result, or its error.
fn finished(view: TaskView) -> Response {
    match (view.status, view.result, view.error) {
        // The result's JSON becomes the body without another copy.
        (TaskState::Completed, Some(result), _) => {
            Response::with_body(200, "application/json", String::from(Box::<str>::from(result)).into_bytes())
        }
        (_, _, Some(error)) => problem(&error),
        _ => Response::problem(500, "internal", "the task ended without a result"),
    }
}

/// The `Idempotency-Key` header, checked.
pub fn idempotency_key(request: &Request<'_>) -> Result<Option<String>, Response> {
    let Some(value) = request.head.header("idempotency-key") else { return Ok(None) };
    match std::str::from_utf8(value) {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_string())),
        _ => Err(Response::problem(400, "bad-idempotency-key", "Idempotency-Key must be 1-255 visible characters")),
    }
}

/// The body kind, or the `415` answer.
pub fn body_kind(request: &Request<'_>, allow_html: bool) -> Result<BodyKind, Response> {
    match BodyKind::from_content_type(request.head.header("content-type")) {
        Some(BodyKind::Html) if !allow_html => Err(unsupported_type()),
        Some(kind) => Ok(kind),
        None => Err(unsupported_type()),
    }
}

fn unsupported_type() -> Response {
    Response::problem(
        415,
        "unsupported-media-type",
        "send Content-Type: application/json (or text/html with the raw page as the body)",
    )
}

/// `POST /analyze`.
pub fn analyze(app: &App, request: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let prefers_async = request
        .head
        .header("prefer")
        .is_some_and(|p| String::from_utf8_lossy(p).split(',').any(|t| t.trim().eq_ignore_ascii_case("respond-async")));
    if prefers_async {
        return analyze_async(app, request, params, cx);
    }
    let kind = match body_kind(request, true) {
        Ok(kind) => kind,
        Err(response) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let limits = app.config.limits;
    let pages = app.pages.clone();
    // The body is parsed on a worker; a URL then waits for its fetch off the pool.
    let work = Work::Io(Box::new(move |resume| {
        match parse_analyze(kind, body, limits, pages.fetcher().guard()).map(|r| pages.work(r.page)) {
            Err(e) => resume.fail(e),
            Ok(Work::Cpu(work)) => resume.then(work),
            Ok(Work::Io(start)) => start(resume),
        }
    }));
    let spec = TaskSpec { kind: "analyze", priority: Default::default(), timeout: None, idempotency_key: None, work };
    let responder = cx.defer();
    let engine = Arc::clone(&app.engine);
    let reply = Box::new(move |outcome| {
        responder.send(match outcome {
            SyncOutcome::Finished(view) => finished(view),
            SyncOutcome::Accepted(view) => accepted(&engine, 202, &view),
        })
    });
    match app.engine.run_sync(spec, app.config.sync_wait, reply) {
        Ok(()) => Reply::Later,
        // The refused reply (and its responder) was dropped; this answer
        // fills the request's slot first, so the responder's fallback is ignored.
        Err(e) => Reply::Now(queue_full(&e)),
    }
}

/// `POST /analyze/async`.
pub fn analyze_async(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let (kind, key) = match (body_kind(request, true), idempotency_key(request)) {
        (Ok(kind), Ok(key)) => (kind, key),
        (Err(response), _) | (_, Err(response)) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let limits = app.config.limits;
    let engine = Arc::clone(&app.engine);
    let pages = app.pages.clone();
    let secret = app.config.callback_secret.clone();
    via_intake(app, cx, move || match parse_analyze(kind, body, limits, pages.fetcher().guard()) {
        Err(e) => problem(&e),
        Ok(parsed) => {
            let spec = TaskSpec {
                kind: "analyze",
                priority: parsed.priority,
                timeout: parsed.timeout,
                idempotency_key: key,
                work: pages.work(parsed.page),
            };
            let result = match parsed.callback {
                Some(url) => engine.delay_with_callback(spec, callback_on_done(pages.fetcher(), url, secret)),
                None => engine.delay(spec),
            };
            submitted(&engine, result)
        }
    })
}

/// Parses a request body on the intake thread (`intake` builds the answer)
/// and answers the request with what it returns.
pub fn via_intake(app: &App, cx: &mut Context<'_>, intake: impl FnOnce() -> Response + Send + 'static) -> Reply {
    if let Err(e) = app.engine.has_room() {
        return Reply::Now(queue_full(&e));
    }
    let responder = cx.defer();
    match app.engine.spawn_intake(Box::new(move || responder.send(intake()))) {
        Ok(()) => Reply::Later,
        // The refused job (and its responder) was dropped; this answer fills
        // the request's slot first, so the responder's fallback is ignored.
        Err(e) => Reply::Now(queue_full(&e)),
    }
}

/// The answer to a submission: `202` for a new task, `200` for the one
/// already stored under the same idempotency key, `503` when full.
pub fn submitted(engine: &Engine, result: Result<Submitted, SubmitError>) -> Response {
    match result {
        Ok(Submitted::Created(view)) => accepted(engine, 202, &view),
        Ok(Submitted::Existing(view)) => accepted(engine, 200, &view),
        Err(e) => queue_full(&e),
    }
}

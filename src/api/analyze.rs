//! `POST /analyze` (sync, with the hand-over to a task past `--sync-wait`)
//! and `POST /analyze/async`.

use std::sync::Arc;

use serde_json::json;

use super::cache::{closing, Directives, Outcome, Reach, ResultCache};
use super::input::{parse_analyze, BodyKind};
use super::input::{PageInput, Source};
use super::App;
use crate::fetch::Guard;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::{Ended, Engine};
use crate::jobs::task::rfc3339;
use crate::jobs::{SubmitError, Submitted, SyncOutcome, TaskError, TaskState, TaskView};
use crate::reactor::{Context, Reply, Responder};

/// The problem document for a task error.
pub fn problem(e: &TaskError) -> Response {
    // 499 is how the engine marks cancellation; clients get 409 Conflict.
    let status = if e.status == 499 { 409 } else { e.status };
    Response::problem(status, &e.code, &e.detail)
}

/// The answer to a refused submission: `503` with `Retry-After`, or `422`
/// for an idempotency key reused for another request.
pub fn refused(e: &SubmitError) -> Response {
    let (code, detail, retry_after) = match e {
        SubmitError::KeyReused { task } => {
            let detail = format!(
                "this Idempotency-Key was used for a different request (task {task}); use a new key for a new request"
            );
            return Response::problem(422, "idempotency-key-reused", &detail);
        }
        SubmitError::Full { retry_after } => {
            ("queue-full", "the task queue is full; retry later".to_string(), *retry_after)
        }
        SubmitError::StoreUnavailable { detail } => {
            ("store-unavailable", format!("the task store cannot take tasks now: {detail}"), 5)
        }
        SubmitError::ShuttingDown => ("shutting-down", "the server is shutting down; retry elsewhere".into(), 1),
    };
    Response::problem(503, code, &detail).header("Retry-After", retry_after.to_string())
}

/// The `202` (or `200` for an idempotent repeat) answer naming a task to follow.
pub fn accepted(engine: &Engine, status: u16, view: &TaskView) -> Response {
    let url = match view.kind.as_str() {
        super::crawl::CRAWL => format!("/crawl/{}", view.task_id),
        _ => format!("/analyze/status/{}", view.task_id),
    };
    let mut body = json!({
        "task_id": view.task_id,
        "status": view.status,
        "priority": view.priority,
        "check_status_url": url,
    });
    // Left out when there is nothing to estimate (an ended task, no measure yet).
    if let Some(at) = engine.estimated_completion(view) {
        body["estimated_completion"] = json!(rfc3339(at));
    }
    if view.kind == "bulk" {
        body["results_url"] = json!(format!("/bulk/{}/results", view.task_id));
    }
    if view.kind == super::crawl::CRAWL {
        body["report_url"] = json!(format!("/crawl/{}/report.html", view.task_id));
    }
    Response::json(status, &body).header("Location", url)
}

/// The answer to a task that has ended: its result, or its error.
fn finished(ended: Ended) -> Response {
    match (ended.view.status, ended.result, ended.view.error) {
        (TaskState::Completed, Some(result), _) => {
            let age = cache_age(&result);
            // The result as the engine holds it: shared, not copied.
            let response = Response::shared(200, "application/json", result);
            match age {
                Some(age) => response.header("Age", age.to_string()),
                None => response,
            }
        }
        (_, _, Some(error)) => problem(&error),
        _ => Response::problem(500, "internal", "the task ended without a result"),
    }
}

/// The answer to a URL analysis the cache holds fresh: the stored analysis
/// shared, its cache fields after it, and `Age`.
fn cache_hit(cache: &ResultCache, page: &PageInput, directives: Directives) -> Option<Response> {
    let Source::Url(url) = &page.source else { return None };
    if directives.no_store {
        return None;
    }
    let key = ResultCache::key(url, &page.options);
    let (entry, age) = cache.consult(&key, directives, Reach::Memory).ok()?;
    let closing = closing(Outcome::Hit, age);
    let response = Response::spliced(200, "application/json", Vec::new(), entry.analysis, closing);
    Some(response.header("Age", age.as_secs().to_string()))
}

/// The `cache_age_seconds` the result cache put at the end of an analysis.
fn cache_age(result: &[u8]) -> Option<u64> {
    const FIELD: &[u8] = b"\"cache_age_seconds\":";
    let tail = &result[result.len().saturating_sub(48)..];
    let at = tail.windows(FIELD.len()).rposition(|w| w == FIELD)? + FIELD.len();
    let digits = &tail[at..tail.len().saturating_sub(1)];
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The `Idempotency-Key` header, checked.
pub fn idempotency_key(request: &Request<'_>) -> Result<Option<String>, Response> {
    let Some(value) = request.head.header("idempotency-key") else { return Ok(None) };
    match std::str::from_utf8(value) {
        Ok(key) if !key.is_empty() && key.len() <= 255 => Ok(Some(key.to_string())),
        _ => Err(Response::problem(400, "bad-idempotency-key", "Idempotency-Key must be 1-255 visible characters")),
    }
}

/// The request's `Content-Type`, for a raw page's charset.
fn content_type(request: &Request<'_>) -> Option<String> {
    request.head.header("content-type").map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The body kind, or the `415` answer.
pub fn body_kind(request: &Request<'_>, allow_html: bool) -> Result<BodyKind, Response> {
    match BodyKind::from_content_type(request.head.header("content-type")) {
        Some(BodyKind::Html) if !allow_html => Err(unsupported_type(allow_html)),
        Some(kind) => Ok(kind),
        None => Err(unsupported_type(allow_html)),
    }
}

/// `415`, saying what the route takes.
fn unsupported_type(allow_html: bool) -> Response {
    let takes = if allow_html {
        "this route takes Content-Type: application/json, or text/html with the raw page as the body"
    } else {
        "this route takes Content-Type: application/json: {\"items\": [{\"url\": ...} or {\"html\": ...}, ...]}"
    };
    Response::problem(415, "unsupported-media-type", takes)
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
    let content_type = content_type(request);
    let (limits, sync_wait) = (app.config.limits, app.config.sync_wait);
    let owner = App::owner(cx);
    let directives = Directives::parse(request.head.header("cache-control"));
    let cache = app.pages.cache().cloned();
    via_intake(app, cx, body.len(), move |responder, engine, guard| {
        let spec = match parse_analyze(kind, body, content_type, limits, guard) {
            Ok(mut parsed) => {
                // A fresh cached analysis is answered here: no task, no copy of it.
                if let Some(hit) = cache.as_deref().and_then(|c| cache_hit(c, &parsed.page, directives)) {
                    return responder.send(hit);
                }
                parsed.page.cache = directives;
                parsed.into_spec(None, owner)
            }
            Err(e) => return responder.send(problem(&e)),
        };
        let replies = Arc::clone(engine);
        let reply = Box::new(move |outcome| {
            responder.send(match outcome {
                SyncOutcome::Finished(ended) => finished(ended),
                SyncOutcome::Accepted(view) => accepted(&replies, 202, &view),
                SyncOutcome::Refused(e) => refused(&e),
            })
        });
        engine.run_sync(spec, sync_wait, reply);
    })
}

/// `POST /analyze/async`.
pub fn analyze_async(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let (kind, key) = match (body_kind(request, true), idempotency_key(request)) {
        (Ok(kind), Ok(key)) => (kind, key),
        (Err(response), _) | (_, Err(response)) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let content_type = content_type(request);
    let limits = app.config.limits;
    let owner = App::owner(cx);
    let directives = Directives::parse(request.head.header("cache-control"));
    via_intake(app, cx, body.len(), move |responder, engine, guard| {
        match parse_analyze(kind, body, content_type, limits, guard) {
            Err(e) => responder.send(problem(&e)),
            Ok(mut parsed) => {
                parsed.page.cache = directives;
                submit(engine, parsed.into_spec(key, owner), responder)
            }
        }
    })
}

/// Queues `spec` and answers with the task once it is stored.
pub fn submit(engine: &Arc<Engine>, spec: crate::jobs::TaskSpec, responder: Responder) {
    let replies = Arc::clone(engine);
    engine.enqueue(spec, None, Box::new(move |result| responder.send(submitted(&replies, result))));
}

/// Parses a request body of `bytes` on the intake thread; `intake`
/// answers through the responder it is given, with the engine and the
/// fetcher's guard (shared handles: nothing is copied on the reactor).
pub fn via_intake(
    app: &App,
    cx: &mut Context<'_>,
    bytes: usize,
    intake: impl FnOnce(Responder, &Arc<Engine>, &Guard) + Send + 'static,
) -> Reply {
    if let Err(e) = app.engine.has_room() {
        return Reply::Now(refused(&e));
    }
    let responder = cx.defer();
    let (engine, fetcher) = (Arc::clone(&app.engine), Arc::clone(app.pages.fetcher()));
    match app.intake.spawn(bytes, Box::new(move || intake(responder, &engine, fetcher.guard()))) {
        Ok(()) => Reply::Later,
        // The refused job (and its responder) was dropped; this answer fills
        // the request's slot first, so the responder's fallback is ignored.
        Err(_) => {
            app.engine.count_refusal();
            Reply::Now(refused(&SubmitError::Full { retry_after: 1 }))
        }
    }
}

/// Answers from a store reader thread (a status, a list) with what `read`
/// makes of the engine: the store is never read on a reactor.
pub fn via_reader(
    app: &App,
    cx: &mut Context<'_>,
    read: impl FnOnce(&Arc<Engine>) -> Response + Send + 'static,
) -> Reply {
    let responder = cx.defer();
    let engine = Arc::clone(&app.engine);
    app.engine.spawn_read(Box::new(move || responder.send(read(&engine))));
    Reply::Later
}

/// The answer to a submission: `202` for a new task, `200` for the one
/// already stored under the same idempotency key, `503` when full.
pub fn submitted(engine: &Engine, result: Result<Submitted, SubmitError>) -> Response {
    match result {
        Ok(Submitted::Created(view)) => accepted(engine, 202, &view),
        Ok(Submitted::Existing(view)) => accepted(engine, 200, &view),
        Err(e) => refused(&e),
    }
}

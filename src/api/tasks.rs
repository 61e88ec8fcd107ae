//! Following and managing tasks: status, cancel, active list, stats. Each
//! reads the store, so each runs on a store reader thread.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::analyze::{problem, via_reader};
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::{CancelError, Ended, TaskWatcher};
use crate::jobs::store::HistoryQuery;
use crate::jobs::store::StoreError;
use crate::jobs::task::{status_body, status_prefix, to_millis, STATUS_SUFFIX};
use crate::jobs::{Engine, TaskError, TaskId, TaskState};
use crate::pool::Priority;
use crate::reactor::{Context, Reply};

/// Most tasks `GET /tasks/active` lists.
const ACTIVE_LIMIT: usize = 1000;

fn task_id(params: &Params<'_>) -> Result<TaskId, Response> {
    params.get("id").and_then(|id| id.parse().ok()).ok_or_else(not_found)
}

fn not_found() -> Response {
    Response::problem(404, "task-not-found", "no task with this id (it may have expired)")
}

/// `503` for a store that failed a read.
pub fn store_failed(e: &StoreError) -> Response {
    Response::problem(503, "store-unavailable", &format!("the task store failed: {e}")).header("Retry-After", "5")
}

/// Whether `viewer` (see [`App::viewer`]) may see a task of `owner`.
fn visible(viewer: Option<&str>, owner: Option<&str>) -> bool {
    viewer.is_none_or(|v| owner == Some(v))
}

/// Task `id` if `viewer` may see it; `None` when it does not exist or is
/// another key's (both answer `404`, so neither is revealed).
pub(super) fn seen_by(engine: &Engine, id: TaskId, viewer: Option<&str>) -> Result<Option<Ended>, StoreError> {
    Ok(engine.status(id)?.filter(|ended| visible(viewer, ended.view.owner.as_deref())))
}

/// Whether `viewer` may act on task `id`. Without keys, or for an admin
/// key, always, and the store is not read for it.
pub fn may_act(engine: &Engine, id: TaskId, viewer: Option<&str>) -> Result<bool, StoreError> {
    match viewer {
        None => Ok(true),
        Some(_) => Ok(seen_by(engine, id, viewer)?.is_some()),
    }
}

/// `GET /analyze/status/{id}`.
pub fn status(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let id = match task_id(&params) {
        Ok(id) => id,
        Err(response) => return Reply::Now(response),
    };
    let viewer = app.viewer(cx);
    via_reader(app, cx, move |engine| match seen_by(engine, id, viewer) {
        Ok(Some(ended)) => status_response(&ended),
        Ok(None) => not_found(),
        Err(e) => store_failed(&e),
    })
}

/// A `200` with the status document; a result is shared with the task's
/// record, never copied into each response.
pub(super) fn status_response(ended: &Ended) -> Response {
    match &ended.result {
        Some(result) => Response::spliced(
            200,
            "application/json",
            status_prefix(&ended.view, true),
            Arc::clone(result),
            STATUS_SUFFIX,
        ),
        None => Response::with_body(200, "application/json", status_prefix(&ended.view, false)),
    }
}

/// `GET /analyze/status/{id}/events`: Server-Sent Events of the task's
/// state and progress, one `status` event a change (its id the record's
/// version), ending with an `end` event of its final status. A client that
/// reconnects with `Last-Event-ID` gets only what is newer; one that stops
/// reading is dropped by the connection, as for the metrics stream.
pub fn events(app: &App, request: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let id = match task_id(&params) {
        Ok(id) => id,
        Err(response) => return Reply::Now(response),
    };
    let seen =
        request.head.header("last-event-id").and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
    let viewer = app.viewer(cx);
    let responder = cx.defer();
    let engine = Arc::clone(app.engine());
    app.engine().spawn_read(Box::new(move || {
        match seen_by(&engine, id, viewer) {
            Err(e) => return responder.send(store_failed(&e)),
            Ok(None) => return responder.send(not_found()),
            Ok(Some(_)) => {}
        }
        let head = Response::streaming(200, "text/event-stream").header("Cache-Control", "no-cache");
        let mut stream = Some(responder.stream(head));
        let watcher: TaskWatcher = Box::new(move |event| {
            let Some(sender) = stream.as_ref().filter(|s| !s.is_gone()) else { return false };
            if seen.is_none_or(|s| s < event.version) {
                // A TaskView always serialises (plain fields).
                let doc = serde_json::to_string(event.view).unwrap_or_default();
                let kind = if event.last { "end" } else { "status" };
                sender.send(format!("id: {}\nevent: {kind}\ndata: {doc}\n\n", event.version).into_bytes());
            }
            if event.last {
                // Dropping the sender ends the stream.
                stream = None;
            }
            !event.last
        });
        // A task that vanished in between (expired) ends the stream empty.
        if let Err(e) = engine.watch(id, watcher) {
            crate::warn!("task {id}: cannot follow its events: {e}");
        }
    }));
    Reply::Later
}

/// `DELETE /tasks/{id}` and `POST /tasks/{id}/revoke`.
pub fn cancel(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let id = match task_id(&params) {
        Ok(id) => id,
        Err(response) => return Reply::Now(response),
    };
    let viewer = app.viewer(cx);
    via_reader(app, cx, move |engine| match may_act(engine, id, viewer) {
        Err(e) => store_failed(&e),
        Ok(false) => not_found(),
        Ok(true) => cancel_task(engine, id),
    })
}

/// Cancels task `id` and answers with its status.
pub(super) fn cancel_task(engine: &Arc<Engine>, id: TaskId) -> Response {
    match engine.cancel(id) {
        Ok(ended) => status_response(&ended),
        Err(CancelError::NotFound) => not_found(),
        Err(CancelError::Finished(state)) => {
            problem(&TaskError::new(409, "task-finished", format!("the task has already ended ({})", state.name())))
        }
        Err(CancelError::Store(e)) => store_failed(&e),
    }
}

/// Most tasks one page of `GET /tasks` lists.
const HISTORY_LIMIT: usize = 1000;

/// `GET /tasks?state=&kind=&priority=&since=&until=&limit=&cursor=&include=result`:
/// stored tasks, newest first, a page at a time; `next_cursor` continues.
pub fn history(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let mut query = match history_query(request.head.query.unwrap_or("")) {
        Ok(query) => query,
        Err(detail) => return Reply::Now(Response::problem(400, "bad-query", &detail)),
    };
    query.owner = app.viewer(cx).map(str::to_string);
    via_reader(app, cx, move |engine| match engine.history(&query) {
        Ok(tasks) => {
            let mut body = b"{\"tasks\":[".to_vec();
            for (i, task) in tasks.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend(status_body(&task.view, task.result.as_deref()));
            }
            body.extend_from_slice(b"],\"next_cursor\":");
            match tasks.last().filter(|_| tasks.len() == query.limit) {
                Some(last) => {
                    let created = crate::jobs::task::parse_rfc3339(&last.view.created_at).map_or(0, to_millis);
                    body.extend(format!("\"{created}-{}\"}}", last.view.task_id).into_bytes());
                }
                None => body.extend_from_slice(b"null}"),
            }
            Response::with_body(200, "application/json", body)
        }
        Err(e) => store_failed(&e),
    })
}

/// The history query from a query string; `Err` names what is wrong.
fn history_query(text: &str) -> Result<HistoryQuery, String> {
    let mut query = HistoryQuery { limit: 100, ..HistoryQuery::default() };
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        let bad = || format!("{name}={value:?} is not valid");
        let time = || {
            crate::jobs::task::parse_rfc3339(&value).ok_or_else(|| {
                format!("{name} must be an RFC 3339 time such as 2026-11-30T12:00:00.000Z, not {value:?}")
            })
        };
        match &*name {
            "state" => query.state = Some(TaskState::ALL.into_iter().find(|s| s.name() == value).ok_or_else(bad)?),
            "kind" => query.kind = Some(value.into_owned()),
            "priority" => query.priority = Some(Priority::ALL.into_iter().find(|p| p.name() == value).ok_or_else(bad)?),
            "since" => query.since = Some(time()?),
            "until" => query.until = Some(time()?),
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=HISTORY_LIMIT).contains(n))
                    .ok_or_else(|| format!("limit must be 1 to {HISTORY_LIMIT}, not {value:?}"))?
            }
            "cursor" => {
                let (ms, id) = value.split_once('-').ok_or_else(bad)?;
                query.before = Some((ms.parse().map_err(|_| bad())?, id.parse().map_err(|_| bad())?));
            }
            "include" if value == "result" => query.with_results = true,
            _ => return Err(format!("unknown parameter {name}={value:?}")),
        }
    }
    Ok(query)
}

/// Most buckets one analytics answer holds.
const MAX_BUCKETS: i64 = 1000;

/// `GET /tasks/analytics?since=&bucket=1h`: stored tasks ended since
/// `since` (default: a day ago) by outcome per bucket, the most frequent
/// error codes, and queue waits and stage times of this process.
pub fn analytics(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let now = std::time::SystemTime::now();
    let (since, bucket_ms) = match analytics_query(request.head.query.unwrap_or(""), now) {
        Ok(query) => query,
        Err(detail) => return Reply::Now(Response::problem(400, "bad-query", &detail)),
    };
    let cache = app.pages.cache().cloned();
    via_reader(app, cx, move |engine| match engine.outcomes(since, bucket_ms) {
        Ok(outcomes) => {
            let mut totals: BTreeMap<&str, u64> = TaskState::ENDED.iter().map(|s| (s.name(), 0)).collect();
            let buckets: Vec<serde_json::Value> = outcomes
                .buckets
                .iter()
                .map(|(start, by_state)| {
                    let mut row = serde_json::Map::new();
                    row.insert("start".into(), json!(crate::clock::rfc3339(crate::clock::from_millis(*start))));
                    let mut total = 0;
                    for state in TaskState::ENDED {
                        let n = by_state.get(&state).copied().unwrap_or(0);
                        *totals.entry(state.name()).or_default() += n;
                        total += n;
                        row.insert(state.name().into(), json!(n));
                    }
                    row.insert("total".into(), json!(total));
                    serde_json::Value::Object(row)
                })
                .collect();
            let errors: Vec<serde_json::Value> =
                outcomes.errors.iter().map(|(code, n)| json!({"code": code, "count": n})).collect();
            Response::json(
                200,
                &json!({
                    "since": crate::clock::rfc3339(since),
                    "bucket_seconds": bucket_ms / 1000,
                    "buckets": buckets,
                    "totals": totals,
                    "errors": errors,
                    "timings_since_start": engine.times().summary(),
                    "cache_since_start": cache.map(|c| {
                        let f = c.figures();
                        let answers = f.hits + f.misses + f.revalidations;
                        let ratio = if answers == 0 { 0.0 } else { f.hits as f64 / answers as f64 };
                        json!({"hits": f.hits, "misses": f.misses, "revalidations": f.revalidations, "hit_ratio": ratio})
                    }),
                }),
            )
        }
        Err(e) => store_failed(&e),
    })
}

/// `since` and the bucket in milliseconds; `Err` names what is wrong.
fn analytics_query(text: &str, now: std::time::SystemTime) -> Result<(std::time::SystemTime, i64), String> {
    let mut since = now - std::time::Duration::from_secs(86_400);
    let mut bucket_ms = 3_600_000;
    for (name, value) in url::form_urlencoded::parse(text.as_bytes()) {
        match &*name {
            "since" => {
                since = crate::jobs::task::parse_rfc3339(&value)
                    .ok_or_else(|| format!("since must be an RFC 3339 time, not {value:?}"))?
            }
            "bucket" => {
                let unit = |u: &str| match u {
                    "s" => Some(1_000),
                    "m" => Some(60_000),
                    "h" => Some(3_600_000),
                    "d" => Some(86_400_000),
                    _ => None,
                };
                let split = value.find(|c: char| !c.is_ascii_digit()).unwrap_or(value.len());
                let (n, u) = value.split_at(split);
                bucket_ms = n
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .zip(unit(u))
                    .map(|(n, u)| n.saturating_mul(u))
                    .ok_or_else(|| format!("bucket must be a duration such as 30s, 5m, 1h or 1d, not {value:?}"))?
            }
            _ => return Err(format!("unknown parameter {name}={value:?}")),
        }
    }
    let span = now.duration_since(since).map_or(0, |d| d.as_millis() as i64);
    if span / bucket_ms > MAX_BUCKETS {
        return Err(format!("more than {MAX_BUCKETS} buckets: choose a larger bucket or a later since"));
    }
    Ok((since, bucket_ms))
}

/// `GET /tasks/active`.
pub fn active(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let viewer = app.viewer(cx);
    via_reader(app, cx, move |engine| match engine.active(ACTIVE_LIMIT) {
        Ok(mut tasks) => {
            tasks.retain(|t| visible(viewer, t.owner.as_deref()));
            Response::json(200, &json!({ "count": tasks.len(), "tasks": tasks }))
        }
        Err(e) => store_failed(&e),
    })
}

/// Task counts by state and priority, queue, pool and store figures.
pub fn figures(engine: &Engine) -> Result<serde_json::Value, StoreError> {
    let counts = engine.counts()?;
    let mut by_state = BTreeMap::new();
    for state in TaskState::ALL {
        let per = counts.get(&state);
        let mut row = BTreeMap::new();
        let mut total = 0;
        for priority in Priority::ALL {
            let n = per.and_then(|p| p.get(&priority)).copied().unwrap_or(0);
            row.insert(priority.name(), n);
            total += n;
        }
        row.insert("total", total);
        by_state.insert(state.name(), row);
    }
    let commits = engine.commit_figures();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let recovered = engine.recovered();
    Ok(json!({
        "tasks": by_state,
        "queue": {
            "waiting": engine.waiting(),
            "waiting_bytes": engine.waiting_bytes(),
            "capacity": engine.config().queue_capacity,
            "capacity_bytes": engine.config().max_queued_bytes,
            "refused_total": engine.refused(),
        },
        "pool": engine.pool_stats(),
        "store": {
            "figures": engine.store_figures(),
            "commit_groups_total": load(&commits.groups),
            "writes_total": load(&commits.writes),
            "failed_commits_total": load(&commits.failed),
            "commits": engine.times().commit_summary(),
            "recovered": {
                "queued": recovered.queued,
                "requeued": recovered.requeued,
                "callbacks": recovered.callbacks,
            },
        },
    }))
}

/// `GET /tasks/stats`.
pub fn stats(app: &App, _: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    via_reader(app, cx, move |engine| match figures(engine) {
        Ok(figures) => Response::json(200, &figures),
        Err(e) => store_failed(&e),
    })
}

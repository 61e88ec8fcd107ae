//! Following and managing tasks: status, cancel, active list, stats.

use std::collections::BTreeMap;

use serde_json::json;

use super::analyze::problem;
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::CancelError;
use crate::jobs::{TaskError, TaskId, TaskState};
use crate::pool::Priority;
use crate::reactor::{Context, Reply};

fn task_id(params: &Params<'_>) -> Result<TaskId, Response> {
    params.get("id").and_then(|id| id.parse().ok()).ok_or_else(not_found)
}

fn not_found() -> Response {
    Response::problem(404, "task-not-found", "no task with this id (it may have expired)")
}

/// `GET /analyze/status/{id}`.
pub fn status(app: &App, _: &Request<'_>, params: Params<'_>, _: &mut Context<'_>) -> Reply {
    let view = task_id(&params).and_then(|id| app.engine.result(id).ok_or_else(not_found));
    Reply::Now(match view {
        Ok(view) => Response::json(200, &view),
        Err(response) => response,
    })
}

/// `DELETE /tasks/{id}` and `POST /tasks/{id}/revoke`.
pub fn cancel(app: &App, _: &Request<'_>, params: Params<'_>, _: &mut Context<'_>) -> Reply {
    let id = match task_id(&params) {
        Ok(id) => id,
        Err(response) => return Reply::Now(response),
    };
    Reply::Now(match app.engine.cancel(id) {
        Ok(view) => Response::json(200, &view),
        Err(CancelError::NotFound) => not_found(),
        Err(CancelError::Finished(state)) => {
            problem(&TaskError::new(409, "task-finished", format!("the task has already ended ({})", state.name())))
        }
    })
}

/// `GET /tasks/active`.
pub fn active(app: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    let tasks = app.engine.store().active();
    Reply::Now(Response::json(200, &json!({ "count": tasks.len(), "tasks": tasks })))
}

/// Task counts by state and priority, queue and pool figures.
pub fn figures(app: &App) -> serde_json::Value {
    let counts = app.engine.store().counts();
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
    let engine = &app.engine;
    json!({
        "tasks": by_state,
        "queue": {
            "waiting": engine.waiting(),
            "capacity": engine.config().queue_capacity,
            "refused_total": engine.refused(),
        },
        "pool": engine.pool_stats(),
    })
}

/// `GET /tasks/stats`.
pub fn stats(app: &App, _: &Request<'_>, _: Params<'_>, _: &mut Context<'_>) -> Reply {
    Reply::Now(Response::json(200, &figures(app)))
}

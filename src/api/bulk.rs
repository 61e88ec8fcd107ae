//! Batches: `POST /bulk/analyze/async` and the streamed NDJSON of
//! `GET /bulk/{id}/results`, read from the store.

use std::sync::{Arc, Mutex};

use super::analyze::{body_kind, idempotency_key, problem, submit as submit_task, via_intake};
use super::input::parse_bulk;
use super::tasks::{may_act, store_failed};
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::BatchEvent;
use crate::jobs::TaskId;
use crate::reactor::{Context, Reply, StreamSender};

/// `POST /bulk/analyze/async`.
pub fn submit(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    // A batch is JSON only: body_kind refuses text/html here.
    let key = match body_kind(request, false).and_then(|_| idempotency_key(request)) {
        Ok(key) => key,
        Err(response) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let limits = app.config.limits;
    let owner = App::owner(cx);
    let directives = super::cache::Directives::parse(request.head.header("cache-control"));
    via_intake(app, cx, body.len(), move |responder, engine, guard| match parse_bulk(&body, limits, guard) {
        Err(e) => responder.send(problem(&e)),
        Ok(mut bulk) => {
            for item in &mut bulk.items {
                item.cache = directives;
            }
            submit_task(engine, bulk.into_spec(key, owner), responder)
        }
    })
}

/// Documents as NDJSON: one a line.
fn ndjson(docs: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(docs.iter().map(|d| d.len() + 1).sum());
    for doc in docs {
        out.extend_from_slice(doc);
        out.push(b'\n');
    }
    out
}

fn batch_not_found() -> Response {
    Response::problem(404, "batch-not-found", "no batch with this id (it may have expired)")
}

/// `GET /bulk/{id}/results`: one NDJSON line per finished item, streamed
/// with chunked encoding while the batch runs; ends when the batch does.
pub fn results(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let Some(id) = params.get("id").and_then(|id| id.parse::<TaskId>().ok()) else {
        return Reply::Now(batch_not_found());
    };
    let engine = Arc::clone(&app.engine);
    let viewer = app.viewer(cx);
    // The responder is taken by the first line (the stream starts), or
    // answers 404 / 503 if there is no batch to stream.
    let responder = Arc::new(Mutex::new(Some(cx.defer())));
    app.engine.spawn_read(Box::new(move || {
        // Another key's batch is not found (a store failure shows below).
        if let Ok(false) = may_act(&engine, id, viewer) {
            if let Some(responder) = responder.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
                responder.send(batch_not_found());
            }
            return;
        }
        let taken = Arc::clone(&responder);
        let mut sender: Option<StreamSender> = None;
        let start = move || -> Option<StreamSender> {
            let responder = taken.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()?;
            Some(responder.stream(Response::streaming(200, "application/x-ndjson")))
        };
        let found = engine.batch_results(
            id,
            Box::new(move |event| {
                if sender.is_none() {
                    sender = start();
                }
                match event {
                    BatchEvent::Items(docs) => {
                        if let (Some(sender), false) = (&sender, docs.is_empty()) {
                            sender.send(ndjson(docs));
                        }
                        true
                    }
                    BatchEvent::End => {
                        if let Some(sender) = sender.take() {
                            sender.finish();
                        }
                        false
                    }
                }
            }),
        );
        // A batch found always took the responder with its first call.
        let untouched = responder.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(responder) = untouched {
            responder.send(match (found, engine.status(id)) {
                (Err(e), _) | (_, Err(e)) => store_failed(&e),
                (Ok(_), Ok(Some(_))) => Response::problem(
                    404,
                    "not-a-batch",
                    &format!("task {id} is one page, not a batch: its result is at /analyze/status/{id}"),
                ),
                (Ok(_), Ok(None)) => batch_not_found(),
            });
        }
    }));
    Reply::Later
}

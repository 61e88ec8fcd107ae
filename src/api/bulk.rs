//! Batches: `POST /bulk/analyze/async` and the streamed NDJSON of
//! `GET /bulk/{id}/results`.

use std::sync::Arc;

use super::analyze::{body_kind, idempotency_key, problem, queue_full, submitted, via_intake};
use super::input::parse_bulk;
use super::work::callback_on_done;
use super::App;
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::BatchEvent;
use crate::jobs::TaskId;
use crate::reactor::{Context, Reply};

/// `POST /bulk/analyze/async`.
pub fn submit(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    // A batch is JSON only: body_kind refuses text/html here.
    let key = match body_kind(request, false).and_then(|_| idempotency_key(request)) {
        Ok(key) => key,
        Err(response) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let limits = app.config.limits;
    let engine = Arc::clone(&app.engine);
    let pages = app.pages.clone();
    let secret = app.config.callback_secret.clone();
    via_intake(app, cx, move || match parse_bulk(&body, limits, pages.fetcher().guard()) {
        Err(e) => problem(&e),
        Ok(bulk) => {
            let items = bulk.items.into_iter().map(|page| pages.work(page)).collect();
            let on_done = bulk.callback.map(|url| callback_on_done(pages.fetcher(), url, secret));
            submitted(&engine, engine.submit_batch(bulk.priority, bulk.timeout, key, items, on_done))
        }
    })
}

/// `GET /bulk/{id}/results`: one NDJSON line per finished item, streamed
/// with chunked encoding while the batch runs; ends when the batch does.
pub fn results(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let id: Option<TaskId> = params.get("id").and_then(|id| id.parse().ok());
    let Some(id) = id.filter(|id| app.engine.has_batch(*id)) else {
        return Reply::Now(Response::problem(404, "batch-not-found", "no batch with this id (it may have expired)"));
    };
    // The lines so far can be megabytes: they are copied off the reactor.
    let engine = Arc::clone(&app.engine);
    let responder = cx.defer();
    let intake = app.engine.spawn_intake(Box::new(move || {
        let mut sender = Some(responder.stream(Response::streaming(200, "application/x-ndjson")));
        engine.batch_results(
            id,
            Box::new(move |event| match event {
                BatchEvent::Line(lines) => {
                    if let Some(sender) = &sender {
                        sender.send(lines.to_vec());
                    }
                    true
                }
                BatchEvent::End => {
                    if let Some(sender) = sender.take() {
                        sender.finish();
                    }
                    false
                }
            }),
        );
    }));
    match intake {
        Ok(()) => Reply::Later,
        // As in `via_intake`: this answer fills the slot before the dropped responder's fallback.
        Err(e) => Reply::Now(queue_full(&e)),
    }
}

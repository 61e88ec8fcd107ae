//! The site audit over HTTP. `POST /crawl` stores a crawl task (its
//! settings are the task's data); a crawler thread runs it and its report
//! is the task's result. `GET /crawl/{id}` is its status (live progress in
//! `progress.stage`) and report; `/issues`, `/pages` (NDJSON, `?issue=ID`),
//! `/report.csv` and `/report.html` are views of the report; `DELETE`
//! cancels it.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use super::analyze::{idempotency_key, problem, submit as submit_task, via_intake};
use super::input::{callback, priority, task_options, timeout, InputLimits};
use super::tasks::{cancel_task, seen_by, status_response, store_failed};
use super::App;
use crate::crawl::journal::NoJournal;
use crate::crawl::report::{write_html, write_issues_csv};
use crate::crawl::{crawl, CrawlProgress, CrawlSettings, SiteReport};
use crate::fetch::{Fetcher, Guard};
use crate::http::request::Request;
use crate::http::response::Response;
use crate::http::router::Params;
use crate::jobs::engine::{BatchEvent, Ended, Journal, Resume};
use crate::jobs::{Engine, Payload, TaskError, TaskId, TaskInput, TaskSpec, TaskState, Work};
use crate::reactor::{Context, Reply, Responder};

/// The kind of a crawl task.
pub const CRAWL: &str = "crawl";

/// Crawls run at once, each on a thread of its own; more wait their turn.
pub const CRAWLERS: usize = 2;

/// Most pages a crawl asked of the service may fetch: a crawl holds about
/// 500 bytes a URL (and as many links to other sites again), so this bounds
/// what one client's crawl can take to some 100 MB. `pagelens crawl` on the
/// command line allows more.
pub const MAX_API_PAGES: usize = 100_000;

type Job = Box<dyn FnOnce() + Send>;

/// The crawler threads (started with the first crawl), and the way to them.
#[derive(Debug, Default)]
pub struct Crawlers {
    jobs: std::sync::OnceLock<Result<mpsc::Sender<Job>, String>>,
}

impl Crawlers {
    /// The way to the crawler threads, started now if they are not.
    fn jobs(&self) -> Result<&mpsc::Sender<Job>, TaskError> {
        let started = self.jobs.get_or_init(|| {
            let (jobs, queue) = mpsc::channel::<Job>();
            let queue = Arc::new(Mutex::new(queue));
            for n in 0..CRAWLERS {
                let queue = Arc::clone(&queue);
                let spawned = std::thread::Builder::new().name(format!("crawler-{n}")).spawn(move || loop {
                    // The lock is held only while waiting for the next job.
                    let job = queue.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                    match job {
                        // A panic ends its crawl (its dropped Resume fails the
                        // task), never the thread the next crawls need.
                        Ok(job) => drop(std::panic::catch_unwind(std::panic::AssertUnwindSafe(job))),
                        Err(_) => return,
                    }
                });
                spawned.map_err(|e| format!("cannot start a crawler thread: {e}"))?;
            }
            Ok(jobs)
        });
        started.as_ref().map_err(|e| TaskError::new(503, "no-crawler", e.clone()))
    }

    /// The work of a crawl task: a crawler thread runs it, and the report
    /// is encoded on the pool.
    pub fn work(&self, fetcher: &Arc<Fetcher>, payload: Payload) -> Result<Work, TaskError> {
        let damaged = |e: String| TaskError::new(500, "damaged-task", format!("the stored crawl is damaged: {e}"));
        let settings: CrawlSettings = serde_json::from_value(payload.args).map_err(|e| damaged(e.to_string()))?;
        let checked = settings.check().map_err(|(field, why)| damaged(format!("{field}: {why}")))?;
        let (jobs, fetcher) = (self.jobs()?.clone(), Arc::clone(fetcher));
        Ok(Work::Io(Box::new(move |resume: Resume| {
            let job: Job = Box::new(move || {
                let cancel = resume.cancel_flag();
                let progress = resume.progress();
                let mut tell = |p: &CrawlProgress| progress(percent(p), stage(p));
                // With --store memory a journal could never be read back.
                let journal = resume.journal();
                let mut journal: Box<dyn crate::crawl::journal::Journal> =
                    if journal.kept() { Box::new(StoreJournal(journal)) } else { Box::new(NoJournal) };
                match crawl(checked, &fetcher, &cancel, &mut *journal, &mut tell) {
                    Ok(report) => resume.then(Box::new(move |_| {
                        serde_json::value::to_raw_value(&report.report())
                            .map_err(|e| TaskError::new(500, "internal", format!("cannot encode the report: {e}")))
                    })),
                    Err(e) => resume.fail(TaskError::new(e.status, e.code, e.detail)),
                }
            });
            // Refused (the job dropped, failing the task) only if every crawler thread is gone.
            let _ = jobs.send(job);
        })))
    }
}

/// A crawl's journal kept with its task in the store.
struct StoreJournal(Journal);

impl crate::crawl::journal::Journal for StoreJournal {
    fn read(&mut self, skip: usize, most: usize) -> Vec<Vec<u8>> {
        self.0.read(skip, most).unwrap_or_else(|e| {
            crate::error!("{:?}: the crawl's journal cannot be read ({e}): crawling from the start", self.0);
            Vec::new()
        })
    }

    fn write(&mut self, n: usize, line: Vec<u8>) {
        self.0.write(n, line);
    }
}

/// How far a crawl is: fetched over all known to fetch, short of 100 until it ends.
fn percent(p: &CrawlProgress) -> u8 {
    let all = (p.fetched + p.queued + p.in_flight).max(1);
    (p.fetched * 99 / all).min(99) as u8
}

/// The progress stage of a crawl: its figures, for a person and a parser.
fn stage(p: &CrawlProgress) -> String {
    format!(
        "crawling: {} fetched, {} queued, {} errors, {} discovered, {:.1} pages/s",
        p.fetched, p.queued, p.errors, p.discovered, p.pages_per_second
    )
}

/// Checks a `POST /crawl` body into the crawl task, under the client's
/// idempotency `key`, for the API key `owner`.
fn parse(
    body: &[u8],
    limits: InputLimits,
    guard: &Guard,
    key: Option<String>,
    owner: Option<String>,
) -> Result<TaskSpec, TaskError> {
    let invalid = |detail: String| TaskError::new(422, "invalid-field", detail);
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| TaskError::new(400, "malformed-json", format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut fields) = value else { return Err(invalid("the body must be a JSON object".into())) };
    let text = |v: Option<Value>, name: &str| match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(invalid(format!("{name}: expected a string, not {other}"))),
    };
    let priority = priority(text(fields.remove("priority"), "priority")?.as_deref())?;
    let timeout_ms = match fields.remove("timeout_ms") {
        None => None,
        Some(Value::Number(n)) => Some(n),
        Some(other) => return Err(invalid(format!("timeout_ms: expected a number, not {other}"))),
    };
    // A crawl takes as long as it may, unless asked for less.
    let timeout = timeout(timeout_ms.as_ref(), limits)?.unwrap_or(limits.max_timeout);
    let settings: CrawlSettings = serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(e.to_string()))?;
    let callback = callback(settings.callback_url.as_deref(), guard)?;
    if settings.max_pages > MAX_API_PAGES {
        let detail = format!("max_pages: at most {MAX_API_PAGES} through the service (pagelens crawl allows more)");
        return Err(invalid(detail));
    }
    let checked = settings.check().map_err(|(field, why)| {
        TaskError::new(422, if field == "url" { "bad-url" } else { "invalid-field" }, format!("{field}: {why}"))
    })?;
    guard.check_url(&checked.start).map_err(|e| TaskError::new(e.status, e.code, format!("url: {}", e.detail)))?;
    let args = serde_json::to_value(&checked.settings).map_err(|e| invalid(e.to_string()))?;
    Ok(TaskSpec {
        kind: CRAWL.into(),
        input: TaskInput::One(Payload { args, body: Vec::new() }),
        options: task_options(priority, Some(timeout), callback, key, owner),
    })
}

/// `POST /crawl`.
pub fn submit(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let key = match super::analyze::body_kind(request, false).and_then(|_| idempotency_key(request)) {
        Ok(key) => key,
        Err(response) => return Reply::Now(response),
    };
    let body = request.body.to_vec();
    let limits = app.config.limits;
    let owner = App::owner(cx);
    via_intake(app, cx, body.len(), move |responder, engine, guard| match parse(&body, limits, guard, key, owner) {
        Err(e) => responder.send(problem(&e)),
        Ok(spec) => submit_task(engine, spec, responder),
    })
}

fn crawl_not_found() -> Response {
    Response::problem(404, "crawl-not-found", "no crawl with this id (it may have expired)")
}

/// The crawl `id` in `params` as the client may see it, read on a store
/// reader, handed to `answer` with the responder (`404` if there is none).
fn on_crawl(
    app: &App,
    params: &Params<'_>,
    cx: &mut Context<'_>,
    answer: impl FnOnce(&Arc<Engine>, Ended, Responder) + Send + 'static,
) -> Reply {
    let Some(id) = params.get("id").and_then(|id| id.parse::<TaskId>().ok()) else {
        return Reply::Now(crawl_not_found());
    };
    let viewer = app.viewer(cx);
    let responder = cx.defer();
    let engine = Arc::clone(app.engine());
    app.engine().spawn_read(Box::new(move || match seen_by(&engine, id, viewer) {
        Ok(Some(ended)) if ended.view.kind == CRAWL => answer(&engine, ended, responder),
        Ok(_) => responder.send(crawl_not_found()),
        Err(e) => responder.send(store_failed(&e)),
    }));
    Reply::Later
}

/// The crawl `id` in `params` as the client may see it, and what to answer with it.
fn with_crawl(
    app: &App,
    params: &Params<'_>,
    cx: &mut Context<'_>,
    answer: impl FnOnce(Ended) -> Response + Send + 'static,
) -> Reply {
    on_crawl(app, params, cx, move |_, ended, responder| responder.send(answer(ended)))
}

/// `GET /crawl/{id}`: the status, with the report once it has completed.
pub fn status(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    with_crawl(app, &params, cx, |ended| status_response(&ended))
}

/// `DELETE /crawl/{id}`: the crawl stops; what it found until then is not kept.
pub fn cancel(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let engine = Arc::clone(app.engine());
    with_crawl(app, &params, cx, move |ended| cancel_task(&engine, ended.view.task_id))
}

/// The report of a completed crawl, or the answer saying why there is none.
fn report_of(ended: &Ended) -> Result<SiteReport, Response> {
    match (&ended.result, ended.view.status) {
        (Some(result), TaskState::Completed) => serde_json::from_slice(result)
            .map_err(|e| Response::problem(500, "damaged-report", &format!("the stored report is damaged: {e}"))),
        (_, status) => Err(Response::problem(
            409,
            "crawl-not-completed",
            &format!(
                "the crawl is {}: its report is here once it has completed ({})",
                status.name(),
                ended.view.progress.stage
            ),
        )),
    }
}

/// `GET /crawl/{id}/issues`: the issues with their pages.
pub fn issues(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    with_crawl(app, &params, cx, |ended| match report_of(&ended) {
        Ok(report) => Response::json(200, &serde_json::json!({ "issues": report.issues })),
        Err(response) => response,
    })
}

/// `GET /crawl/{id}/pages[?issue=ID]`: one JSON line a page, only those
/// with the issue when one is named. While the crawl runs, its pages as
/// they are fetched, from its journal (what each page says of itself: the
/// site's checks come with the report), the stream ending with the crawl.
pub fn pages(app: &App, request: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let query = request.head.query.unwrap_or("").as_bytes();
    let issue =
        url::form_urlencoded::parse(query).find(|(name, _)| name == "issue").map(|(_, value)| value.into_owned());
    on_crawl(app, &params, cx, move |engine, ended, responder| {
        let running = !ended.view.status.is_final();
        match report_of(&ended) {
            Err(_) if running && engine.has_journal(ended.view.task_id).unwrap_or(false) => {
                let mut stream = Some(responder.stream(Response::streaming(200, "application/x-ndjson")));
                engine.follow_journal(
                    ended.view.task_id,
                    Box::new(move |event| {
                        let Some(sender) = stream.as_ref().filter(|s| !s.is_gone()) else { return false };
                        match event {
                            BatchEvent::Items(lines) => {
                                let rows = journal_rows(lines, issue.as_deref());
                                if !rows.is_empty() {
                                    sender.send(rows);
                                }
                                true
                            }
                            BatchEvent::End => {
                                if let Some(sender) = stream.take() {
                                    sender.finish();
                                }
                                false
                            }
                        }
                    }),
                );
            }
            Err(response) => responder.send(response),
            Ok(report) => responder.send(page_rows(&report, issue.as_deref())),
        }
    })
}

/// The report's pages as NDJSON (those with `issue`, when named).
fn page_rows(report: &SiteReport, issue: Option<&str>) -> Response {
    let mut body = Vec::new();
    let rows = report.pages.iter().filter(|p| issue.is_none_or(|i| p.issues.iter().any(|x| x == i)));
    for row in rows {
        // A row of strings and numbers always serialises.
        if serde_json::to_writer(&mut body, row).is_ok() {
            body.push(b'\n');
        }
    }
    Response::with_body(200, "application/x-ndjson", body)
}

/// The NDJSON rows of journal `lines`: a page's own figures and failed
/// checks (those with `issue` only, when named).
fn journal_rows(lines: &[Vec<u8>], issue: Option<&str>) -> Vec<u8> {
    use crate::crawl::journal::{Fetch, Line};
    let mut body = Vec::new();
    for line in lines.iter().filter_map(|l| serde_json::from_slice::<Line>(l).ok()) {
        let row = match line.fetch {
            Fetch::Response { status, content_type, first_byte_ms, page, .. } => {
                let issues: Vec<&str> =
                    page.as_ref().map_or(Vec::new(), |p| p.failed_checks.iter().map(|(id, _)| id.as_str()).collect());
                if issue.is_some_and(|wanted| !issues.contains(&wanted)) {
                    continue;
                }
                serde_json::json!({
                    "url": line.url, "status": status, "content_type": content_type, "first_byte_ms": first_byte_ms,
                    "title": page.as_ref().and_then(|p| p.title.clone()), "word_count": page.as_ref().map(|p| p.word_count),
                    "score": page.as_ref().map(|p| p.score), "links_out": page.as_ref().map(|p| p.links.len()), "issues": issues,
                })
            }
            _ if issue.is_some() => continue,
            Fetch::Failed { code } => {
                serde_json::json!({ "url": line.url, "status": null, "error": code, "issues": [] })
            }
            Fetch::Blocked => {
                serde_json::json!({ "url": line.url, "status": null, "error": "robots-txt", "issues": [] })
            }
        };
        if serde_json::to_writer(&mut body, &row).is_ok() {
            body.push(b'\n');
        }
    }
    body
}

/// The report of a completed crawl written by `write`, as `content_type`.
fn report_as(
    app: &App,
    params: &Params<'_>,
    cx: &mut Context<'_>,
    content_type: &'static str,
    write: fn(&SiteReport, &mut Vec<u8>) -> std::io::Result<()>,
) -> Reply {
    with_crawl(app, params, cx, move |ended| match report_of(&ended) {
        Ok(report) => {
            let mut body = Vec::new();
            // Writing to memory cannot fail.
            let _ = write(&report, &mut body);
            Response::with_body(200, content_type, body)
        }
        Err(response) => response,
    })
}

/// `GET /crawl/{id}/report.csv`: one row an issue found on a page.
pub fn report_csv(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    report_as(app, &params, cx, "text/csv; charset=utf-8", write_issues_csv)
}

/// `GET /crawl/{id}/report.html`: the report as one self-contained page.
pub fn report_html(app: &App, _: &Request<'_>, params: Params<'_>, cx: &mut Context<'_>) -> Reply {
    report_as(app, &params, cx, "text/html; charset=utf-8", write_html)
}

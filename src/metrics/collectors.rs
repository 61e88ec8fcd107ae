//! Collectors for the figures the server and the task engine already keep.

use std::sync::Arc;

use std::sync::atomic::Ordering;

use super::{Collector, Exposition};
use crate::fetch::Fetcher;
use crate::jobs::{Engine, TaskState};
use crate::pool::Priority;
use crate::ratelimit::RateLimiter;
use crate::reactor::{AccessLog, ServerState};

/// Connection figures of the reactors.
pub fn server(state: Arc<ServerState>) -> Collector {
    Box::new(move |out: &mut Exposition| {
        out.single(
            "pagelens_http_connections_open",
            "gauge",
            "Open client connections.",
            state.connections_open() as f64,
        );
        out.single(
            "pagelens_http_connections_accepted_total",
            "counter",
            "Connections accepted.",
            state.connections_accepted() as f64,
        );
        out.single(
            "pagelens_http_connections_refused_total",
            "counter",
            "Connections refused (over --max-connections or out of descriptors).",
            state.connections_refused() as f64,
        );
        out.single(
            "pagelens_http_connections_timed_out_total",
            "counter",
            "Connections closed because the client was too slow.",
            state.connections_timed_out() as f64,
        );
    })
}

/// Refusals of the per-client rate limits, by route.
pub fn rate_limits(limiter: Arc<RateLimiter>) -> Collector {
    Box::new(move |out: &mut Exposition| {
        let name = "pagelens_http_rate_limited_total";
        out.family(name, "counter", "Requests refused with 429 by the per-client rate limits, by route.");
        for (route, n) in limiter.refused() {
            out.sample(name, &[("route", route)], n as f64);
        }
    })
}

/// Access-log lines dropped because its writer fell behind.
pub fn access_log(log: Arc<AccessLog>) -> Collector {
    Box::new(move |out: &mut Exposition| {
        out.single(
            "pagelens_access_log_dropped_total",
            "counter",
            "Access-log lines dropped because the writer fell behind.",
            log.dropped() as f64,
        );
    })
}

/// Task, queue and pool figures of the engine.
pub fn engine(engine: Arc<Engine>) -> Collector {
    Box::new(move |out: &mut Exposition| {
        // A failed read leaves the family empty for this scrape.
        let counts = engine.counts().unwrap_or_default();
        out.family("pagelens_tasks", "gauge", "Tasks kept, by state and priority.");
        for state in TaskState::ALL {
            for priority in Priority::ALL {
                let n = counts.get(&state).and_then(|p| p.get(&priority)).copied().unwrap_or(0);
                out.sample("pagelens_tasks", &[("state", state.name()), ("priority", priority.name())], n as f64);
            }
        }
        out.family(
            "pagelens_tasks_finished_total",
            "counter",
            "Tasks ended in this process, by final state and priority.",
        );
        for state in TaskState::ENDED {
            for priority in Priority::ALL {
                let n = engine.ended().of(state, priority);
                out.sample(
                    "pagelens_tasks_finished_total",
                    &[("state", state.name()), ("priority", priority.name())],
                    n as f64,
                );
            }
        }
        let pool = engine.pool_stats();
        out.family("pagelens_jobs_queued", "gauge", "Jobs waiting in the pool's injectors, by priority.");
        for (priority, n) in [("high", pool.queued.high), ("normal", pool.queued.normal), ("low", pool.queued.low)] {
            out.sample("pagelens_jobs_queued", &[("priority", priority)], n as f64);
        }
        out.single(
            "pagelens_task_queue_waiting",
            "gauge",
            "Tasks and batch items accepted, not yet started.",
            engine.waiting() as f64,
        );
        out.single(
            "pagelens_task_queue_capacity",
            "gauge",
            "The --queue-capacity limit.",
            engine.config().queue_capacity as f64,
        );
        out.single(
            "pagelens_tasks_refused_total",
            "counter",
            "Submissions refused with 503 (queue full).",
            engine.refused() as f64,
        );
        out.single("pagelens_pool_workers", "gauge", "Worker threads.", pool.workers as f64);
        out.single("pagelens_pool_workers_busy", "gauge", "Workers running a job.", pool.busy as f64);
        out.single(
            "pagelens_pool_steals_total",
            "counter",
            "Jobs taken from another worker's deque.",
            pool.steals as f64,
        );
        out.single("pagelens_pool_jobs_completed_total", "counter", "Jobs run to the end.", pool.completed as f64);
        out.single("pagelens_pool_jobs_panicked_total", "counter", "Jobs that panicked.", pool.panicked as f64);
        out.single(
            "pagelens_task_queue_bytes",
            "gauge",
            "Bytes of input of tasks accepted, not yet started.",
            engine.waiting_bytes() as f64,
        );
        let store = engine.store_figures();
        out.family("pagelens_store_bytes", "gauge", "Bytes the task store occupies (on disk for sqlite).");
        out.sample("pagelens_store_bytes", &[("backend", store.backend)], store.bytes as f64);
        let commits = engine.commit_figures();
        for (name, help, counter) in [
            ("pagelens_store_commit_groups_total", "Commit groups written to the task store.", &commits.groups),
            ("pagelens_store_writes_total", "Writes committed to the task store.", &commits.writes),
            ("pagelens_store_commit_failures_total", "Commit groups the task store failed.", &commits.failed),
        ] {
            out.single(name, "counter", help, counter.load(Ordering::Relaxed) as f64);
        }
        let recovered = engine.recovered();
        out.family("pagelens_store_recovered_tasks", "gauge", "Tasks found unfinished in the store at start.");
        out.sample("pagelens_store_recovered_tasks", &[("state", "queued")], recovered.queued as f64);
        out.sample("pagelens_store_recovered_tasks", &[("state", "processing")], recovered.requeued as f64);
        out.single(
            "pagelens_poison_tasks_total",
            "counter",
            "Tasks ended poison-task here: started --max-deliveries times without ending.",
            engine.poisoned() as f64,
        );
        if let Some(shared) = engine.shared_figures() {
            let figures = [
                ("pagelens_shared_tasks_taken_total", "Tasks this instance took from the shared queue.", shared.taken),
                (
                    "pagelens_shared_tasks_reclaimed_total",
                    "Tasks this instance took over from instances that stopped answering.",
                    shared.reclaimed,
                ),
            ];
            for (name, help, n) in figures {
                out.single(name, "counter", help, n as f64);
            }
            let up = if shared.down { 0.0 } else { 1.0 };
            out.single("pagelens_shared_queue_up", "gauge", "1 while the shared queue answers, 0 while it fails.", up);
        }
        if let Some(round_trips) = engine.queue_round_trips() {
            let help = "Round trips to Redis (one pipeline each; blocking reads of the queue left out).";
            round_trips.write(out, "pagelens_redis_round_trip_seconds", "", help);
        }
        engine.times().write(out);
    })
}

/// Figures of the outbound client.
pub fn fetch(fetcher: Arc<Fetcher>) -> Collector {
    Box::new(move |out: &mut Exposition| {
        let stats = fetcher.stats();
        let counters = [
            ("pagelens_fetch_requests_total", "Fetches started.", &stats.fetches),
            ("pagelens_fetch_failures_total", "Fetches that ended in an error.", &stats.failed),
            ("pagelens_fetch_retries_total", "Retries of transient failures.", &stats.retries),
            ("pagelens_fetch_connections_opened_total", "Upstream connections opened.", &stats.connections_opened),
            ("pagelens_fetch_connections_reused_total", "Exchanges on a kept-alive connection.", &stats.reused),
        ];
        for (name, help, counter) in counters {
            out.single(name, "counter", help, counter.load(Ordering::Relaxed) as f64);
        }
        out.family("pagelens_fetch_errors_total", "counter", "Failed fetches by error code.");
        for (code, n) in stats.errors.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            out.sample("pagelens_fetch_errors_total", &[("code", code)], *n as f64);
        }
        stats.durations.write(
            out,
            "pagelens_fetch_duration_seconds",
            "outcome",
            "Whole fetches, redirects and retries included.",
        );
        stats.steps.write(
            out,
            "pagelens_fetch_step_seconds",
            "step",
            "DNS, connect, TLS and first-byte time of successful fetches.",
        );
    })
}

/// The connection part of the live snapshot.
pub fn server_snapshot(state: Arc<ServerState>) -> super::SnapshotPart {
    Box::new(move || {
        ("connections", serde_json::json!({ "open": state.connections_open(), "max": state.max_connections() }))
    })
}

/// The queue part of the live snapshot.
pub fn engine_snapshot(engine: Arc<Engine>) -> super::SnapshotPart {
    Box::new(move || {
        let pool = engine.pool_stats();
        let total = |state: TaskState| engine.ended().get(state);
        // Counted in this process since it started: rules read its rises.
        let ended: u64 = TaskState::ENDED.into_iter().map(total).sum();
        let queue = serde_json::json!({
            "waiting": engine.waiting(),
            "capacity": engine.config().queue_capacity,
            "capacity_left": engine.config().queue_capacity.saturating_sub(engine.waiting()),
            "workers_busy": pool.busy,
            "workers": pool.workers,
            "tasks_ended_total": ended,
            "tasks_timed_out_total": total(TaskState::TimedOut),
        });
        ("queue", queue)
    })
}

//! The engine as a library for programs that embed pagelens: handlers by
//! kind, tasks as data, `submit`, `delay`, `delay_with_callback`, `status`,
//! `cancel`, recovery from a store, with work that has nothing to do with SEO.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagelens::jobs::engine::CancelError;
use pagelens::jobs::{
    Durability, Engine, Handlers, MemoryStore, SqliteStore, Store, SubmitError, Submitted, TaskError, TaskOptions,
    TaskSpec, TaskState, Work,
};
use serde_json::json;
use serde_json::value::RawValue;

use crate::util::{engine_config, TempDir};

/// `add` adds one to its argument; `sleep` sleeps in steps for `ms`
/// (checking for cancellation); `stubborn` sleeps and never checks; `fail`
/// fails.
fn handlers() -> Handlers {
    Handlers::default()
        .with("add", |p| {
            let n = p.args.as_u64().ok_or_else(|| TaskError::new(422, "not-a-number", "give a number"))?;
            Ok(Work::cpu(move |cx| {
                cx.stage(50, "adding")?;
                Ok(RawValue::from_string(format!("{{\"sum\":{}}}", n + 1)).unwrap())
            }))
        })
        .with("sleep", |p| {
            let total = Duration::from_millis(p.args.as_u64().unwrap_or(0));
            Ok(Work::cpu(move |cx| {
                let until = Instant::now() + total;
                while Instant::now() < until {
                    cx.check()?;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(RawValue::from_string("true".into()).unwrap())
            }))
        })
        .with("stubborn", |_| {
            Ok(Work::cpu(|_| {
                std::thread::sleep(Duration::from_millis(400));
                Ok(RawValue::from_string("1".into()).unwrap())
            }))
        })
        .with("fail", |_| Ok(Work::cpu(|_| Err(TaskError::new(422, "nope", "cannot")))))
}

fn engine_on(store: Store, workers: usize, capacity: usize) -> Arc<Engine> {
    let mut config = engine_config();
    config.workers = workers;
    config.queue_capacity = capacity;
    Engine::start(config, store, handlers()).unwrap()
}

fn engine(workers: usize, capacity: usize) -> Arc<Engine> {
    engine_on(Arc::new(MemoryStore::default()), workers, capacity)
}

fn task(kind: &str, args: serde_json::Value) -> TaskSpec {
    TaskSpec::one(kind, args, Vec::new(), TaskOptions::default())
}

fn created(submitted: Submitted) -> pagelens::jobs::TaskView {
    match submitted {
        Submitted::Created(view) => view,
        Submitted::Existing(view) => panic!("expected a new task, got {view:?}"),
    }
}

fn wait_state(engine: &Engine, id: pagelens::jobs::TaskId, state: TaskState) -> pagelens::jobs::Ended {
    let started = Instant::now();
    loop {
        let ended = engine.status(id).unwrap().unwrap();
        if ended.view.status == state {
            return ended;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "task {id} stuck in {:?}", ended.view.status);
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn submit_waits_for_the_result() {
    let engine = engine(2, 10);
    let ended = engine.submit(task("add", json!(41))).unwrap();
    assert_eq!(ended.view.status, TaskState::Completed);
    assert_eq!(ended.result.as_deref(), Some(&br#"{"sum":42}"#[..]));
    let ended = engine.submit(task("fail", json!(null))).unwrap();
    assert_eq!((ended.view.status, ended.view.error.unwrap().code.as_str()), (TaskState::Error, "nope"));
    // A kind no handler knows, and arguments its handler refuses, end the task, not the engine.
    let ended = engine.submit(task("teleport", json!(null))).unwrap();
    assert_eq!(ended.view.error.unwrap().code, "unknown-kind");
    let ended = engine.submit(task("add", json!("x"))).unwrap();
    assert_eq!(ended.view.error.unwrap().code, "not-a-number");
}

#[test]
fn delay_then_status_and_delay_with_callback() {
    let engine = engine(2, 10);
    let view = created(engine.delay(task("add", json!(1))).unwrap());
    let ended = wait_state(&engine, view.task_id, TaskState::Completed);
    assert_eq!(ended.result.as_deref(), Some(&br#"{"sum":2}"#[..]));
    let (tx, rx) = mpsc::channel();
    engine.delay_with_callback(task("add", json!(2)), Box::new(move |ended| tx.send(ended.clone()).unwrap())).unwrap();
    let done = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(done.result.as_deref(), Some(&br#"{"sum":3}"#[..]));
}

#[test]
fn cancel_stops_cooperative_work_and_frees_the_worker() {
    let engine = engine(1, 10);
    let long = created(engine.delay(task("sleep", json!(30_000))).unwrap());
    wait_state(&engine, long.task_id, TaskState::Processing);
    assert_eq!(engine.cancel(long.task_id).unwrap().view.status, TaskState::Cancelled);
    // The one worker is free again long before the 30 s are up.
    let ended = engine.submit(task("add", json!(9))).unwrap();
    assert_eq!(ended.view.status, TaskState::Completed);
    assert_eq!(engine.cancel(ended.view.task_id).unwrap_err(), CancelError::Finished(TaskState::Completed));
    assert_eq!(engine.cancel("0123456789abcdef0123456789abcdef".parse().unwrap()).unwrap_err(), CancelError::NotFound);
}

#[test]
fn timeouts_are_enforced_whatever_the_job_does() {
    let engine = engine(1, 10);
    let mut spec = task("stubborn", json!(null));
    spec.options.timeout_ms = Some(50);
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    engine.delay_with_callback(spec, Box::new(move |ended| tx.send(ended.clone()).unwrap())).unwrap();
    let ended = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(ended.view.status, TaskState::TimedOut);
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
}

#[test]
fn admission_is_bounded() {
    let engine = engine(1, 2);
    let blocker = created(engine.delay(task("sleep", json!(300))).unwrap());
    wait_state(&engine, blocker.task_id, TaskState::Processing);
    engine.delay(task("add", json!(1))).unwrap();
    engine.delay(task("add", json!(2))).unwrap();
    assert!(matches!(engine.delay(task("add", json!(3))), Err(SubmitError::Full { .. })));
    assert_eq!(engine.refused(), 1);
    wait_state(&engine, blocker.task_id, TaskState::Completed);
    let started = Instant::now();
    while engine.waiting() > 0 {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(engine.delay(task("add", json!(4))).is_ok());
}

#[test]
fn an_idempotency_key_names_one_task() {
    let engine = engine(1, 10);
    let mut spec = task("add", json!(5));
    spec.options.idempotency_key = Some("order-17".into());
    let first = created(engine.delay(spec.clone()).unwrap());
    match engine.delay(spec).unwrap() {
        Submitted::Existing(view) => assert_eq!(view.task_id, first.task_id),
        other => panic!("expected the first task, got {other:?}"),
    }
}

/// An engine stopped with tasks queued (as SIGTERM stops one) leaves them in
/// its SQLite store; the next engine on the same file runs them to the end.
#[test]
fn queued_tasks_survive_a_restart_on_sqlite() {
    let dir = TempDir::new("engine-restart");
    let path = dir.path().join("tasks.db");
    let open = || -> Store { Arc::new(SqliteStore::open(&path, Durability::Process).unwrap()) };
    let engine = engine_on(open(), 1, 100);
    let blocker = created(engine.delay(task("sleep", json!(200))).unwrap());
    wait_state(&engine, blocker.task_id, TaskState::Processing);
    let queued: Vec<_> = (0..20).map(|n| created(engine.delay(task("add", json!(n))).unwrap()).task_id).collect();
    let left = engine.shutdown(Duration::from_secs(5));
    assert_eq!((left.queued, left.running), (20, 0), "the running task finished; the queued ones stayed");
    assert_eq!(engine.status(blocker.task_id).unwrap().unwrap().view.status, TaskState::Completed);
    drop(engine);

    let engine = engine_on(open(), 2, 100);
    let recovered = engine.recover().unwrap();
    assert_eq!((recovered.queued, recovered.requeued), (20, 0));
    for (n, id) in queued.iter().enumerate() {
        let ended = wait_state(&engine, *id, TaskState::Completed);
        assert_eq!(ended.result.as_deref(), Some(format!("{{\"sum\":{}}}", n + 1).as_bytes()));
        assert_eq!(ended.view.status, TaskState::Completed);
    }
}

//! The engine as a library for programs that embed pagelens: `submit`,
//! `delay`, `delay_with_callback`, `result`, `cancel`, with work that has
//! nothing to do with SEO.

use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pagelens::jobs::engine::CancelError;
use pagelens::jobs::{Engine, MemoryStore, SubmitError, Submitted, TaskError, TaskSpec, TaskState, Work};
use pagelens::pool::Priority;
use serde_json::value::RawValue;

use crate::util::engine_config;

fn engine(workers: usize, capacity: usize) -> Arc<Engine> {
    let mut config = engine_config();
    config.workers = workers;
    config.queue_capacity = capacity;
    Engine::start(config, Arc::new(MemoryStore::default())).unwrap()
}

fn spec(work: Work) -> TaskSpec {
    TaskSpec { kind: "analyze", priority: Priority::Normal, timeout: None, idempotency_key: None, work }
}

fn answer(n: u64) -> Work {
    Work::cpu(move |cx| {
        cx.stage(50, "adding")?;
        Ok(RawValue::from_string(format!("{{\"sum\":{}}}", n + 1)).unwrap())
    })
}

/// Work that sleeps in steps, checking for cancellation between them.
fn sleeper(total: Duration) -> Work {
    Work::cpu(move |cx| {
        let until = Instant::now() + total;
        while Instant::now() < until {
            cx.check()?;
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(RawValue::from_string("true".into()).unwrap())
    })
}

#[test]
fn submit_waits_for_the_result() {
    let engine = engine(2, 10);
    let view = engine.submit(spec(answer(41))).unwrap();
    assert_eq!(view.status, TaskState::Completed);
    assert_eq!(view.result.unwrap().get(), r#"{"sum":42}"#);
    let failing = Work::cpu(|_| Err(TaskError::new(422, "nope", "cannot")));
    let view = engine.submit(spec(failing)).unwrap();
    assert_eq!((view.status, view.error.unwrap().code.as_str()), (TaskState::Error, "nope"));
}

#[test]
fn delay_then_result_and_delay_with_callback() {
    let engine = engine(2, 10);
    let Submitted::Created(view) = engine.delay(spec(answer(1))).unwrap() else { panic!("new task") };
    let started = Instant::now();
    while engine.result(view.task_id).unwrap().status != TaskState::Completed {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(5));
    }
    let (tx, rx) = mpsc::channel();
    engine.delay_with_callback(spec(answer(2)), Box::new(move |view| tx.send(view).unwrap())).unwrap();
    let done = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(done.result.unwrap().get(), r#"{"sum":3}"#);
}

#[test]
fn cancel_stops_cooperative_work_and_frees_the_worker() {
    let engine = engine(1, 10);
    let Submitted::Created(long) = engine.delay(spec(sleeper(Duration::from_secs(30)))).unwrap() else { panic!() };
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(engine.cancel(long.task_id).unwrap().status, TaskState::Cancelled);
    // The one worker is free again long before the 30 s are up.
    let view = engine.submit(spec(answer(9))).unwrap();
    assert_eq!(view.status, TaskState::Completed);
    assert_eq!(engine.cancel(view.task_id).unwrap_err(), CancelError::Finished(TaskState::Completed));
    assert_eq!(engine.cancel("0123456789abcdef0123456789abcdef".parse().unwrap()).unwrap_err(), CancelError::NotFound);
}

#[test]
fn timeouts_are_enforced_whatever_the_job_does() {
    let engine = engine(1, 10);
    // This job ignores its cancel token entirely.
    let stubborn = Work::cpu(|_| {
        std::thread::sleep(Duration::from_millis(400));
        Ok(RawValue::from_string("1".into()).unwrap())
    });
    let mut s = spec(stubborn);
    s.timeout = Some(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    engine.delay_with_callback(s, Box::new(move |view| tx.send(view).unwrap())).unwrap();
    let view = rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(view.status, TaskState::TimedOut);
    assert!(started.elapsed() < Duration::from_millis(300), "{:?}", started.elapsed());
}

#[test]
fn admission_is_bounded() {
    let engine = engine(1, 2);
    let blocker = engine.delay(spec(sleeper(Duration::from_millis(300)))).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    engine.delay(spec(answer(1))).unwrap();
    engine.delay(spec(answer(2))).unwrap();
    assert!(matches!(engine.delay(spec(answer(3))), Err(SubmitError::Full { .. })));
    assert_eq!(engine.refused(), 1);
    let Submitted::Created(blocker) = blocker else { panic!() };
    let started = Instant::now();
    while engine.waiting() > 0 || engine.result(blocker.task_id).unwrap().status != TaskState::Completed {
        assert!(started.elapsed() < Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(engine.delay(spec(answer(4))).is_ok());
}

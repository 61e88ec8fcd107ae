//! The CPU pool: worker threads taking jobs from one `Injector` per
//! priority and from each other's local deques (crossbeam-deque).
//!
//! - Jobs go to the injector of their priority; sub-jobs a running job
//!   spawns with [`Pool::spawn_local`] (a batch's items) go to its worker's
//!   local deque, where idle workers steal them.
//! - Each worker looks at high before anything else, but every 4th pick
//!   looks at normal first and every 16th at low first, so a stream of high
//!   jobs slows low ones down but never starves them.
//! - Injectors are read with single `steal()`s, never batches: a batch moved
//!   into a local deque would hide a later high job behind up to 32 low ones.
//! - Idle workers park. A producer pushes, then (after a SeqCst fence) looks
//!   for a worker whose `sleeping` flag is set and wakes it; a worker sets
//!   its flag, fences, and looks at every queue once more before parking.
//!   Either the producer sees the flag or the worker sees the job: no
//!   wake-up is lost (the Dekker pair rayon's sleep module documents).
//! - A job that panics is caught and counted; its worker carries on.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_deque::{Injector, Steal, Stealer, Worker};
use crossbeam_utils::sync::{Parker, Unparker};
use serde::Serialize;

/// A unit of work.
pub type Job = Box<dyn FnOnce() + Send + 'static>;

/// Job priority.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Taken before anything else.
    High,
    /// The default.
    #[default]
    Normal,
    /// Taken when nothing else waits (and now and then regardless).
    Low,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// Its place in [`Priority::ALL`] (0 is the highest): stable, stores keep it.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// Figures about the pool, read without locks.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStats {
    /// Worker threads.
    pub workers: usize,
    /// Workers running a job now.
    pub busy: usize,
    /// Jobs waiting, by priority (injectors only; batch items are counted by their batch).
    pub queued: QueuedByPriority,
    /// Jobs taken from another worker's deque.
    pub steals: u64,
    /// Jobs finished.
    pub completed: u64,
    /// Jobs that panicked.
    pub panicked: u64,
}

/// Waiting jobs per priority.
#[derive(Debug, Clone, Serialize)]
#[allow(missing_docs)]
pub struct QueuedByPriority {
    pub high: usize,
    pub normal: usize,
    pub low: usize,
}

struct Shared {
    injectors: [Injector<Job>; 3],
    stealers: Vec<Stealer<Job>>,
    sleeping: Vec<AtomicBool>,
    unparkers: Vec<Unparker>,
    shutdown: AtomicBool,
    busy: AtomicUsize,
    steals: AtomicU64,
    completed: AtomicU64,
    panicked: AtomicU64,
}

/// A worker thread's own deque, and the pool it belongs to.
struct Local {
    shared: Arc<Shared>,
    deque: Worker<Job>,
}

thread_local! {
    /// The local deque of the pool worker running on this thread, if any.
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

/// The work-stealing pool.
pub struct Pool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("workers", &self.threads.len()).finish()
    }
}

impl Pool {
    /// Starts `workers` threads (at least one), named `{name}-{index}`.
    pub fn new(name: &str, workers: usize) -> std::io::Result<Pool> {
        let workers = workers.max(1);
        let locals: Vec<Worker<Job>> = (0..workers).map(|_| Worker::new_fifo()).collect();
        let parkers: Vec<Parker> = (0..workers).map(|_| Parker::new()).collect();
        let shared = Arc::new(Shared {
            injectors: [Injector::new(), Injector::new(), Injector::new()],
            stealers: locals.iter().map(Worker::stealer).collect(),
            sleeping: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            unparkers: parkers.iter().map(|p| p.unparker().clone()).collect(),
            shutdown: AtomicBool::new(false),
            busy: AtomicUsize::new(0),
            steals: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
        });
        let mut threads = Vec::with_capacity(workers);
        for (index, (local, parker)) in locals.into_iter().zip(parkers).enumerate() {
            let shared = Arc::clone(&shared);
            threads.push(std::thread::Builder::new().name(format!("{name}-{index}")).spawn(move || {
                LOCAL.with(|l| *l.borrow_mut() = Some(Local { shared: Arc::clone(&shared), deque: local }));
                run_worker(&shared, index, &parker);
                LOCAL.with(|l| l.borrow_mut().take());
            })?);
        }
        Ok(Pool { shared, threads })
    }

    /// Queues a job at `priority`.
    pub fn spawn(&self, priority: Priority, job: Job) {
        self.shared.injectors[priority.index()].push(job);
        self.shared.wake_one();
    }

    /// Queues a sub-job of the running job: on a worker of this pool it goes
    /// to the worker's own deque, where idle workers steal it; elsewhere it
    /// is queued at `priority`.
    pub fn spawn_local(&self, priority: Priority, job: Job) {
        let job = LOCAL.with(|l| match &*l.borrow() {
            Some(local) if Arc::ptr_eq(&local.shared, &self.shared) => {
                local.deque.push(job);
                None
            }
            _ => Some(job),
        });
        if let Some(job) = job {
            self.shared.injectors[priority.index()].push(job);
        }
        self.shared.wake_one();
    }

    /// Current figures.
    pub fn stats(&self) -> PoolStats {
        let s = &self.shared;
        PoolStats {
            workers: self.threads.len(),
            busy: s.busy.load(Ordering::Relaxed),
            queued: QueuedByPriority {
                high: s.injectors[0].len(),
                normal: s.injectors[1].len(),
                low: s.injectors[2].len(),
            },
            steals: s.steals.load(Ordering::Relaxed),
            completed: s.completed.load(Ordering::Relaxed),
            panicked: s.panicked.load(Ordering::Relaxed),
        }
    }

    /// Number of worker threads.
    pub fn workers(&self) -> usize {
        self.threads.len()
    }
}

impl Drop for Pool {
    /// Stops the workers once the queues are empty.
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for unparker in &self.shared.unparkers {
            unparker.unpark();
        }
        for thread in self.threads.drain(..) {
            // The last owner may be a job on one of our own workers; that
            // worker exits by itself once it returns.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

impl Shared {
    fn wake_one(&self) {
        // Pairs with the fence in `run_worker`: either we see its flag, or it
        // sees our push when it looks again.
        fence(Ordering::SeqCst);
        for (flag, unparker) in self.sleeping.iter().zip(&self.unparkers) {
            if flag.swap(false, Ordering::AcqRel) {
                unparker.unpark();
                return;
            }
        }
    }

    fn has_work(&self) -> bool {
        self.injectors.iter().any(|i| !i.is_empty()) || self.stealers.iter().any(|s| !s.is_empty())
    }

    fn take_injected(&self, priority: Priority) -> Option<Job> {
        loop {
            match self.injectors[priority.index()].steal() {
                Steal::Success(job) => return Some(job),
                Steal::Empty => return None,
                Steal::Retry => {}
            }
        }
    }

    fn steal_local(&self, me: usize) -> Option<Job> {
        let n = self.stealers.len();
        // Start at the next worker so idle workers do not all convoy on one deque.
        for k in 1..n {
            let victim = &self.stealers[(me + k) % n];
            if victim.is_empty() {
                continue;
            }
            loop {
                match victim.steal() {
                    Steal::Success(job) => {
                        self.steals.fetch_add(1, Ordering::Relaxed);
                        return Some(job);
                    }
                    Steal::Empty => break,
                    Steal::Retry => {}
                }
            }
        }
        None
    }
}

/// The order in which a worker looks at the injectors on its `round`th pick.
fn priority_order(round: u64) -> [Priority; 3] {
    use Priority::{High, Low, Normal};
    match round {
        r if r % 16 == 15 => [Low, High, Normal],
        r if r % 4 == 3 => [Normal, High, Low],
        _ => [High, Normal, Low],
    }
}

fn find_job(shared: &Shared, me: usize, round: u64) -> Option<Job> {
    let [first, second, third] = priority_order(round);
    if let Some(job) = shared.take_injected(first) {
        return Some(job);
    }
    let local = LOCAL.with(|l| l.borrow().as_ref().and_then(|local| local.deque.pop()));
    local
        .or_else(|| shared.take_injected(second))
        .or_else(|| shared.take_injected(third))
        .or_else(|| shared.steal_local(me))
}

fn run_worker(shared: &Shared, me: usize, parker: &Parker) {
    let mut round: u64 = 0;
    loop {
        if let Some(job) = find_job(shared, me, round) {
            round = round.wrapping_add(1);
            shared.busy.fetch_add(1, Ordering::Relaxed);
            if catch_unwind(AssertUnwindSafe(job)).is_err() {
                shared.panicked.fetch_add(1, Ordering::Relaxed);
            }
            shared.busy.fetch_sub(1, Ordering::Relaxed);
            shared.completed.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        shared.sleeping[me].store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if shared.has_work() || shared.shutdown.load(Ordering::SeqCst) {
            shared.sleeping[me].store(false, Ordering::SeqCst);
            continue;
        }
        // The timeout is a backstop only; the tests check that no job waits for it.
        parker.park_timeout(Duration::from_secs(1));
        shared.sleeping[me].store(false, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn runs_every_job_and_never_strands_one() {
        let pool = Pool::new("test", 3).unwrap();
        let (tx, rx) = mpsc::channel();
        // Bursts separated by idle gaps exercise the park/wake path; a lost
        // wake-up would show as a job waiting for the 1 s backstop.
        for burst in 0..50 {
            let started = Instant::now();
            for i in 0..20 {
                let tx = tx.clone();
                pool.spawn(Priority::ALL[i % 3], Box::new(move || tx.send(burst * 100 + i).unwrap()));
            }
            for _ in 0..20 {
                rx.recv_timeout(Duration::from_millis(500)).expect("a job was stranded");
            }
            assert!(started.elapsed() < Duration::from_millis(500));
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn high_runs_before_queued_low_and_low_is_not_starved() {
        let pool = Pool::new("test", 1).unwrap();
        let (tx, rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        // Hold the only worker so that the queue fills up.
        pool.spawn(Priority::Normal, Box::new(move || gate_rx.recv().unwrap()));
        for i in 0..40 {
            let tx = tx.clone();
            pool.spawn(Priority::Low, Box::new(move || tx.send(("low", i)).unwrap()));
        }
        for i in 0..40 {
            let tx = tx.clone();
            pool.spawn(Priority::High, Box::new(move || tx.send(("high", i)).unwrap()));
        }
        gate_tx.send(()).unwrap();
        let order: Vec<(&str, i32)> = (0..80).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(order[0].0, "high");
        // Every 16th pick looks at low first: some low jobs run among the highs.
        let lows_among_first_40 = order[..40].iter().filter(|(p, _)| *p == "low").count();
        assert!((1..=5).contains(&lows_among_first_40), "{order:?}");
    }

    #[test]
    fn a_panicking_job_does_not_kill_its_worker() {
        let pool = Pool::new("test", 1).unwrap();
        pool.spawn(Priority::Normal, Box::new(|| panic!("job panics on purpose")));
        let (tx, rx) = mpsc::channel();
        pool.spawn(Priority::Normal, Box::new(move || tx.send(()).unwrap()));
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(pool.stats().panicked, 1);
    }

    #[test]
    fn local_sub_jobs_are_stolen_by_idle_workers() {
        let pool = Arc::new(Pool::new("test", 2).unwrap());
        let (tx, rx) = mpsc::channel();
        let inner = Arc::clone(&pool);
        pool.spawn(
            Priority::Normal,
            Box::new(move || {
                for _ in 0..20 {
                    let tx = tx.clone();
                    inner.spawn_local(
                        Priority::Normal,
                        Box::new(move || {
                            std::thread::sleep(Duration::from_millis(5));
                            tx.send(std::thread::current().name().unwrap().to_string()).unwrap();
                        }),
                    );
                }
            }),
        );
        let threads: std::collections::HashSet<String> =
            (0..20).map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap()).collect();
        assert_eq!(threads.len(), 2, "both workers ran items");
        assert!(pool.stats().steals > 0);
    }
}

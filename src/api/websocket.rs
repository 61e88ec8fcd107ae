//! `GET /ws`: a WebSocket on which a client follows tasks, by id or all of
//! its own, and hears the events `GET /analyze/status/{id}/events` sends.
//!
//! The client sends JSON commands:
//! `{"op": "subscribe", "tasks": ["ID", ...]}`, `{"op": "subscribe", "all": true}`
//! and the same with `"unsubscribe"`. It hears
//! `{"type": "status" | "end", "version": N, "task": {...}}` for each change,
//! `{"type": "subscribed", "all": true}` once all its tasks are followed,
//! and `{"type": "error", "code": ..., "detail": ..., "task": ...}` for a
//! command it cannot have. Store reads happen on the engine's reader threads,
//! never on the reactor.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Deserialize;
use serde_json::json;

use super::tasks::seen_by;
use super::App;
use crate::http::request::Request;
use crate::http::router::Params;
use crate::jobs::engine::{Follow, TaskEvent, TaskWatcher};
use crate::jobs::{Engine, TaskId};
use crate::reactor::{Context, Reply, WsSender, WsSession};

/// Most task ids one connection follows at once.
pub const MAX_SUBSCRIPTIONS: usize = 1000;
/// Most store reads one connection may have waiting: a client that sends
/// commands faster than they are looked up is told to slow down.
const MAX_LOOKUPS: usize = 64;

/// `GET /ws`: opens the WebSocket (or refuses a request that is none).
pub fn open(app: &App, request: &Request<'_>, _: Params<'_>, cx: &mut Context<'_>) -> Reply {
    let viewer = app.viewer(cx);
    let engine = Arc::clone(app.engine());
    Reply::Now(cx.websocket(&request.head, move |sender| {
        let shared = Arc::new(Shared {
            sender,
            ids: Mutex::new(HashSet::new()),
            all: AtomicU64::new(0),
            lookups: AtomicUsize::new(0),
        });
        Box::new(Subscriber { engine, viewer, shared, generations: 0 })
    }))
}

/// A command from the client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Command {
    op: Op,
    #[serde(default)]
    tasks: Vec<String>,
    #[serde(default)]
    all: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Subscribe,
    Unsubscribe,
}

/// One connection's subscriptions, shared with the watchers that send to it.
#[derive(Debug)]
struct Shared {
    sender: WsSender,
    /// Tasks followed by id.
    ids: Mutex<HashSet<TaskId>>,
    /// The generation of the follow-all subscription, `0` when off; watchers
    /// of an earlier one stop.
    all: AtomicU64,
    /// Store reads under way for this connection.
    lookups: AtomicUsize,
}

impl Shared {
    fn ids(&self) -> MutexGuard<'_, HashSet<TaskId>> {
        // A set of ids stays consistent whatever panicked while holding it.
        self.ids.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn send_error(&self, code: &str, detail: &str, task: Option<&str>) {
        let mut message = json!({"type": "error", "code": code, "detail": detail});
        if let Some(task) = task {
            message["task"] = json!(task);
        }
        self.sender.send(message.to_string());
    }

    /// Sends `event`; says whether the watcher should go on.
    fn send_event(&self, event: &TaskEvent<'_>) -> bool {
        let kind = if event.last { "end" } else { "status" };
        // A TaskView always serialises (plain fields).
        let view = serde_json::to_string(event.view).unwrap_or_default();
        self.sender.send(format!("{{\"type\":\"{kind}\",\"version\":{},\"task\":{view}}}", event.version));
        !event.last
    }

    /// Runs `read` on a store reader unless this connection has too many waiting.
    fn look_up(self: &Arc<Self>, engine: &Arc<Engine>, read: impl FnOnce(&Arc<Engine>) + Send + 'static) -> bool {
        if self.lookups.fetch_add(1, Ordering::AcqRel) >= MAX_LOOKUPS {
            self.lookups.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        let shared = Arc::clone(self);
        let target = Arc::clone(engine);
        engine.spawn_read(Box::new(move || {
            read(&target);
            shared.lookups.fetch_sub(1, Ordering::AcqRel);
        }));
        true
    }
}

/// The session of one `/ws` connection.
struct Subscriber {
    engine: Arc<Engine>,
    /// Whose tasks it may see (see [`App::viewer`]).
    viewer: Option<&'static str>,
    shared: Arc<Shared>,
    /// Follow-all subscriptions made so far (their generations).
    generations: u64,
}

impl WsSession for Subscriber {
    fn on_text(&mut self, text: &str) {
        let command = match serde_json::from_str::<Command>(text) {
            Ok(command) => command,
            Err(e) => return self.shared.send_error("bad-message", &format!("not a command: {e}"), None),
        };
        match (command.op, command.all) {
            (Op::Subscribe, true) => self.follow_all(),
            (Op::Unsubscribe, true) => self.shared.all.store(0, Ordering::Release),
            (Op::Subscribe, false) => command.tasks.iter().for_each(|id| self.subscribe(id)),
            (Op::Unsubscribe, false) => {
                let mut ids = self.shared.ids();
                for id in command.tasks.iter().filter_map(|id| id.parse::<TaskId>().ok()) {
                    ids.remove(&id);
                }
            }
        }
    }
}

impl Subscriber {
    fn subscribe(&mut self, text: &str) {
        let shared = &self.shared;
        let Ok(id) = text.parse::<TaskId>() else {
            return shared.send_error("task-not-found", "no task with this id", Some(text));
        };
        {
            let mut ids = shared.ids();
            if ids.contains(&id) {
                return;
            }
            if ids.len() >= MAX_SUBSCRIPTIONS {
                let detail = format!("a connection follows at most {MAX_SUBSCRIPTIONS} tasks by id");
                return shared.send_error("too-many-subscriptions", &detail, Some(text));
            }
            ids.insert(id);
        }
        let viewer = self.viewer;
        let watcher_of = Arc::clone(shared);
        let looked_up = shared.look_up(&self.engine, move |engine| {
            let shared = watcher_of;
            let found = match seen_by(engine, id, viewer) {
                Ok(Some(_)) => engine.watch(id, by_id(&shared, id)),
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            let failed = match found {
                Ok(true) => return,
                Ok(false) => ("task-not-found", "no task with this id (it may have expired)".to_string()),
                Err(e) => ("store-unavailable", format!("the task store failed: {e}")),
            };
            shared.ids().remove(&id);
            shared.send_error(failed.0, &failed.1, Some(&id.to_string()));
        });
        if !looked_up {
            shared.ids().remove(&id);
            shared.send_error("slow-down", "too many commands waiting: wait for their answers", Some(text));
        }
    }

    fn follow_all(&mut self) {
        let shared = &self.shared;
        if shared.all.load(Ordering::Acquire) != 0 {
            return;
        }
        self.generations += 1;
        let generation = self.generations;
        shared.all.store(generation, Ordering::Release);
        let viewer = self.viewer;
        let follower_of = Arc::clone(shared);
        let looked_up = shared.look_up(&self.engine, move |engine| {
            let shared = follower_of;
            let follower_shared = Arc::clone(&shared);
            engine.follow(Box::new(move |record| {
                let shared = &follower_shared;
                if shared.sender.is_gone() || shared.all.load(Ordering::Acquire) != generation {
                    Follow::Stop
                } else if viewer.is_some_and(|v| record.owner.as_deref() != Some(v)) {
                    Follow::Skip
                } else {
                    Follow::Watch(of_all(shared, record.id, generation))
                }
            }));
            shared.sender.send(json!({"type": "subscribed", "all": true}).to_string());
        });
        if !looked_up {
            shared.all.store(0, Ordering::Release);
            shared.send_error("slow-down", "too many commands waiting: wait for their answers", None);
        }
    }
}

/// The watcher of a task followed by id: on while the id is followed.
fn by_id(shared: &Arc<Shared>, id: TaskId) -> TaskWatcher {
    let shared = Arc::clone(shared);
    Box::new(move |event| {
        if shared.sender.is_gone() || !shared.ids().contains(&id) {
            return false;
        }
        let more = shared.send_event(&event);
        if !more {
            shared.ids().remove(&id);
        }
        more
    })
}

/// The watcher of a task followed as one of all: on while that follow-all
/// lasts, and quiet for a task also followed by id (that watcher sends).
fn of_all(shared: &Arc<Shared>, id: TaskId, generation: u64) -> TaskWatcher {
    let shared = Arc::clone(shared);
    Box::new(move |event| {
        if shared.sender.is_gone() || shared.all.load(Ordering::Acquire) != generation {
            return false;
        }
        if shared.ids().contains(&id) {
            return !event.last;
        }
        shared.send_event(&event)
    })
}

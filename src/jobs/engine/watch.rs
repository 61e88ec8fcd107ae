//! Following a task's changes as they happen: watchers registered on a
//! task hear its state now and every change after (started, progress, its
//! end), the end once it is stored, so a status read after the last event
//! agrees with it. Followers hear of every stored task as it goes live, and
//! may watch it.

use crate::jobs::lifecycle::TaskRecord;
use crate::jobs::task::TaskView;

/// One change of a task, as a watcher hears it.
#[derive(Debug)]
pub struct TaskEvent<'a> {
    /// The status document, without the result.
    pub view: &'a TaskView,
    /// The record's version: each change has a higher one.
    pub version: u64,
    /// The task has ended: nothing follows.
    pub last: bool,
}

/// Hears a task's changes; returns `false` once nobody listens, and is then
/// dropped. Called with the engine's lock held: it must only hand the
/// event on (format it, queue it), never wait.
pub type TaskWatcher = Box<dyn FnMut(TaskEvent<'_>) -> bool + Send>;

/// Tells every watcher of `record` its state; keeps those still listening.
pub(super) fn notify(watchers: &mut Vec<TaskWatcher>, record: &TaskRecord, last: bool) {
    if watchers.is_empty() {
        return;
    }
    let view = record.view();
    watchers.retain_mut(|w| w(TaskEvent { view: &view, version: record.version, last }) && !last);
}

/// What a follower makes of a task that went live.
pub enum Follow {
    /// Watch it with this watcher (told its state at once).
    Watch(TaskWatcher),
    /// Not of interest.
    Skip,
    /// Nobody listens any more: drop the follower.
    Stop,
}

impl std::fmt::Debug for Follow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Follow::Watch(_) => "Watch",
            Follow::Skip => "Skip",
            Follow::Stop => "Stop",
        })
    }
}

/// Hears of each stored task that goes live (queued); called with the
/// engine's lock held, so it must only decide, never wait.
pub type TaskFollower = Box<dyn FnMut(&TaskRecord) -> Follow + Send>;

/// Asks `follower` about `record`: the watcher it gives, told the state now
/// and kept in `watchers` while it listens. `false` once the follower stops.
pub(super) fn offer(follower: &mut TaskFollower, record: &TaskRecord, watchers: &mut Vec<TaskWatcher>) -> bool {
    match follower(record) {
        Follow::Watch(mut watcher) => {
            let view = record.view();
            if watcher(TaskEvent { view: &view, version: record.version, last: false }) {
                watchers.push(watcher);
            }
            true
        }
        Follow::Skip => true,
        Follow::Stop => false,
    }
}

//! Following a task's changes as they happen: watchers registered on a
//! task hear its state now and every change after (started, progress, its
//! end), the end once it is stored, so a status read after the last event
//! agrees with it.

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

//! Tasks: long work clients follow by id. A task is data ([`spec`]); its
//! record changes only through the [`lifecycle`]; the [`engine`] runs it
//! through its kind's handler; a [`store`] keeps it, written in groups by
//! the [`commit`] thread; [`task`] says what a client sees.

pub mod commit;
pub mod engine;
pub mod lifecycle;
pub mod queue;
pub mod spec;
pub mod store;
pub mod task;

pub use engine::{Ended, Engine, EngineConfig, Handlers, JobContext, SubmitError, Submitted, SyncOutcome, Work};
pub use spec::{Payload, TaskInput, TaskOptions, TaskSpec};
pub use store::{Durability, MemoryStore, RedisStore, SqliteStore, Store, TaskStore};
pub use task::{TaskError, TaskId, TaskState, TaskView};

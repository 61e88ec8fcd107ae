//! Tasks: long work clients follow by id. The [`engine::Engine`] runs them
//! on the pool; the [`store::TaskStore`] keeps them; [`task`] says what a
//! client sees.

pub mod engine;
pub mod store;
pub mod task;

pub use engine::{Engine, EngineConfig, JobContext, SubmitError, Submitted, SyncOutcome, TaskSpec, Work};
pub use store::{MemoryStore, TaskStore};
pub use task::{TaskError, TaskId, TaskState, TaskView};

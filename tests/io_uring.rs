//! The integration tests again, every one, on the io_uring engine: the
//! same modules as `tests/tests.rs`, with the servers they start (in process
//! and the binary) asked for io_uring. Where the kernel refuses io_uring the
//! server falls back to epoll; `lifecycle::the_start_line_names_the_engine_asked_for` says
//! which ran.

/// The I/O engine the servers of this run use.
pub const IO_ENGINE: &str = "io_uring";

include!("suite.rs");

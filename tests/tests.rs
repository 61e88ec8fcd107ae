//! The integration tests on the epoll engine: one binary, so CI links once.
//! `tests/io_uring.rs` runs the same suite on io_uring.

/// The I/O engine the servers of this run use.
pub const IO_ENGINE: &str = "epoll";

include!("suite.rs");

//! The I/O engines a reactor can run on, and the choice between them.
//!
//! Both drive the same sans-I/O connections through the same
//! [`Reactor`](super::event_loop::Reactor); they differ only in how the
//! kernel is asked for bytes: readiness (epoll) or completions (io_uring).

mod epoll;
mod uring;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::RawFd;
use std::str::FromStr;

use mio::net::TcpListener;

use super::event_loop::OVER_CAPACITY;

pub use epoll::Epoll;
pub use uring::Uring;

/// Which engine to run, as asked for (`--io-engine`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoEngine {
    /// The one measured fastest on this machine, where the kernel allows it.
    #[default]
    Auto,
    /// epoll through mio.
    Epoll,
    /// io_uring, falling back to epoll where the kernel refuses it.
    IoUring,
}

/// The engine that runs, once chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// epoll through mio.
    Epoll,
    /// io_uring.
    IoUring,
}

impl fmt::Display for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Running::Epoll => "epoll",
            Running::IoUring => "io_uring",
        })
    }
}

impl FromStr for IoEngine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(IoEngine::Auto),
            "epoll" => Ok(IoEngine::Epoll),
            "io_uring" => Ok(IoEngine::IoUring),
            other => Err(format!("unknown I/O engine {other:?}: auto, epoll or io_uring")),
        }
    }
}

/// The engine chosen for `asked`, and why, in words for the start line.
pub fn choose(asked: IoEngine) -> (Running, String) {
    match asked {
        IoEngine::Epoll => (Running::Epoll, "asked for".into()),
        // `auto` is epoll: measured here, io_uring is no faster overall (a
        // few % less CPU a request at saturation, a few % more at moderate
        // load and on 60 KB task bodies; both floors equal), and epoll is
        // the engine every kernel and container allows
        // (loadtest/compare-plaintext.sh, compare-intake.sh, README).
        IoEngine::Auto => (Running::Epoll, "auto: io_uring measured no faster here".into()),
        IoEngine::IoUring => match Uring::probe() {
            Ok(()) => (Running::IoUring, "asked for".into()),
            Err(e) => (Running::Epoll, format!("io_uring refused ({e}), fell back to epoll")),
        },
    }
}

/// A spare descriptor, held so that one can be freed to shed a connection
/// when the process runs out (EMFILE) instead of leaving the backlog full
/// and the loop spinning on it.
#[derive(Debug)]
struct Spare(Option<File>);

impl Spare {
    fn new() -> Spare {
        Spare(File::open("/dev/null").ok())
    }

    /// Out of descriptors: frees the spare, accepts one pending connection
    /// from `listener`, answers it `503` and closes it so it is not left
    /// hanging, then takes the spare back. False: nothing could be shed.
    /// (On a TLS port the `503` is not readable: the client sees the
    /// connection close, which is still an answer rather than a hang.)
    fn shed_one(&mut self, listener: &TcpListener) -> bool {
        if self.0.take().is_none() {
            return false;
        }
        let shed = match listener.accept() {
            Ok((mut stream, _)) => {
                // What it sent is read first: closing with unread bytes
                // would reset the connection and could destroy the answer.
                let mut request = [0u8; 4096];
                let _ = stream.read(&mut request);
                let _ = stream.write(OVER_CAPACITY);
                let _ = stream.shutdown(Shutdown::Write);
                true
            }
            Err(_) => false,
        };
        self.0 = File::open("/dev/null").ok();
        shed && self.0.is_some()
    }
}

/// Bytes the kernel holds on socket `fd` that the peer has not acknowledged.
fn unacknowledged(fd: RawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int: the bytes not yet acknowledged.
    let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if rc == 0 {
        usize::try_from(queued).unwrap_or(0)
    } else {
        0
    }
}

/// Whether io_uring can be used here, and if not, why.
pub fn io_uring_available() -> io::Result<()> {
    Uring::probe()
}

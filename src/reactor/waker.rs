//! An eventfd that other threads write to wake a reactor: epoll watches it
//! for readability, io_uring keeps a read on it in flight. (mio's own
//! `Waker` is an eventfd too, but an epoll-only one.)

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The write end other threads wake a reactor through.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    /// A new non-blocking eventfd.
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; a non-negative result is a new descriptor we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Waker { fd: unsafe { OwnedFd::from_raw_fd(fd) } })
    }

    /// Wakes the reactor. A full counter (2^64 - 2 wakes never read) is
    /// emptied and written again; any other failure means the reactor is gone.
    pub fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live local buffer to our own descriptor.
        let rc = unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        if rc < 0 && io::Error::last_os_error().kind() == io::ErrorKind::WouldBlock {
            self.reset();
            // SAFETY: as above.
            unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
        }
    }

    /// Empties the counter.
    pub fn reset(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live local buffer from our own descriptor.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_makes_the_descriptor_readable_and_reset_empties_it() {
        let waker = Waker::new().unwrap();
        let readable = |fd: RawFd| {
            let mut poll = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, no wait.
            unsafe { libc::poll(&mut poll, 1, 0) == 1 }
        };
        assert!(!readable(waker.as_raw_fd()));
        waker.wake();
        waker.wake();
        assert!(readable(waker.as_raw_fd()));
        waker.reset();
        assert!(!readable(waker.as_raw_fd()));
    }
}

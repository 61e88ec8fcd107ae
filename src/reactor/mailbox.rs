//! The way back into a reactor: other threads post completed responses to a
//! lock-free queue and wake the reactor's [`Waker`] (an eventfd).
//!
//! Wakes are coalesced with an atomic flag, so a burst of completions costs
//! one `eventfd` write, not one each (mio's waker coalesces too, but only
//! after the syscall).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crossbeam_queue::SegQueue;
use mio::Token;

use super::waker::Waker;

use crate::http::response::Response;

/// A piece of a response produced off the reactor thread.
#[derive(Debug)]
pub enum Part {
    /// A whole response.
    Whole(Response),
    /// The head of a streamed (chunked) response; chunks follow. The flag
    /// is set once the connection no longer carries the stream.
    Head(Response, Arc<AtomicBool>),
    /// The next piece of a streamed body.
    Chunk(Vec<u8>),
    /// The end of a streamed body.
    End,
    /// A text message for a connection upgraded to WebSocket.
    Message(String),
}

/// A response (or part of one) finished off the reactor thread.
#[derive(Debug)]
pub struct Completion {
    /// The connection's token, generation included.
    pub token: Token,
    /// The request's sequence number on that connection.
    pub seq: u64,
    /// What arrived.
    pub part: Part,
}

/// One reactor's inbound queue.
///
/// The queue is unbounded in type but not in use: each connection has at
/// most `MAX_PIPELINE` requests outstanding, so completions are bounded by
/// connections × pipeline depth. An `ArrayQueue` sized to that bound would
/// preallocate tens of megabytes that are almost never used.
#[derive(Debug)]
pub struct Mailbox {
    queue: SegQueue<Completion>,
    pending: AtomicBool,
    shutdown: AtomicBool,
    waker: Waker,
}

impl Mailbox {
    /// A mailbox that wakes the poll `waker` belongs to.
    pub fn new(waker: Waker) -> Self {
        Mailbox { queue: SegQueue::new(), pending: AtomicBool::new(false), shutdown: AtomicBool::new(false), waker }
    }

    /// Posts a completion and wakes the reactor unless a wake is already pending.
    pub fn post(&self, completion: Completion) {
        self.queue.push(completion);
        self.wake();
    }

    /// Asks the reactor to stop accepting and drain.
    pub fn request_shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.wake();
    }

    /// Whether a shutdown was requested.
    pub fn shutdown_requested(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    fn wake(&self) {
        // The swap orders the push above before the reactor's swap(false) in `drain`.
        if !self.pending.swap(true, Ordering::AcqRel) {
            self.waker.wake();
        }
    }

    /// The waker, for the engine to watch.
    pub fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Takes the completions posted so far, with a clock reading taken
    /// after all of them were posted. Called by the reactor on its waker event.
    pub fn drain(&self, mut each: impl FnMut(Completion, Instant)) {
        // Clear first: a post racing with this drain sets `pending` again
        // and wakes us once more.
        self.pending.swap(false, Ordering::AcqRel);
        // Only what is queued now: a completion posted during the drain
        // would otherwise be stamped with a time before it existed, and its
        // recorded duration would come out short. It waits for the next wake.
        let queued = self.queue.len();
        let now = Instant::now();
        for _ in 0..queued {
            match self.queue.pop() {
                Some(c) => each(c, now),
                None => break,
            }
        }
    }
}

/// The promise of a response, handed to whatever thread finishes the work.
///
/// Dropping it unsent answers `500`, so a lost job can never leave a client
/// waiting forever.
#[derive(Debug)]
pub struct Responder {
    mailbox: Arc<Mailbox>,
    token: Token,
    seq: u64,
    sent: bool,
}

impl Responder {
    pub(crate) fn new(mailbox: Arc<Mailbox>, token: Token, seq: u64) -> Self {
        Responder { mailbox, token, seq, sent: false }
    }

    /// Sends the response to the connection, in its request order.
    pub fn send(mut self, response: Response) {
        self.sent = true;
        self.post(Part::Whole(response));
    }

    /// Starts a streamed response: `head` goes out with
    /// `Transfer-Encoding: chunked`, then whatever the sender sends.
    pub fn stream(mut self, head: Response) -> StreamSender {
        self.sent = true;
        let gone = Arc::new(AtomicBool::new(false));
        self.post(Part::Head(head, Arc::clone(&gone)));
        StreamSender { mailbox: Arc::clone(&self.mailbox), token: self.token, seq: self.seq, ended: false, gone }
    }

    fn post(&self, part: Part) {
        self.mailbox.post(Completion { token: self.token, seq: self.seq, part });
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if !self.sent {
            let response = Response::problem(500, "internal", "the request's handler ended without answering");
            self.post(Part::Whole(response));
        }
    }
}

/// The body of a streamed response, sent piece by piece from any thread.
/// Dropping it ends the stream.
#[derive(Debug)]
pub struct StreamSender {
    mailbox: Arc<Mailbox>,
    token: Token,
    seq: u64,
    ended: bool,
    gone: Arc<AtomicBool>,
}

impl StreamSender {
    /// Sends one piece of the body (empty pieces are skipped: an empty
    /// chunk would end the stream on the wire).
    pub fn send(&self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.mailbox.post(Completion { token: self.token, seq: self.seq, part: Part::Chunk(bytes) });
        }
    }

    /// Whether the client is gone (connection closed, or the stream was
    /// cut off): stop producing for it.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    /// Ends the body.
    pub fn finish(mut self) {
        self.end();
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.mailbox.post(Completion { token: self.token, seq: self.seq, part: Part::End });
        }
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        self.end();
    }
}

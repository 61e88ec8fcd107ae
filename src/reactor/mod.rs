//! The event loop: reactor threads on mio, each with its own listener on a
//! shared port, its connections, its deadlines and its mailbox.
//!
//! The reactor knows HTTP/1.1 framing and nothing of what requests mean;
//! that is the [`Service`]'s business.

mod buffers;
mod connection;
mod event_loop;
mod listener;
mod mailbox;
mod service;
mod state;
pub mod timers;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::mpsc::Sender;

use mio::{Poll, Waker};

use crate::metrics::recorder::{Handoff, Recorder};

pub use connection::{Limits, MAX_PIPELINE};
pub use mailbox::{Responder, StreamSender};
pub use service::{Context, Reply, Service};
pub use state::ServerState;

use event_loop::{EventLoop, LoopConfig, WAKER};
use mailbox::Mailbox;

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Number of reactor threads.
    pub reactors: usize,
    /// Connections open at once, over all reactors; more get `503`.
    pub max_connections: usize,
    /// How long a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// Per-connection limits and timeouts.
    pub limits: Limits,
}

/// A running server: its reactor threads and the means to stop them.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    state: Arc<ServerState>,
}

impl Server {
    /// Binds the listeners and starts the reactor threads, recording no metrics.
    pub fn start(config: ServerConfig, service: Arc<dyn Service>) -> io::Result<Server> {
        Server::start_with_metrics(config, service, None)
    }

    /// Binds the listeners and starts the reactor threads; each records its
    /// requests and sends the figures to `metrics` once a second.
    pub fn start_with_metrics(
        config: ServerConfig,
        service: Arc<dyn Service>,
        metrics: Option<Sender<Handoff>>,
    ) -> io::Result<Server> {
        let reactors = config.reactors.max(1);
        listener::ensure_free(config.listen)?;
        let first = listener::bind(config.listen)?;
        let addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..reactors {
            listeners.push(listener::bind(addr)?);
        }
        let state = Arc::new(ServerState::new(reactors, config.max_connections));
        let loop_config = LoopConfig { limits: config.limits.clone(), shutdown_timeout: config.shutdown_timeout };
        let mut server = Server { addr, mailboxes: Vec::new(), threads: Vec::new(), state: Arc::clone(&state) };
        for (i, listener) in listeners.into_iter().enumerate() {
            let poll = Poll::new()?;
            let mailbox = Arc::new(Mailbox::new(Waker::new(poll.registry(), WAKER)?));
            let reactor = EventLoop::new(
                poll,
                listener,
                Arc::clone(&mailbox),
                Arc::clone(&service),
                loop_config.clone(),
                Arc::clone(&state),
                Recorder::new(metrics.clone()),
            )?;
            let thread =
                std::thread::Builder::new().name(format!("pagelens-reactor-{i}")).spawn(move || reactor.run())?;
            server.mailboxes.push(mailbox);
            server.threads.push(thread);
        }
        Ok(server)
    }

    /// The address the listeners are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Server-wide figures.
    pub fn state(&self) -> &Arc<ServerState> {
        &self.state
    }

    /// Announces a coming shutdown while still accepting: `/readyz` turns
    /// `503` and every response closes its connection, so that a load
    /// balancer sends new clients elsewhere (the drain grace).
    pub fn announce_drain(&self) {
        self.state.start_draining();
    }

    /// Begins a graceful shutdown: stop accepting, close idle connections,
    /// let in-flight requests finish within the shutdown timeout.
    pub fn shutdown(&self) {
        for mailbox in &self.mailboxes {
            mailbox.request_shutdown();
        }
    }

    /// Waits for every reactor to finish; the first error wins.
    pub fn join(mut self) -> io::Result<()> {
        self.join_threads()
    }

    fn join_threads(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads.drain(..) {
            let outcome = thread.join().unwrap_or_else(|_| Err(io::Error::other("a reactor thread panicked")));
            if result.is_ok() {
                result = outcome;
            }
        }
        result
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown();
            let _ = self.join_threads();
        }
    }
}

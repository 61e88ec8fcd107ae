//! The event loop: reactor threads, each with its own listener on a shared
//! port, its connections, its deadlines and its mailbox, on an I/O engine
//! (epoll or io_uring) under a sans-I/O connection core.
//!
//! The reactor knows HTTP/1.1 framing and nothing of what requests mean;
//! that is the [`Service`]'s business.

mod access_log;
mod buffers;
mod connection;
mod engine;
mod event_loop;
mod listener;
mod mailbox;
mod service;
mod state;
pub mod timers;
mod transport;
mod waker;
mod websocket;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::mpsc::Sender;

use crate::metrics::recorder::{Handoff, Recorder};

pub use access_log::AccessLog;
pub use connection::{Limits, MAX_PIPELINE};
pub use engine::{io_uring_available, IoEngine, Running};
pub use mailbox::{Responder, StreamSender};
pub use service::{Context, Reply, Service};
pub use state::ServerState;
pub use websocket::{WsSender, WsSession, MAX_MESSAGE as WS_MAX_MESSAGE};

use engine::{Epoll, Uring};
use event_loop::{LoopConfig, Reactor};
use listener::Listening;
use mailbox::Mailbox;
use waker::Waker;

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
    /// TLS termination, if any.
    pub tls: Option<TlsListen>,
    /// The access log, if on.
    pub access_log: Option<Arc<AccessLog>>,
    /// The I/O engine asked for.
    pub io_engine: IoEngine,
}

/// Where TLS is served.
#[derive(Debug, Clone)]
pub struct TlsListen {
    /// A port of its own beside the plain `listen`; `None`: `listen`
    /// itself speaks TLS.
    pub addr: Option<SocketAddr>,
    /// The handshake's configuration (certificate, versions, ALPN).
    pub config: Arc<rustls::ServerConfig>,
}

/// A running server: its reactor threads and the means to stop them.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    mailboxes: Vec<Arc<Mailbox>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
    state: Arc<ServerState>,
    engine: (Running, String),
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
        let (plain_tls, extra) = match &config.tls {
            None => (None, None),
            Some(TlsListen { addr: None, config }) => (Some(Arc::clone(config)), None),
            Some(TlsListen { addr: Some(addr), config }) => (None, Some((*addr, Arc::clone(config)))),
        };
        let mut ports = vec![listener::bind_all(config.listen, reactors, plain_tls)?];
        let addr = ports[0][0].socket.local_addr()?;
        let mut tls_addr = config.tls.as_ref().map(|_| addr);
        if let Some((at, tls)) = extra {
            let port = listener::bind_all(at, reactors, Some(tls))?;
            tls_addr = Some(port[0].socket.local_addr()?);
            ports.push(port);
        }
        // Reactor i takes the i-th listener of every port.
        let mut per_reactor: Vec<Vec<Listening>> = (0..reactors).map(|_| Vec::new()).collect();
        for port in ports {
            for (i, listening) in port.into_iter().enumerate() {
                per_reactor[i].push(listening);
            }
        }
        let state = Arc::new(ServerState::new(reactors, config.max_connections));
        let loop_config = LoopConfig {
            limits: config.limits.clone(),
            shutdown_timeout: config.shutdown_timeout,
            access_log: config.access_log.clone(),
        };
        let engine = engine::choose(config.io_engine);
        let mut server = Server {
            addr,
            tls_addr,
            mailboxes: Vec::new(),
            threads: Vec::new(),
            state: Arc::clone(&state),
            engine: engine.clone(),
        };
        for (i, listeners) in per_reactor.into_iter().enumerate() {
            let mailbox = Arc::new(Mailbox::new(Waker::new()?));
            let (ready, started) = std::sync::mpsc::sync_channel(1);
            let (service, config, state, mailbox_in) =
                (Arc::clone(&service), loop_config.clone(), Arc::clone(&state), Arc::clone(&mailbox));
            let recorder = Recorder::new(metrics.clone());
            let running = engine.0;
            // Each engine is built on its own thread: an io_uring is best
            // used by the thread that made it. A ring that cannot be made
            // (after the probe allowed it) leaves that reactor on epoll.
            let thread = std::thread::Builder::new().name(format!("pagelens-reactor-{i}")).spawn(move || {
                let waker = mailbox_in.waker();
                let listeners = match running {
                    Running::Epoll => listeners,
                    Running::IoUring => match Uring::new(listeners, waker) {
                        Ok(engine) => {
                            let _ = ready.send(Ok(Running::IoUring));
                            return Reactor::new(engine, mailbox_in, service, config, state, recorder).run();
                        }
                        Err((e, listeners)) => {
                            crate::warn!("reactor {i}: io_uring failed ({e}), this reactor runs on epoll");
                            listeners
                        }
                    },
                };
                match Epoll::new(listeners, waker) {
                    Ok(engine) => {
                        let _ = ready.send(Ok(Running::Epoll));
                        Reactor::new(engine, mailbox_in, service, config, state, recorder).run()
                    }
                    Err(e) => {
                        let _ = ready.send(Err(io::Error::new(e.kind(), format!("reactor {i}: {e}"))));
                        Ok(())
                    }
                }
            })?;
            server.mailboxes.push(mailbox);
            server.threads.push(thread);
            let ran = started.recv().map_err(|_| io::Error::other("a reactor thread ended while starting"))??;
            if ran != server.engine.0 {
                // The start line tells what runs, not what was chosen.
                server.engine = (ran, format!("io_uring failed on reactor {i} after the probe allowed it"));
            }
        }
        Ok(server)
    }

    /// The I/O engine the reactors run on, and why it was chosen.
    pub fn engine(&self) -> (Running, &str) {
        (self.engine.0, &self.engine.1)
    }

    /// The address `listen` is bound to (plain HTTP, unless TLS has no port of its own).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address that speaks TLS, if any.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
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

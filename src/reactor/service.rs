//! The contract between a reactor and the application it serves.
//!
//! The reactor parses requests and writes responses; a [`Service`] decides
//! what each request means. It must answer at once or hand the work to
//! another thread with a [`Responder`] and answer [`Reply::Later`]; it must
//! never block, because it runs on the event loop.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use mio::Token;

use super::mailbox::{Mailbox, Responder};
use super::state::ServerState;
use super::websocket::{self, WsCore, WsSender, WsSession};
use crate::http::request::{Head, Request};
use crate::http::response::Response;

/// What a service does with a request.
#[derive(Debug)]
pub enum Reply {
    /// The response, ready now.
    Now(Response),
    /// The response will come through the [`Responder`] taken with
    /// [`Context::defer`].
    Later,
}

/// An application served by the reactors.
pub trait Service: Send + Sync + 'static {
    /// Handles one request. Runs on a reactor thread: must not block.
    fn call(&self, request: &Request<'_>, cx: &mut Context<'_>) -> Reply;
}

/// What a handler may use besides the request.
#[derive(Debug)]
pub struct Context<'a> {
    mailbox: &'a Arc<Mailbox>,
    token: Token,
    seq: u64,
    server: &'a ServerState,
    deferred: bool,
    route: &'static str,
    peer: IpAddr,
    now: Instant,
    headers: Vec<(&'static str, String)>,
    client: Option<&'static str>,
    upgrade: Option<Box<WsCore>>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        mailbox: &'a Arc<Mailbox>,
        token: Token,
        seq: u64,
        server: &'a ServerState,
        peer: IpAddr,
        now: Instant,
    ) -> Self {
        let headers = Vec::new();
        Context {
            mailbox,
            token,
            seq,
            server,
            deferred: false,
            route: "unmatched",
            peer,
            now,
            headers,
            client: None,
            upgrade: None,
        }
    }

    /// The address of the connection's peer.
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Names the authenticated client (an API key's name), for the access
    /// log and the request metrics.
    pub fn set_client(&mut self, name: &'static str) {
        self.client = Some(name);
    }

    /// The authenticated client, if any.
    pub fn client(&self) -> Option<&'static str> {
        self.client
    }

    /// The reactor's time for this request.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a header to this request's response, whoever answers it and
    /// whenever (a deferred answer too).
    pub fn add_header(&mut self, name: &'static str, value: String) {
        self.headers.push((name, value));
    }

    pub(crate) fn take_headers(&mut self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut self.headers)
    }

    /// A handle through which another thread answers this request later.
    /// Return [`Reply::Later`] after taking it.
    pub fn defer(&mut self) -> Responder {
        self.deferred = true;
        Responder::new(Arc::clone(self.mailbox), self.token, self.seq)
    }

    /// Accepts a WebSocket handshake: answer with the `101` returned and
    /// the connection speaks WebSocket after it, its messages going to the
    /// session `open` makes. A request that is no valid handshake, or one
    /// during a shutdown, gets the refusal returned instead.
    pub fn websocket(&mut self, head: &Head<'_>, open: impl FnOnce(WsSender) -> Box<dyn WsSession>) -> Response {
        if self.server.is_draining() {
            return Response::problem(503, "shutting-down", "the server is shutting down").header("Retry-After", "1");
        }
        match websocket::handshake(head) {
            Ok(accept) => {
                let sender = WsSender::new(Arc::clone(self.mailbox), self.token, self.seq);
                let gone = sender.gone_flag();
                self.upgrade = Some(Box::new(WsCore::new(open(sender), gone)));
                accept
            }
            Err(refusal) => refusal,
        }
    }

    /// The WebSocket this request's `101` opens, if any.
    pub(crate) fn take_upgrade(&mut self) -> Option<Box<WsCore>> {
        self.upgrade.take()
    }

    /// Server-wide figures (connections, uptime, draining).
    pub fn server(&self) -> &ServerState {
        self.server
    }

    pub(crate) fn was_deferred(&self) -> bool {
        self.deferred
    }

    /// Names the route this request matched (a pattern such as
    /// `/tasks/{id}`), the label its metrics are recorded under.
    pub fn set_route(&mut self, route: &'static str) {
        self.route = route;
    }

    pub(crate) fn route(&self) -> &'static str {
        self.route
    }
}

//! One outbound connection and the exchange on it: connect, TLS handshake,
//! send the request, read the response; then idle in its origin's pool.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::ClientConfig;

use super::error::FetchError;
use super::transport::Transport;
use crate::http::client::{Progress, ResponseError, ResponseHead, ResponseReader};

/// Where a connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// TCP connect under way.
    Connecting,
    /// TLS handshake under way.
    Handshaking,
    /// Writing the request.
    Sending,
    /// Reading the response.
    Receiving,
    /// Waiting in the pool for the next request.
    Idle,
}

/// How long each step took.
#[derive(Debug, Clone, Copy, Default)]
pub struct Marks {
    /// TCP connect.
    pub connect: Duration,
    /// TLS handshake.
    pub tls: Duration,
    /// From the request sent (or queued) to the first byte of the response.
    pub first_byte: Duration,
}

/// What an [`advance`](Connection::advance) came to.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing final yet.
    Pending,
    /// The response arrived; `reusable` if the connection can go back to the pool.
    Response {
        /// Status line and headers.
        head: ResponseHead,
        /// The body as sent (still content-encoded).
        body: Vec<u8>,
        /// Whether the connection can carry another request.
        reusable: bool,
    },
    /// The exchange failed; `started` if any response byte had arrived.
    Failed {
        /// Why.
        error: FetchError,
        /// Whether the response had begun.
        started: bool,
    },
    /// An idle connection was closed by its peer (or sent junk).
    Closed,
}

/// An outbound connection.
#[derive(Debug)]
pub struct Connection {
    transport: Transport,
    state: State,
    /// The request being sent, and how much of it went out.
    out: Vec<u8>,
    written: usize,
    reader: Option<ResponseReader>,
    /// When the current step began (connect, handshake, request sent).
    step_began: Instant,
    /// Buffer bound for one read: head and body limits with slack for chunk framing.
    read_limit: usize,
    marks: Marks,
    /// Requests this connection has carried before the current one.
    pub served: u32,
    /// The address connected to.
    pub addr: SocketAddr,
}

impl Connection {
    /// Starts connecting to `addr`, with TLS for `tls` = (config, host name).
    pub fn connect(addr: SocketAddr, tls: Option<(&Arc<ClientConfig>, &str)>) -> Result<Connection, FetchError> {
        let stream = TcpStream::connect(addr).map_err(|e| connect_error(&e, addr))?;
        // Requests are written whole: Nagle would only delay them.
        let _ = stream.set_nodelay(true);
        Ok(Connection {
            transport: Transport::new(stream, tls)?,
            state: State::Connecting,
            out: Vec::new(),
            written: 0,
            reader: None,
            step_began: Instant::now(),
            read_limit: 0,
            marks: Marks::default(),
            served: 0,
            addr,
        })
    }

    /// The socket, to register with the poller.
    pub fn socket(&mut self) -> &mut TcpStream {
        self.transport.socket()
    }

    /// Where it is.
    pub fn state(&self) -> State {
        self.state
    }

    /// How long the steps of the current exchange took.
    pub fn marks(&self) -> Marks {
        self.marks
    }

    /// Whether a response byte has arrived for the current exchange.
    pub fn response_started(&self) -> bool {
        self.reader.as_ref().is_some_and(ResponseReader::started)
    }

    /// Hands the connection a request; `reader` will read its response.
    pub fn start(&mut self, request: Vec<u8>, reader: ResponseReader, read_limit: usize) {
        self.out = request;
        self.written = 0;
        self.reader = Some(reader);
        self.read_limit = read_limit;
        self.marks = Marks::default();
        if self.state == State::Idle {
            self.served += 1;
            self.state = State::Sending;
            self.step_began = Instant::now();
        }
    }

    /// Advances the connection as far as the socket allows: the state machine.
    pub fn advance(&mut self) -> Outcome {
        match self.step() {
            Ok(outcome) => outcome,
            Err(error) if self.state == State::Idle => {
                let _ = error;
                Outcome::Closed
            }
            Err(error) => Outcome::Failed { error, started: self.response_started() },
        }
    }

    fn step(&mut self) -> Result<Outcome, FetchError> {
        loop {
            match self.state {
                State::Connecting => {
                    if !self.connected()? {
                        return Ok(Outcome::Pending);
                    }
                    // A fresh clock, not the loop's cached `now`: on loopback a
                    // step can finish within one turn of the loop.
                    let at = Instant::now();
                    self.marks.connect = at - self.step_began;
                    self.step_began = at;
                    self.state = State::Handshaking;
                }
                State::Handshaking => {
                    self.transport.flush()?;
                    if self.transport.handshaking() {
                        let mut scratch = Vec::new();
                        let got = self.transport.read(&mut scratch, 1)?;
                        if got.eof && self.transport.handshaking() {
                            return Err(FetchError::new(
                                502,
                                "tls-failed",
                                "the peer closed during the handshake",
                                false,
                            ));
                        }
                        if self.transport.handshaking() {
                            return Ok(Outcome::Pending);
                        }
                    }
                    let at = Instant::now();
                    self.marks.tls = at - self.step_began;
                    self.step_began = at;
                    self.state = State::Sending;
                }
                State::Sending => {
                    while self.written < self.out.len() {
                        let n = self.transport.write(&self.out[self.written..])?;
                        if n == 0 {
                            return Ok(Outcome::Pending);
                        }
                        self.written += n;
                    }
                    self.state = State::Receiving;
                }
                State::Receiving => return self.receive(),
                State::Idle => {
                    // Anything arriving on an idle connection (a close, junk) ends it.
                    let mut scratch = Vec::new();
                    let got = self.transport.read(&mut scratch, 1)?;
                    return Ok(if got.eof || got.bytes > 0 { Outcome::Closed } else { Outcome::Pending });
                }
            }
        }
    }

    fn receive(&mut self) -> Result<Outcome, FetchError> {
        // Only reached with a request in flight, which always has its reader.
        let Some(reader) = self.reader.as_mut() else { return Ok(Outcome::Pending) };
        let had_bytes = reader.started();
        let got = self.transport.read(reader.buffer(), self.read_limit)?;
        if !had_bytes && got.bytes > 0 {
            self.marks.first_byte = Instant::now() - self.step_began;
        }
        let progress = reader.advance().map_err(response_error)?;
        if progress == Progress::More {
            if got.eof {
                reader.eof().map_err(|e| match e {
                    // A reused connection closed before answering: the caller may retry it elsewhere.
                    _ if !reader.started() => FetchError::io(&io::Error::from(io::ErrorKind::UnexpectedEof)),
                    e => response_error(e),
                })?;
            } else if reader.buffer().len() >= self.read_limit {
                return Err(response_error(ResponseError::TooLarge("body")));
            } else {
                return Ok(Outcome::Pending);
            }
        }
        let Some(reader) = self.reader.take() else { return Ok(Outcome::Pending) };
        let reusable = reader.reusable() && !got.eof;
        let (head, body) = reader.into_parts();
        self.out = Vec::new();
        if reusable {
            self.state = State::Idle;
        }
        Ok(Outcome::Response { head, body, reusable })
    }

    /// Whether the TCP connect has finished; its error if it failed.
    fn connected(&mut self) -> Result<bool, FetchError> {
        let addr = self.addr;
        let socket = self.transport.socket();
        if let Ok(Some(e)) | Err(e) = socket.take_error() {
            return Err(connect_error(&e, addr));
        }
        match socket.peer_addr() {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected || e.raw_os_error() == Some(libc::EINPROGRESS) => {
                Ok(false)
            }
            Err(e) => Err(connect_error(&e, addr)),
        }
    }
}

fn connect_error(e: &io::Error, addr: SocketAddr) -> FetchError {
    let code = if e.kind() == io::ErrorKind::ConnectionRefused { "connect-refused" } else { "connect-failed" };
    FetchError::new(502, code, format!("cannot connect to {addr}: {e}"), true)
}

fn response_error(e: ResponseError) -> FetchError {
    match e {
        ResponseError::TooLarge(what) => {
            FetchError::new(502, "response-too-large", format!("the response {what} is over the size limit"), false)
        }
        ResponseError::Malformed(detail) => FetchError::malformed(detail),
    }
}

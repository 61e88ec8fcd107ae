//! WebSocket connections (RFC 6455): the opening handshake's checks, and a
//! sans-I/O core that takes the client's bytes and gives back the bytes to
//! send, with tungstenite's protocol state machine (masking, fragments,
//! control frames, close codes, size limits) in between.
//!
//! The core owns no socket: the connection feeds it what it read and moves
//! what it wrote onto the wire, so the reactor's backpressure, TLS and
//! timers apply unchanged. What messages mean is the [`WsSession`]'s
//! business; other threads reach the client through a [`WsSender`].

use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use mio::Token;
use tungstenite::error::{CapacityError, Error, ProtocolError};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::{Role, WebSocketConfig, WebSocketContext};
use tungstenite::Message;

use super::mailbox::{Completion, Mailbox, Part};
use crate::http::request::{Head, Version};
use crate::http::response::Response;

/// Largest message a client may send (text or binary, all fragments).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// The frame reader's buffer: small, as a subscriber sends little.
const READ_CHUNK: usize = 4 * 1024;

/// What the application does with a WebSocket's messages. Runs on the
/// reactor thread: it must not block (hand slow work to another thread,
/// which answers through the session's [`WsSender`]).
pub trait WsSession: Send {
    /// A complete text message from the client.
    fn on_text(&mut self, text: &str);
}

/// Sends text messages to one WebSocket client from any thread.
#[derive(Debug, Clone)]
pub struct WsSender {
    mailbox: Arc<Mailbox>,
    token: Token,
    seq: u64,
    gone: Arc<AtomicBool>,
}

impl WsSender {
    pub(crate) fn new(mailbox: Arc<Mailbox>, token: Token, seq: u64) -> Self {
        WsSender { mailbox, token, seq, gone: Arc::new(AtomicBool::new(false)) }
    }

    /// Queues one text message for the client.
    pub fn send(&self, text: String) {
        if !self.is_gone() {
            self.mailbox.post(Completion { token: self.token, seq: self.seq, part: Part::Message(text) });
        }
    }

    /// Whether the connection has closed: stop producing for it.
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Acquire)
    }

    pub(crate) fn gone_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.gone)
    }
}

/// Checks an opening handshake (RFC 6455 §4.2.1): `Ok` is the `101` that
/// accepts it, `Err` the answer that refuses it (`426` for a request that
/// is no upgrade or asks for another version, `400` for a broken one).
pub fn handshake(head: &Head<'_>) -> Result<Response, Response> {
    let has_token = |name: &str, token: &str| {
        head.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).any(|h| {
            std::str::from_utf8(h.value).is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    let upgrade_required = |detail: &str| {
        Response::problem(426, "upgrade-required", detail)
            .header("Upgrade", "websocket")
            .header("Sec-WebSocket-Version", "13")
    };
    if head.method != "GET" || head.version != Version::Http11 {
        return Err(upgrade_required("a WebSocket opens with an HTTP/1.1 GET"));
    }
    if !has_token("upgrade", "websocket") || !has_token("connection", "upgrade") {
        return Err(upgrade_required("this resource speaks WebSocket: send Upgrade: websocket, Connection: Upgrade"));
    }
    if head.header("sec-websocket-version") != Some(b"13") {
        return Err(upgrade_required("only WebSocket version 13 is spoken"));
    }
    let key = head.header("sec-websocket-key").map(<[u8]>::trim_ascii).unwrap_or_default();
    // A key is 16 random bytes in base64: 24 characters ending in "==".
    let valid = key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/');
    if !valid {
        return Err(Response::problem(400, "bad-handshake", "Sec-WebSocket-Key must be 16 bytes in base64"));
    }
    Ok(Response::empty(101)
        .header("Upgrade", "websocket")
        .header("Connection", "Upgrade")
        .header("Sec-WebSocket-Accept", tungstenite::handshake::derive_accept_key(key)))
}

/// An upgraded connection's protocol state: bytes in, bytes out.
pub struct WsCore {
    ws: WebSocketContext,
    session: Box<dyn WsSession>,
    /// Encoded frames not yet moved to the wire.
    outbox: Vec<u8>,
    /// No more frames will be read: closed, refused or failed.
    done: bool,
    /// A ping went out and nothing has come back since.
    pinged: bool,
    _gone: GoneOnDrop,
}

impl std::fmt::Debug for WsCore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WsCore").field("outbox", &self.outbox.len()).field("done", &self.done).finish()
    }
}

/// Tells the session's senders, when the core is dropped, that nobody listens.
struct GoneOnDrop(Arc<AtomicBool>);

impl Drop for GoneOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The core's view of the connection for one call: the bytes read so far
/// (and whether the peer has closed), and where written bytes go.
struct Pipe<'a> {
    input: &'a [u8],
    read: usize,
    eof: bool,
    output: &'a mut Vec<u8>,
}

impl Read for Pipe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let rest = &self.input[self.read..];
        if rest.is_empty() {
            // Ok(0) is the end of the stream to tungstenite.
            return if self.eof { Ok(0) } else { Err(io::ErrorKind::WouldBlock.into()) };
        }
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.read += n;
        Ok(n)
    }
}

impl Write for Pipe<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl WsCore {
    /// The core of a connection whose handshake was just accepted.
    pub fn new(session: Box<dyn WsSession>, gone: Arc<AtomicBool>) -> Self {
        let config = WebSocketConfig::default()
            .read_buffer_size(READ_CHUNK)
            .write_buffer_size(0)
            .max_message_size(Some(MAX_MESSAGE))
            .max_frame_size(Some(MAX_MESSAGE))
            .accept_unmasked_frames(false);
        WsCore {
            ws: WebSocketContext::new(Role::Server, Some(config)),
            session,
            outbox: Vec::new(),
            done: false,
            pinged: false,
            _gone: GoneOnDrop(gone),
        }
    }

    /// Takes the client's bytes (`eof`: the peer closed after them): every
    /// complete message goes to the session, control frames are answered.
    /// Returns how many bytes were used (all of them, unless done).
    pub fn receive(&mut self, input: &[u8], eof: bool) -> usize {
        if self.done {
            return 0;
        }
        let mut pipe = Pipe { input, read: 0, eof, output: &mut self.outbox };
        if !input.is_empty() {
            self.pinged = false;
        }
        loop {
            match self.ws.read(&mut pipe) {
                Ok(Message::Text(text)) => self.session.on_text(text.as_str()),
                Ok(Message::Binary(_)) => {
                    fail(&mut self.ws, &mut pipe, CloseCode::Unsupported, "only text messages are understood");
                    self.done = true;
                }
                // Pongs are queued by tungstenite itself; a Close is answered
                // and the next read says the connection is closed.
                Ok(_) => {}
                Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    if let Some((code, reason)) = close_code(&e) {
                        fail(&mut self.ws, &mut pipe, code, reason);
                    }
                    // After a capacity error the frame reader would skip its
                    // size check on the next read: never read again.
                    self.done = true;
                    break;
                }
            }
        }
        let used = pipe.read;
        // Queued pongs and close replies go out now, not on the next read.
        let _ = self.ws.flush(&mut pipe);
        used
    }

    /// Queues a text message; `false` when the connection is closing and
    /// takes no more.
    pub fn send(&mut self, text: String) -> bool {
        let mut pipe = Pipe { input: &[], read: 0, eof: false, output: &mut self.outbox };
        self.ws.write(&mut pipe, Message::text(text)).and_then(|()| self.ws.flush(&mut pipe)).is_ok()
    }

    /// Sends a ping; `false` if one went out already with no answer since
    /// (the client is gone).
    pub fn ping(&mut self) -> bool {
        if self.pinged {
            return false;
        }
        self.pinged = true;
        let mut pipe = Pipe { input: &[], read: 0, eof: false, output: &mut self.outbox };
        let _ = self.ws.write(&mut pipe, Message::Ping(Default::default())).and_then(|()| self.ws.flush(&mut pipe));
        true
    }

    /// Starts the closing handshake with `code`; reads end.
    pub fn close(&mut self, code: CloseCode, reason: &'static str) {
        let mut pipe = Pipe { input: &[], read: 0, eof: false, output: &mut self.outbox };
        fail(&mut self.ws, &mut pipe, code, reason);
        self.done = true;
    }

    /// Whether no more frames will be read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Bytes of encoded frames waiting for the wire.
    pub fn queued(&self) -> usize {
        self.outbox.len()
    }

    /// Encoded frames waiting for the wire.
    pub fn outbox(&mut self) -> &mut Vec<u8> {
        &mut self.outbox
    }
}

/// Sends a Close frame with `code` (if none went out yet).
fn fail(ws: &mut WebSocketContext, pipe: &mut Pipe<'_>, code: CloseCode, reason: &'static str) {
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = ws.close(pipe, Some(frame));
}

/// The close code an error of the client's calls for (RFC 6455 §7.4.1);
/// `None` when the connection simply ended.
fn close_code(e: &Error) -> Option<(CloseCode, &'static str)> {
    match e {
        Error::Capacity(CapacityError::MessageTooLong { .. }) => Some((CloseCode::Size, "message too large")),
        Error::Capacity(_) => Some((CloseCode::Size, "too large")),
        Error::Utf8(_) => Some((CloseCode::Invalid, "text is not UTF-8")),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A session that keeps what it hears.
    struct Heard(Arc<Mutex<Vec<String>>>);

    impl WsSession for Heard {
        fn on_text(&mut self, text: &str) {
            self.0.lock().unwrap().push(text.to_string());
        }
    }

    fn core() -> (WsCore, Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let gone = Arc::new(AtomicBool::new(false));
        (WsCore::new(Box::new(Heard(Arc::clone(&heard))), Arc::clone(&gone)), heard, gone)
    }

    /// A client's side: encodes (masked) what it sends, decodes what the
    /// server wrote.
    struct Client(WebSocketContext);

    impl Client {
        fn new() -> Self {
            Client(WebSocketContext::new(Role::Client, None))
        }

        fn encode(&mut self, message: Message) -> Vec<u8> {
            let mut out = Vec::new();
            let mut pipe = Pipe { input: &[], read: 0, eof: false, output: &mut out };
            self.0.write(&mut pipe, message).unwrap();
            self.0.flush(&mut pipe).unwrap();
            out
        }

        fn decode(&mut self, bytes: &[u8]) -> Vec<Message> {
            let mut sink = Vec::new();
            let mut pipe = Pipe { input: bytes, read: 0, eof: false, output: &mut sink };
            std::iter::from_fn(|| self.0.read(&mut pipe).ok()).collect()
        }
    }

    #[test]
    fn messages_split_anywhere_reach_the_session_whole() {
        let (mut core, heard, _) = core();
        let mut client = Client::new();
        let bytes = [client.encode(Message::text("one")), client.encode(Message::text("two"))].concat();
        for byte in bytes.chunks(1) {
            assert_eq!(core.receive(byte, false), 1);
        }
        assert_eq!(*heard.lock().unwrap(), ["one", "two"]);
        assert!(!core.is_done());
    }

    #[test]
    fn pings_are_answered_and_closes_echoed() {
        let (mut core, _, _) = core();
        let mut client = Client::new();
        core.receive(&client.encode(Message::Ping("hi".into())), false);
        assert_eq!(client.decode(&std::mem::take(core.outbox())), [Message::Pong("hi".into())]);
        let close = CloseFrame { code: CloseCode::Normal, reason: "bye".into() };
        core.receive(&client.encode(Message::Close(Some(close))), false);
        assert!(core.is_done());
        let echoed = client.decode(&std::mem::take(core.outbox()));
        assert!(matches!(&echoed[..], [Message::Close(Some(f))] if f.code == CloseCode::Normal), "{echoed:?}");
    }

    #[test]
    fn a_message_over_the_limit_closes_with_1009_and_nothing_more_is_read() {
        let (mut core, heard, _) = core();
        let mut client = Client::new();
        let big = client.encode(Message::text("x".repeat(MAX_MESSAGE + 1)));
        core.receive(&big, false);
        assert!(core.is_done());
        assert_eq!(core.receive(&client.encode(Message::text("after")), false), 0);
        assert!(heard.lock().unwrap().is_empty());
        let closed = client.decode(&std::mem::take(core.outbox()));
        assert!(matches!(&closed[..], [Message::Close(Some(f))] if f.code == CloseCode::Size), "{closed:?}");
    }

    #[test]
    fn an_unmasked_frame_closes_with_1002() {
        let (mut core, heard, _) = core();
        // A server-role encoder does not mask: what a broken client would send.
        let mut unmasked = Vec::new();
        let mut server = WebSocketContext::new(Role::Server, None);
        let mut pipe = Pipe { input: &[], read: 0, eof: false, output: &mut unmasked };
        server.write(&mut pipe, Message::text("hello")).unwrap();
        server.flush(&mut pipe).unwrap();
        core.receive(&unmasked, false);
        assert!(core.is_done() && heard.lock().unwrap().is_empty());
        let closed = Client::new().decode(&std::mem::take(core.outbox()));
        assert!(matches!(&closed[..], [Message::Close(Some(f))] if f.code == CloseCode::Protocol), "{closed:?}");
    }

    #[test]
    fn sends_pings_and_closes_go_out_as_frames_and_a_dropped_core_is_gone() {
        let (mut core, _, gone) = core();
        let mut client = Client::new();
        assert!(core.send("event".to_string()));
        assert!(core.ping());
        assert!(!core.ping(), "a second ping with no answer means the client is gone");
        core.receive(&client.encode(Message::Pong(Default::default())), false);
        assert!(core.ping(), "an answer clears it");
        core.close(CloseCode::Away, "shutting down");
        assert!(!core.send("late".to_string()), "nothing after a close");
        let out = client.decode(&std::mem::take(core.outbox()));
        assert_eq!(out[0], Message::text("event"));
        assert!(matches!(out[1], Message::Ping(_)) && matches!(out[2], Message::Ping(_)));
        assert!(matches!(&out[3], Message::Close(Some(f)) if f.code == CloseCode::Away), "{out:?}");
        drop(core);
        assert!(gone.load(Ordering::Acquire));
    }

    #[test]
    fn a_peer_that_vanishes_ends_the_core_without_a_close_frame() {
        let (mut core, _, _) = core();
        core.receive(&[], true);
        assert!(core.is_done() && core.outbox().is_empty());
    }
}

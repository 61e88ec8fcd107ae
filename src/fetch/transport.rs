//! A client socket, plain or TLS, driven edge-triggered: every call moves
//! as many bytes as the socket takes before `WouldBlock`.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use super::error::FetchError;

/// How much a read asks of the socket at a time.
const READ_CHUNK: usize = 16 * 1024;

/// What a read found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Received {
    /// Bytes appended.
    pub bytes: usize,
    /// The peer closed (or sent `close_notify`).
    pub eof: bool,
    /// The socket has nothing more for now (`WouldBlock`).
    pub drained: bool,
}

/// A connected (or connecting) socket.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TcpStream, Box<ClientConnection>),
}

fn tls_error(e: &rustls::Error) -> FetchError {
    FetchError::new(502, "tls-failed", format!("TLS: {e}"), false)
}

impl Transport {
    /// Wraps `stream` in TLS for `host` when `tls` is given.
    pub fn new(stream: TcpStream, tls: Option<(&Arc<ClientConfig>, &str)>) -> Result<Transport, FetchError> {
        let Some((config, host)) = tls else { return Ok(Transport::Plain(stream)) };
        // IP literals arrive bracketed for IPv6; ServerName wants them bare.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_string())
            .map_err(|_| FetchError::new(422, "bad-url", format!("{host:?} is not a valid TLS server name"), false))?;
        let conn = ClientConnection::new(Arc::clone(config), name).map_err(|e| tls_error(&e))?;
        Ok(Transport::Tls(stream, Box::new(conn)))
    }

    /// The socket, to register with the poller.
    pub fn socket(&mut self) -> &mut TcpStream {
        match self {
            Transport::Plain(s) | Transport::Tls(s, _) => s,
        }
    }

    /// Whether a TLS handshake is still under way.
    pub fn handshaking(&self) -> bool {
        matches!(self, Transport::Tls(_, tls) if tls.is_handshaking())
    }

    /// Moves a TLS handshake on: reads the records the socket has, then
    /// sends the replies. (A read into an empty buffer would not read.)
    pub fn handshake(&mut self) -> Result<(), FetchError> {
        let Transport::Tls(stream, tls) = self else { return Ok(()) };
        while tls.is_handshaking() {
            match tls.read_tls(stream) {
                Ok(0) => return Err(FetchError::io(&io::ErrorKind::UnexpectedEof.into())),
                Ok(_) => {
                    if let Err(e) = tls.process_new_packets() {
                        let _ = tls.write_tls(stream);
                        return Err(tls_error(&e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FetchError::io(&e)),
            }
        }
        self.flush()
    }

    /// Sends what TLS has queued (handshake messages, encrypted data).
    pub fn flush(&mut self) -> Result<(), FetchError> {
        let Transport::Tls(stream, tls) = self else { return Ok(()) };
        while tls.wants_write() {
            match tls.write_tls(stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FetchError::io(&e)),
            }
        }
        Ok(())
    }

    /// Writes as much of `data` as the socket (or TLS's buffer) takes.
    pub fn write(&mut self, data: &[u8]) -> Result<usize, FetchError> {
        let written = match self {
            Transport::Plain(stream) => match stream.write(data) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => 0,
                Err(e) => return Err(FetchError::io(&e)),
            },
            Transport::Tls(_, tls) => tls.writer().write(data).map_err(|e| FetchError::io(&e))?,
        };
        self.flush()?;
        Ok(written)
    }

    /// Reads into `out` until the socket is drained, the peer closed, or
    /// `out` holds `limit` bytes; grows `out` a chunk at a time.
    pub fn read(&mut self, out: &mut Vec<u8>, limit: usize) -> Result<Received, FetchError> {
        let mut got = Received::default();
        while out.len() < limit && !got.eof && !got.drained {
            let len = out.len();
            out.resize(len + (limit - len).min(READ_CHUNK), 0);
            let step = self.read_into(&mut out[len..]);
            out.truncate(len + step.as_ref().map_or(0, |s| s.bytes));
            let step = step?;
            got = Received { bytes: got.bytes + step.bytes, eof: step.eof, drained: step.drained };
        }
        Ok(got)
    }

    /// Reads into `buf` until it is full, the socket is drained, or the peer
    /// closed: the load tester reads straight into its own buffer.
    pub fn read_into(&mut self, buf: &mut [u8]) -> Result<Received, FetchError> {
        let mut got = Received::default();
        while got.bytes < buf.len() && !got.eof {
            let result = match self {
                Transport::Plain(stream) => stream.read(&mut buf[got.bytes..]),
                Transport::Tls(stream, tls) => {
                    match tls.reader().read(&mut buf[got.bytes..]) {
                        Ok(n) => Ok(n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // No plaintext: fetch more records from the socket.
                            match tls.read_tls(stream) {
                                Ok(0) => Ok(0),
                                Ok(_) => {
                                    if let Err(e) = tls.process_new_packets() {
                                        // The last gasp: let the alert reach the peer.
                                        let _ = tls.write_tls(stream);
                                        return Err(tls_error(&e));
                                    }
                                    continue;
                                }
                                Err(e) => Err(e),
                            }
                        }
                        // Closed without close_notify: the framing decides whether that is an error.
                        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                        Err(e) => Err(e),
                    }
                }
            };
            match result {
                Ok(0) => got.eof = true,
                Ok(n) => got.bytes += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    got.drained = true;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(FetchError::io(&e)),
            }
        }
        self.flush()?;
        Ok(got)
    }
}

//! What lies between a connection and its socket: nothing (plain HTTP) or
//! TLS, with rustls' state machine fed bytes in memory. Sans I/O like the
//! connection: an engine hands it what the socket received and gives it a
//! `Write` for the records to send (the socket itself, or a buffer the
//! kernel will own), so both engines share it.

use std::io::{self, IoSlice, Read, Write};

use rustls::ServerConnection;

use super::connection::{Connection, Env};
use super::wire::IOVECS;
use crate::http::error::HttpError;

/// The first byte of every TLS record that opens a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// Plain, or TLS over the socket.
#[derive(Debug)]
pub enum Transport {
    /// Bytes go to and from the socket as they are.
    Plain,
    /// Bytes are TLS records.
    Tls(Box<Tls>),
}

/// A TLS session and whether its first byte was checked.
#[derive(Debug)]
pub struct Tls {
    conn: ServerConnection,
    /// The first byte was seen to open a TLS handshake.
    checked: bool,
}

impl Transport {
    /// TLS with `conn`.
    pub fn tls(conn: ServerConnection) -> Transport {
        Transport::Tls(Box::new(Tls { conn, checked: false }))
    }

    /// Hands bytes the socket received to the connection: as they are, or
    /// as the plaintext their records carry. A client speaking plain HTTP
    /// to a TLS port is answered in plain HTTP (a TLS alert is nothing it
    /// could read); a broken TLS stream aborts the connection, its alert
    /// left for [`Transport::last_gasp`].
    pub fn receive(&mut self, bytes: &[u8], conn: &mut Connection, env: &mut Env<'_>) {
        let Transport::Tls(tls) = self else {
            conn.on_read(bytes, env);
            return;
        };
        if !tls.checked {
            match bytes.first() {
                None => return,
                Some(&TLS_HANDSHAKE) => tls.checked = true,
                Some(_) => {
                    *self = Transport::Plain;
                    conn.on_error(HttpError::PlainOnTlsPort, env);
                    return;
                }
            }
        }
        if tls.receive(bytes, conn, env).is_err() {
            conn.abort();
        }
    }

    /// Writes the connection's output to `out` (a socket) until it takes
    /// no more: as it is, or as TLS records, TLS taking the plaintext and
    /// writing its records.
    pub fn send(&mut self, conn: &mut Connection, env: &mut Env<'_>, out: &mut impl Write) -> io::Result<()> {
        match self {
            Transport::Plain => write_pending(conn, env, out),
            Transport::Tls(tls) => {
                write_pending(conn, env, &mut tls.conn.writer())?;
                tls.flush(out)
            }
        }
    }

    /// Ends the write side's TLS with a `close_notify` (sent by the next
    /// [`Transport::send`]).
    pub fn close_notify(&mut self) {
        if let Transport::Tls(tls) = self {
            tls.conn.send_close_notify();
        }
    }

    /// Whether TLS holds records not yet written out.
    pub fn wants_write(&self) -> bool {
        matches!(self, Transport::Tls(tls) if tls.conn.wants_write())
    }

    /// Best effort, for a connection being dropped: writes what TLS still
    /// holds (an alert saying why) without waiting.
    pub fn last_gasp(&mut self, out: &mut impl Write) {
        if let Transport::Tls(tls) = self {
            let _ = tls.flush(out);
        }
    }
}

/// Writes the connection's unsent output to `out` in place until it is all
/// out or `out` takes no more (a socket's WouldBlock; 0 from TLS, whose
/// plaintext buffer is full).
fn write_pending(conn: &mut Connection, env: &mut Env<'_>, out: &mut impl Write) -> io::Result<()> {
    loop {
        let result = {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            match conn.pending_write(&mut slices) {
                0 => return Ok(()),
                1 => out.write(&slices[0]),
                n => out.write_vectored(&slices[..n]),
            }
        };
        match result {
            Ok(0) => return Ok(()),
            Ok(n) => conn.on_written(n, env),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

impl Tls {
    fn receive(&mut self, mut bytes: &[u8], conn: &mut Connection, env: &mut Env<'_>) -> io::Result<()> {
        let mut plain = [0u8; 16 * 1024];
        while !bytes.is_empty() {
            self.conn.read_tls(&mut bytes)?;
            self.conn.process_new_packets().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            loop {
                match self.conn.reader().read(&mut plain) {
                    // close_notify: the client sends nothing more.
                    Ok(0) => {
                        conn.on_eof(env.now);
                        break;
                    }
                    Ok(n) => conn.on_read(&plain[..n], env),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    fn flush(&mut self, out: &mut impl Write) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(out) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

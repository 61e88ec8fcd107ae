//! A client connection's byte stream: plain TCP, or TLS over it with
//! rustls' state machine fed from the socket. Either way it reads and
//! writes as a non-blocking socket does (`WouldBlock` when it can go no
//! further), so the connection above it does not know which it has.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;
use std::os::fd::AsRawFd;

use mio::net::TcpStream;
use rustls::ServerConnection;

/// The first byte of every TLS record that opens a handshake.
const TLS_HANDSHAKE: u8 = 0x16;

/// A client's TCP stream, with TLS over it when it came to a TLS listener.
#[derive(Debug)]
pub struct Socket {
    stream: TcpStream,
    tls: Option<Tls>,
}

#[derive(Debug)]
struct Tls {
    conn: Box<ServerConnection>,
    /// The first byte was seen to open a TLS handshake.
    checked: bool,
}

/// A read on a TLS port found plain HTTP: the connection answers it in
/// plain HTTP (after [`Socket::drop_tls`]) rather than with a TLS alert the
/// client cannot read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlainOnTls;

impl std::fmt::Display for PlainOnTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain HTTP sent to a TLS port")
    }
}

impl std::error::Error for PlainOnTls {}

impl Socket {
    /// A plain socket.
    pub fn plain(stream: TcpStream) -> Socket {
        Socket { stream, tls: None }
    }

    /// A socket whose bytes are TLS records of `conn`.
    pub fn tls(stream: TcpStream, conn: ServerConnection) -> Socket {
        Socket { stream, tls: Some(Tls { conn: Box::new(conn), checked: false }) }
    }

    /// The TCP socket, to register with the poller.
    pub fn tcp_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends what TLS has queued (handshake messages, records, alerts) until
    /// the socket is full.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else { return Ok(()) };
        while tls.conn.wants_write() {
            match tls.conn.write_tls(&mut self.stream) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether TLS still holds bytes for the socket.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Ends the write side: a TLS `close_notify` (sent by the next flush),
    /// then the TCP FIN once nothing is left for the socket.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.conn.send_close_notify();
            self.flush_tls()?;
        }
        self.stream.shutdown(Shutdown::Write)
    }

    /// Drops TLS, to answer a plain-HTTP client in plain HTTP.
    pub fn drop_tls(&mut self) {
        self.tls = None;
    }

    /// Bytes the kernel has not yet had acknowledged.
    pub fn unacknowledged(&self) -> usize {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ (SIOCOUTQ on a socket) writes one int: the bytes not yet acknowledged.
        let rc = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if rc == 0 {
            usize::try_from(queued).unwrap_or(0)
        } else {
            0
        }
    }
}

/// Reads TLS records until plaintext fills `buf` or the socket is dry.
fn read_tls(stream: &mut TcpStream, conn: &mut ServerConnection, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    loop {
        match conn.reader().read(&mut buf[got..]) {
            Ok(n) => {
                got += n;
                // Ok(0): close_notify came. A full buffer: the caller reads again.
                if n == 0 || got == buf.len() {
                    return Ok(got);
                }
            }
            // Closed without close_notify: HTTP framing says whether that matters.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(got),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        match conn.read_tls(stream) {
            Ok(0) => return Ok(got),
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    // The last gasp: let the alert reach the peer.
                    let _ = conn.write_tls(stream);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && got > 0 => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else { return self.stream.read(buf) };
        if !tls.checked {
            let mut first = [0u8; 1];
            match self.stream.peek(&mut first)? {
                0 => return Ok(0),
                _ if first[0] != TLS_HANDSHAKE => return Err(io::Error::new(io::ErrorKind::InvalidData, PlainOnTls)),
                _ => tls.checked = true,
            }
        }
        read_tls(&mut self.stream, &mut tls.conn, buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if self.tls.is_none() {
            return self.stream.write_vectored(bufs);
        }
        // Room first: TLS takes plaintext only up to its buffer limit.
        self.flush_tls()?;
        let n = match &mut self.tls {
            Some(tls) => tls.conn.writer().write_vectored(bufs)?,
            None => 0,
        };
        self.flush_tls()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

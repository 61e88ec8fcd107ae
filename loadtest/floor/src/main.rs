//! The floor: the least a mio server can do per request, as a peer for
//! `compare-plaintext.sh`. It parses nothing, keeps no timers and records
//! nothing: it counts request ends (`\r\n\r\n`) and answers each with the
//! same bytes pagelens sends for `GET /livez`, with the same calls (one
//! edge-triggered registration, reads until a short read, one write). The
//! gap between it and pagelens is what pagelens' HTTP work costs; the gap
//! between it and nginx is what no mio server can win back.
//!
//! Only for wrk-style GETs without bodies; the Date is fixed (same length as
//! a live one), since only the bytes' count matters here.
//!
//! Usage: pagelens-floor [ADDR]   (default 127.0.0.1:18083)

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::io::{self, ErrorKind, Read, Write};

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: pagelens\r\nDate: Thu, 01 Jan 1970 00:00:00 GMT\r\n\
Content-Type: text/plain; charset=utf-8\r\nContent-Length: 2\r\n\r\nok";
const REQUEST_END: &[u8] = b"\r\n\r\n";
const LISTENER: Token = Token(usize::MAX);

struct Conn {
    stream: TcpStream,
    /// How many bytes of `REQUEST_END` the input has matched so far.
    matched: usize,
    out: Vec<u8>,
}

impl Conn {
    /// Reads until a short read, queueing one response per request end;
    /// then writes what it can. Returns false when the connection is done.
    fn drive(&mut self, buf: &mut [u8]) -> bool {
        loop {
            match self.stream.read(buf) {
                Ok(0) => return false,
                Ok(n) => {
                    for &b in &buf[..n] {
                        // On a mismatch only a `\r` can start the pattern again.
                        self.matched =
                            if b == REQUEST_END[self.matched] { self.matched + 1 } else { usize::from(b == b'\r') };
                        if self.matched == REQUEST_END.len() {
                            self.out.extend_from_slice(RESPONSE);
                            self.matched = 0;
                        }
                    }
                    if n < buf.len() {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        while !self.out.is_empty() {
            match self.stream.write(&self.out) {
                Ok(n) => drop(self.out.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }
}

fn main() -> io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18083".into());
    let addr = addr.parse().map_err(|e| io::Error::new(ErrorKind::InvalidInput, format!("{addr}: {e}")))?;
    let mut poll = Poll::new()?;
    let mut listener = TcpListener::bind(addr)?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0; 4096];
    loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            other => other?,
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                while let Ok((mut stream, _)) = listener.accept() {
                    stream.set_nodelay(true)?;
                    let slot = free.pop().unwrap_or_else(|| {
                        conns.push(None);
                        conns.len() - 1
                    });
                    poll.registry().register(&mut stream, Token(slot), Interest::READABLE | Interest::WRITABLE)?;
                    conns[slot] = Some(Conn { stream, matched: 0, out: Vec::new() });
                }
            } else if let Some(conn) = conns.get_mut(event.token().0).and_then(Option::as_mut) {
                if !conn.drive(&mut buf) {
                    conns[event.token().0] = None;
                    free.push(event.token().0);
                }
            }
        }
    }
}

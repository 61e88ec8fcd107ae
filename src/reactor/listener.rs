//! Listening sockets: one per reactor on the same port (SO_REUSEPORT), so
//! the kernel spreads new connections over the reactors without a shared
//! accept lock.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// A listening socket and, for a TLS port, the configuration its
/// connections' handshakes use.
#[derive(Debug)]
pub struct Listening {
    /// The socket.
    pub socket: TcpListener,
    /// TLS, or `None` for plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Accept backlog. mio's own `bind` uses 128, too small for a load test
/// with hundreds of connections opening at once; the kernel caps this at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Checks that no other process holds `addr`. SO_REUSEPORT would otherwise
/// let us share a port silently with an older instance of ourselves.
fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// One listener a reactor on `addr` (after checking no other process holds
/// it), all speaking TLS with `tls` when given.
pub fn bind_all(
    addr: SocketAddr,
    reactors: usize,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> io::Result<Vec<Listening>> {
    ensure_free(addr)?;
    let first = bind(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![Listening { socket: first, tls: tls.clone() }];
    for _ in 1..reactors {
        listeners.push(Listening { socket: bind(addr)?, tls: tls.clone() });
    }
    Ok(listeners)
}

/// A non-blocking listener on `addr` with SO_REUSEPORT set.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.bind(&addr.into()).map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(TcpListener::from_std(socket.into()))
}

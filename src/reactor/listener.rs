//! Listening sockets: one per reactor on the same port (SO_REUSEPORT), so
//! the kernel spreads new connections over the reactors without a shared
//! accept lock.

use std::io;
use std::net::SocketAddr;

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};

/// Accept backlog. mio's own `bind` uses 128, too small for a load test
/// with hundreds of connections opening at once; the kernel caps this at
/// `net.core.somaxconn`.
const BACKLOG: i32 = 4096;

/// Checks that no other process holds `addr`. SO_REUSEPORT would otherwise
/// let us share a port silently with an older instance of ourselves.
pub fn ensure_free(addr: SocketAddr) -> io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    std::net::TcpListener::bind(addr)
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// A non-blocking listener on `addr` with SO_REUSEPORT set.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
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

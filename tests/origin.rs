//! A scriptable origin server on loopback for the fetcher's tests: plain or
//! TLS (a CA and certificate generated here with rcgen), a thread per
//! connection, and a record of what it saw (connections, requests, peak
//! concurrency) to prove reuse, caps and retries from the outside.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A request the origin received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// When its head arrived.
    pub at: Instant,
    /// `GET`, `POST`...
    pub method: String,
    /// The request target.
    pub path: String,
    /// Lower-cased names, values.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
    /// The number of the connection it came on (1, 2, ...).
    pub connection: usize,
}

impl Seen {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// What the origin does with a request.
pub enum Action {
    /// Writes these bytes (a whole response), then keeps the connection
    /// unless they say `Connection: close`.
    Send(Vec<u8>),
    /// Waits this long, then writes the bytes.
    SendAfter(Duration, Vec<u8>),
    /// Writes the bytes one at a time, this long apart.
    Trickle(Vec<u8>, Duration),
    /// Writes a head, then body bytes without end (until the client goes).
    Endless(Vec<u8>),
    /// Never answers (holds the connection for up to 30 s).
    Hang,
    /// Closes the connection without a word.
    Close,
}

/// A plain `200` with a body of the given type.
pub fn ok(content_type: &str, body: &[u8]) -> Action {
    Action::Send(response(200, &[("Content-Type", content_type)], body))
}

/// A response's bytes.
pub fn response(status: u16, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\n", body.len()).into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

type Handler = dyn Fn(&Seen) -> Action + Send + Sync;

/// A test CA and a server certificate it signed.
pub struct Tls {
    /// The CA certificate, for the client to trust.
    pub ca: CertificateDer<'static>,
    config: Arc<rustls::ServerConfig>,
}

/// A fresh test CA, and a certificate it signed for `names` with its key.
pub struct Issued {
    pub ca: rcgen::Certificate,
    pub cert: rcgen::Certificate,
    pub key: rcgen::KeyPair,
}

impl Issued {
    pub fn new(names: &[&str]) -> Issued {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "pagelens test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let cert = rcgen::CertificateParams::new(names).unwrap().signed_by(&key, &ca).unwrap();
        Issued { ca: ca.as_ref().clone(), cert, key }
    }
}

impl Tls {
    /// A fresh CA and a certificate for `names`.
    pub fn new(names: &[&str]) -> Tls {
        let Issued { ca, cert, key } = Issued::new(names);
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone(), ca.der().clone()], key)
            .unwrap();
        Tls { ca: ca.der().clone(), config: Arc::new(config) }
    }
}

/// A running origin.
pub struct Origin {
    /// Where it listens.
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Origin {
    /// Starts a plain origin answering with `handler`.
    pub fn start(handler: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> Origin {
        Origin::start_tls(None, handler)
    }

    /// Starts an origin, over TLS when `tls` is given.
    pub fn start_tls(tls: Option<&Tls>, handler: impl Fn(&Seen) -> Action + Send + Sync + 'static) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let origin = Origin {
            addr: listener.local_addr().unwrap(),
            connections: Arc::default(),
            open: Arc::default(),
            peak: Arc::default(),
            seen: Arc::default(),
            stop: Arc::default(),
        };
        let handler: Arc<Handler> = Arc::new(handler);
        let (connections, open, peak, seen, stop) = (
            Arc::clone(&origin.connections),
            Arc::clone(&origin.open),
            Arc::clone(&origin.peak),
            Arc::clone(&origin.seen),
            Arc::clone(&origin.stop),
        );
        let tls = tls.map(|t| Arc::clone(&t.config));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                let Ok(stream) = stream else { continue };
                let number = connections.fetch_add(1, Ordering::AcqRel) + 1;
                let now_open = open.fetch_add(1, Ordering::AcqRel) + 1;
                peak.fetch_max(now_open, Ordering::AcqRel);
                let (handler, seen, open, tls) =
                    (Arc::clone(&handler), Arc::clone(&seen), Arc::clone(&open), tls.clone());
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let _ = stream.set_nodelay(true);
                    match tls {
                        None => serve(stream, number, &*handler, &seen),
                        Some(config) => {
                            if let Ok(conn) = rustls::ServerConnection::new(config) {
                                serve(rustls::StreamOwned::new(conn, stream), number, &*handler, &seen);
                            }
                        }
                    }
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        origin
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// The most connections open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Acquire)
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(mut stream: impl Read + Write, connection: usize, handler: &Handler, seen: &Mutex<Vec<Seen>>) {
    let mut buf = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buf, connection) else { return };
        seen.lock().unwrap().push(request.clone());
        let bytes = match handler(&request) {
            Action::Send(bytes) => bytes,
            Action::SendAfter(wait, bytes) => {
                std::thread::sleep(wait);
                bytes
            }
            Action::Trickle(bytes, gap) => {
                for b in bytes {
                    if stream.write_all(&[b]).and_then(|()| stream.flush()).is_err() {
                        return;
                    }
                    std::thread::sleep(gap);
                }
                return;
            }
            Action::Endless(head) => {
                let _ = stream.write_all(&head);
                let chunk = vec![b'a'; 64 * 1024];
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until && stream.write_all(&chunk).is_ok() {}
                return;
            }
            Action::Hang => {
                let mut sink = [0u8; 64];
                let until = Instant::now() + Duration::from_secs(30);
                while Instant::now() < until && !matches!(stream.read(&mut sink), Ok(0) | Err(_)) {}
                return;
            }
            Action::Close => return,
        };
        if stream.write_all(&bytes).and_then(|()| stream.flush()).is_err() {
            return;
        }
        let head_end = bytes.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(bytes.len());
        if String::from_utf8_lossy(&bytes[..head_end]).to_ascii_lowercase().contains("connection: close") {
            return;
        }
    }
}

/// Reads one request (Content-Length bodies only, which is all the fetcher sends).
fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>, connection: usize) -> Option<Seen> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(n)) = req.parse(buf) {
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned()))
                .collect();
            let length: usize =
                headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
            let (method, path) = (req.method.unwrap_or("").to_string(), req.path.unwrap_or("").to_string());
            while buf.len() < n + length {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return None,
                    Ok(k) => buf.extend_from_slice(&chunk[..k]),
                }
            }
            let body = buf[n..n + length].to_vec();
            buf.drain(..n + length);
            return Some(Seen { at: Instant::now(), method, path, headers, body, connection });
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

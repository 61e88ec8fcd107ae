//! TLS termination through the real binary, with real clients (curl and
//! Python's `ssl`) trusting a CA generated here: handshakes, keep-alive and
//! pipelining, a wrong name, plain HTTP to the TLS port, a slow handshake,
//! a certificate reloaded on SIGHUP, and bad files at start.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use crate::binary::{spawn_binary_line, stop};
use crate::origin::Issued;
use crate::util::{get, Reader, TempDir};

/// PEM files of a fresh CA and a server certificate for localhost.
struct Files {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn write_pki(dir: &Path, tag: &str) -> Files {
    let issued = Issued::new(&["localhost", "127.0.0.1"]);
    let files = Files {
        ca: dir.join(format!("{tag}-ca.pem")),
        cert: dir.join(format!("{tag}-cert.pem")),
        key: dir.join(format!("{tag}-key.pem")),
    };
    std::fs::write(&files.ca, issued.ca.pem()).unwrap();
    std::fs::write(&files.cert, issued.cert.pem()).unwrap();
    std::fs::write(&files.key, issued.key.serialize_pem()).unwrap();
    files
}

/// The binary with a plain `--listen` and a `--tls-listen`; returns it,
/// the plain address and the TLS address (both on its start line).
fn serve_tls(files: &Files, extra: &[&str]) -> (Child, SocketAddr, SocketAddr) {
    let cert = files.cert.to_str().unwrap();
    let key = files.key.to_str().unwrap();
    let mut args = vec!["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--tls-cert", cert, "--tls-key", key];
    args.extend_from_slice(extra);
    let (child, line) = spawn_binary_line(&args, &[]);
    let addr = |scheme: &str| -> SocketAddr {
        let rest = line.split(scheme).nth(1).unwrap_or_else(|| panic!("no {scheme} in {line:?}"));
        rest.split_whitespace().next().unwrap().parse().unwrap()
    };
    (child, addr("http://"), addr("https://"))
}

fn curl(args: &[&str]) -> Output {
    Command::new("curl").args(["-sS", "--max-time", "10"]).args(args).output().expect("curl runs")
}

/// What the Python `ssl` clients share: the port and CA from the command
/// line, and `exchange`, which sends bytes on a TLS connection and returns
/// the version and ALPN protocol agreed, and all it gets until the server closes.
const PYTHON_TLS: &str = r#"
import socket, ssl, sys
port, ca = int(sys.argv[1]), sys.argv[2]

def exchange(ctx, request):
    with socket.create_connection(("127.0.0.1", port)) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return s.version(), s.selected_alpn_protocol(), data
"#;

/// Runs a Python `ssl` client (after [`PYTHON_TLS`]) against `port`,
/// trusting `ca`; returns what it printed.
fn python_tls(body: &str, port: u16, ca: &Path) -> String {
    let script = format!("{PYTHON_TLS}{body}");
    let out = Command::new("python3").args(["-c", &script, &port.to_string(), ca.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A Python `ssl` client: TLS 1.2 and 1.3 each, ALPN, then three requests
/// pipelined on one connection and a 200 KB body; prints what it saw.
const PYTHON_CLIENT: &str = r#"
for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
    ctx = ssl.create_default_context(cafile=ca)
    ctx.minimum_version = ctx.maximum_version = version
    ctx.set_alpn_protocols(["http/1.1"])
    page = b"<html><head><title>TLS</title></head><body>" + b"<p>words and more words</p>" * 8000 + b"</body></html>"
    version, alpn, data = exchange(ctx, b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n" * 3
                                   + b"POST /analyze HTTP/1.1\r\nHost: t\r\nContent-Type: text/html\r\nContent-Length: "
                                   + str(len(page)).encode() + b"\r\nConnection: close\r\n\r\n" + page)
    print(version, alpn, data.count(b"HTTP/1.1 200 OK"), b'"title":"TLS"' in data)
"#;

#[test]
fn tls_serves_curl_and_python_with_keep_alive_pipelining_and_both_versions() {
    let dir = TempDir::new("tls-basic");
    let files = write_pki(dir.path(), "a");
    let (mut server, plain, tls) = serve_tls(&files, &[]);
    let ca = files.ca.to_str().unwrap();
    let url = format!("https://localhost:{}/livez", tls.port());
    // Two requests, one connection: curl reports one connect, then a reuse.
    let out = curl(&["--cacert", ca, "-w", " %{http_code} %{num_connects} %{http_version}\n", &url, &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok 200 1 1.1\nok 200 0 1.1\n");

    let out = python_tls(PYTHON_CLIENT, tls.port(), &files.ca);
    assert_eq!(out, "TLSv1.2 http/1.1 4 True\nTLSv1.3 http/1.1 4 True\n");

    // The plain port still speaks plain HTTP.
    let mut client = Reader::new(crate::util::connect(plain));
    client.send(&get("/livez"));
    assert_eq!(client.response(false).status, 200);
    stop(&mut server);
}

/// `pagelens loadtest` against the TLS port, kept-alive and with a
/// handshake per request, trusting the test CA with `--ca-file`.
#[test]
fn the_load_tester_speaks_tls_with_and_without_keep_alive() {
    let dir = TempDir::new("tls-loadtest");
    let files = write_pki(dir.path(), "a");
    let (mut server, _, tls) = serve_tls(&files, &[]);
    let url = format!("https://localhost:{}/livez", tls.port());
    for extra in [&[][..], &["--no-keepalive"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
            .args(["loadtest", "-n", "300", "-c", "4", "-t", "1", "--warmup", "0s"])
            .args(["--ca-file", files.ca.to_str().unwrap()])
            .args(extra)
            .arg(&url)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{extra:?}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains("300 requests in"), "{extra:?}: {stdout}");
    }
    stop(&mut server);
}

#[test]
fn wrong_names_plain_http_and_slow_handshakes_on_the_tls_port_are_refused_cleanly() {
    let dir = TempDir::new("tls-refusals");
    let files = write_pki(dir.path(), "a");
    let (mut server, _, tls) = serve_tls(&files, &["--header-timeout", "1s"]);
    let ca = files.ca.to_str().unwrap();

    // A name the certificate does not carry: the client refuses it (curl exit 60).
    let resolve = format!("wrong.example:{}:127.0.0.1", tls.port());
    let url = format!("https://wrong.example:{}/livez", tls.port());
    let out = curl(&["--cacert", ca, "--resolve", &resolve, &url]);
    assert_eq!(out.status.code(), Some(60), "{}", String::from_utf8_lossy(&out.stderr));

    // Plain HTTP to the TLS port: a plain 400 that says what to do.
    let mut client = Reader::new(crate::util::connect(tls));
    client.send(&get("/livez"));
    let resp = client.response(false);
    assert_eq!(resp.status, 400);
    assert_eq!(resp.problem_code(), "http-to-https-port");
    client.expect_closed();

    // A handshake that stalls after its first bytes is closed at the header timeout.
    let mut slow = TcpStream::connect(tls).unwrap();
    slow.write_all(&[0x16, 0x03, 0x01]).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let read = slow.read(&mut buf);
    let closed = matches!(&read, Ok(0)) || matches!(&read, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset);
    assert!(closed, "{read:?} after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "closed after {:?}", started.elapsed());

    // And the port serves the next client as before.
    let url = format!("https://localhost:{}/livez", tls.port());
    let out = curl(&["--cacert", ca, &url]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ok");
    stop(&mut server);
}

#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = TempDir::new("tls-reload");
    let first = write_pki(dir.path(), "a");
    let (mut server, _, tls) = serve_tls(&first, &[]);
    let url = format!("https://localhost:{}/livez", tls.port());

    // A Python client keeps one connection open across the reload.
    let held = r#"
import socket, ssl, sys
ctx = ssl.create_default_context(cafile=sys.argv[2])
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))), server_hostname="localhost")
for line in sys.stdin:
    s.sendall(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
    print(s.recv(4096).split(b"\r\n")[0].decode(), flush=True)
"#;
    let mut python = Command::new("python3")
        .args(["-c", held, &tls.port().to_string(), first.ca.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = python.stdin.take().unwrap();
    let mut stdout = std::io::BufReader::new(python.stdout.take().unwrap());
    let mut ask = || {
        use std::io::BufRead;
        stdin.write_all(b"go\n").unwrap();
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        line
    };
    assert_eq!(ask(), "HTTP/1.1 200 OK\n");

    // New files in place (another CA), then SIGHUP.
    let second = write_pki(dir.path(), "b");
    std::fs::copy(&second.cert, &first.cert).unwrap();
    std::fs::copy(&second.key, &first.key).unwrap();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.id() as i32, libc::SIGHUP) };
    let started = Instant::now();
    loop {
        let out = curl(&["--cacert", second.ca.to_str().unwrap(), &url]);
        if out.status.success() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "never reloaded");
        std::thread::sleep(Duration::from_millis(50));
    }
    let old = curl(&["--cacert", first.ca.to_str().unwrap(), &url]);
    // (Both CAs share a name, so curl fails on the signature: exit 35, not 60.)
    assert!(!old.status.success(), "new handshakes no longer get the old certificate");
    assert_eq!(ask(), "HTTP/1.1 200 OK\n", "the connection opened before the reload still works");

    // A bad file on SIGHUP keeps the served certificate.
    std::fs::write(&first.cert, "not a certificate").unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(server.id() as i32, libc::SIGHUP) };
    let out = curl(&["--cacert", second.ca.to_str().unwrap(), &url]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(stdin);
    let _ = python.wait();
    let log = stop(&mut server);
    assert!(log.contains("TLS certificate and key reloaded"), "{log}");
    // Signals are handled in order, so the failed reload was logged before the stop.
    assert!(log.contains("still serving the previous certificate"), "{log}");
}

#[test]
fn bad_certificate_files_are_a_clear_error_at_start() {
    let dir = TempDir::new("tls-bad");
    let good = write_pki(dir.path(), "a");
    let other = write_pki(dir.path(), "b");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let missing = dir.path().join("missing.pem");
    let path = |p: &PathBuf| p.to_str().unwrap().to_string();
    for (cert, key, needle) in [
        (path(&missing), path(&good.key), "--tls-cert"),
        (path(&empty), path(&good.key), "no certificates in it"),
        (path(&good.cert), path(&empty), "no private key read"),
        (path(&good.cert), path(&other.key), "does not fit --tls-cert"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory", "--tls-cert", &cert, "--tls-key", &key])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{cert} {key}: {stderr}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_pagelens")).args(["serve", "--tls-cert", &path(&good.cert)]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"), "a certificate needs its key");
}

/// The bytes metric counts what the connection sent, once: over TLS its
/// plaintext, not the plaintext and the records again. A TLS client's
/// plaintext is compared with `pagelens_http_sent_bytes_total`, scraped on
/// the plain port, whose own responses are counted exactly by the test.
#[test]
fn the_sent_bytes_metric_counts_tls_plaintext_once() {
    let dir = TempDir::new("tls-bytes");
    let files = write_pki(dir.path(), "a");
    let (mut server, plain, tls) = serve_tls(&files, &["--reactors", "1"]);
    // Three copies of the OpenAPI document (87 KB each), then a close.
    let client = r#"
_, _, data = exchange(ssl.create_default_context(cafile=ca),
                      b"GET /openapi.json HTTP/1.1\r\nHost: t\r\n\r\n" * 3 + b"GET /livez HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
print(len(data))
"#;
    let plaintext: f64 = python_tls(client, tls.port(), &files.ca).trim().parse().unwrap();
    assert!(plaintext > 200_000.0, "three documents came back: {plaintext} bytes");
    // Scrapes until the figure includes the TLS traffic (a reactor flushes
    // once a second); every scrape's own response is counted by the test.
    let mut scraped = 0.0;
    let started = Instant::now();
    loop {
        let mut stream = TcpStream::connect(plain).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        let sent: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("pagelens_http_sent_bytes_total "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0);
        if sent >= plaintext {
            assert!(sent <= plaintext + scraped, "sent {sent} bytes; the TLS client got {plaintext}, scrapes {scraped}");
            break;
        }
        scraped += raw.len() as f64;
        assert!(started.elapsed() < Duration::from_secs(10), "the TLS traffic never reached the metric: {sent}");
        // Polled, not hammered: each scrape's bytes join the figure, and a
        // few of them must stay small beside the TLS traffic.
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(&mut server);
}

//! The access log (`--access-log`): one line a response (time, client,
//! method, target, status, body bytes, duration, and the API key's name
//! when one was given), formatted on the reactor
//! and written by a thread of its own, so that a slow disk never blocks a
//! loop. Lines queue up to a bound; past it they are dropped and counted.
//! When the log is off, nothing of this runs.

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::http::request::Head;

/// Lines waiting for the writer; past this they are dropped.
const QUEUE: usize = 65_536;

/// Where access-log lines go.
#[derive(Debug)]
pub struct AccessLog {
    lines: SyncSender<String>,
    json: bool,
    dropped: AtomicU64,
}

/// What a request leaves for its access-log line.
#[derive(Debug)]
pub struct AccessEntry {
    client: IpAddr,
    method: Box<str>,
    target: Box<str>,
}

impl AccessEntry {
    /// The entry of a request from `client`.
    pub fn of(client: IpAddr, head: &Head<'_>) -> AccessEntry {
        let target = match head.query {
            Some(q) => format!("{}?{q}", head.path),
            None => head.path.to_string(),
        };
        AccessEntry { client, method: head.method.into(), target: target.into() }
    }

    /// The entry of bytes that never became a request (a protocol error).
    pub fn unparsed(client: IpAddr) -> AccessEntry {
        AccessEntry { client, method: "-".into(), target: "-".into() }
    }
}

impl AccessLog {
    /// Appends to `path` (`-`: standard output), as JSON lines when `json`;
    /// starts the writer thread.
    pub fn open(path: &Path, json: bool) -> io::Result<Arc<AccessLog>> {
        let out: Box<dyn Write + Send> = if path == Path::new("-") {
            Box::new(io::stdout())
        } else {
            Box::new(OpenOptions::new().create(true).append(true).open(path)?)
        };
        let (lines, queued) = mpsc::sync_channel(QUEUE);
        std::thread::Builder::new().name("pagelens-access-log".into()).spawn(move || write_lines(queued, out))?;
        Ok(Arc::new(AccessLog { lines, json, dropped: AtomicU64::new(0) }))
    }

    /// Queues the line of one response (`key`: the API key's name, or
    /// `""`); never blocks.
    pub fn record(&self, entry: &AccessEntry, key: &str, status: u16, bytes: Option<usize>, took: Duration) {
        let time = crate::clock::rfc3339(SystemTime::now());
        let millis = took.as_secs_f64() * 1e3;
        let line = if self.json {
            serde_json::json!({
                "ts": time,
                "client": entry.client.to_string(),
                "method": &*entry.method,
                "target": &*entry.target,
                "status": status,
                "bytes": bytes,
                "duration_ms": millis,
                "key": (!key.is_empty()).then_some(key),
            })
            .to_string()
        } else {
            let bytes = bytes.map_or_else(|| "-".to_string(), |b| b.to_string());
            // The target is quoted as sent, so a space in it cannot shift the fields.
            let key = if key.is_empty() { String::new() } else { format!(" key={key}") };
            format!("{time} {} \"{} {}\" {status} {bytes} {millis:.3}ms{key}", entry.client, entry.method, entry.target)
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.lines.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The writer thread: buffered writes, flushed whenever the queue is empty.
fn write_lines(queued: Receiver<String>, out: Box<dyn Write + Send>) {
    let mut out = BufWriter::new(out);
    while let Ok(line) = queued.recv() {
        let mut next = Some(line);
        while let Some(line) = next {
            if out.write_all(line.as_bytes()).and_then(|()| out.write_all(b"\n")).is_err() {
                return;
            }
            next = queued.try_recv().ok();
        }
        if out.flush().is_err() {
            return;
        }
    }
}

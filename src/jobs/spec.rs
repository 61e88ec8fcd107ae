//! Tasks as data: what a task is to do, written once at intake so that it
//! can be stored, recovered after a crash and run by any process. Nothing
//! here is code: a handler registered under the task's `kind` turns the
//! data into work when a worker takes it (Celery's model).

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::pool::Priority;

/// A task: which handler runs it, on what, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskSpec {
    /// The handler's name (`analyze`).
    pub kind: String,
    /// What the handler works on.
    pub input: TaskInput,
    /// How the engine runs it.
    pub options: TaskOptions,
}

/// One piece of work, or a batch of them run by the same handler.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskInput {
    /// One payload.
    One(Payload),
    /// A batch: each payload is an item with a result line of its own.
    Batch(Vec<Payload>),
}

/// One handler input: small JSON arguments and an opaque body (a page's
/// bytes, kept as bytes: a page need not be UTF-8).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// The arguments, as the handler defines them.
    pub args: serde_json::Value,
    /// The bytes, possibly empty.
    pub body: Vec<u8>,
}

/// How the engine runs a task, whatever its kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Queue priority.
    #[serde(default)]
    pub priority: Priority,
    /// Timeout in milliseconds; `None` for the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Where the final status is posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// The client's `Idempotency-Key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The API key (its name) that submitted it: only that key (or an
    /// admin) sees the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

impl TaskOptions {
    /// The timeout asked for.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_ms.map(Duration::from_millis)
    }
}

/// The length of `value` as JSON, counted without writing it anywhere.
fn json_len(value: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A Value always serialises, and counting cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The JSON half of a stored spec; the bodies follow in one blob.
#[derive(Serialize, Deserialize)]
struct Meta {
    kind: String,
    options: TaskOptions,
    batch: bool,
    items: Vec<ItemMeta>,
}

#[derive(Serialize, Deserialize)]
struct ItemMeta {
    args: serde_json::Value,
    len: usize,
}

impl TaskSpec {
    /// A task of one payload.
    pub fn one(kind: &str, args: serde_json::Value, body: Vec<u8>, options: TaskOptions) -> TaskSpec {
        TaskSpec { kind: kind.to_string(), input: TaskInput::One(Payload { args, body }), options }
    }

    /// The payloads, one for a single task.
    pub fn payloads(&self) -> &[Payload] {
        match &self.input {
            TaskInput::One(p) => std::slice::from_ref(p),
            TaskInput::Batch(items) => items,
        }
    }

    /// Items in a batch; `None` for a single task.
    pub fn batch_len(&self) -> Option<usize> {
        match &self.input {
            TaskInput::One(_) => None,
            TaskInput::Batch(items) => Some(items.len()),
        }
    }

    /// Bytes of input held while it waits: bodies and arguments (what
    /// `--max-queued-bytes` counts).
    pub fn input_bytes(&self) -> usize {
        self.payloads().iter().map(|p| p.body.len() + json_len(&p.args)).sum::<usize>() + self.kind.len() + 64
    }

    /// A digest of what the task is to do (kind, input, options but its
    /// idempotency key): two submissions under one key are the same request
    /// only if their fingerprints match.
    pub fn fingerprint(&self) -> [u8; 16] {
        let mut spec = self.clone();
        spec.options.idempotency_key = None;
        let (meta, bodies) = spec.encode();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&(meta.len() as u64).to_le_bytes());
        ctx.update(meta.as_bytes());
        ctx.update(&bodies);
        let mut out = [0u8; 16];
        out.copy_from_slice(&ctx.finish().as_ref()[..16]);
        out
    }

    /// The spec as JSON (kind, options, arguments, body lengths) and one
    /// blob of the bodies, for a store (a single task's body borrowed, not
    /// copied: it is most of the task).
    pub fn encode(&self) -> (String, Cow<'_, [u8]>) {
        let payloads = self.payloads();
        let items = payloads.iter().map(|p| ItemMeta { args: p.args.clone(), len: p.body.len() }).collect();
        let bodies = match &self.input {
            TaskInput::One(p) => Cow::Borrowed(&p.body[..]),
            TaskInput::Batch(items) => Cow::Owned(items.iter().map(|p| &p.body[..]).collect::<Vec<_>>().concat()),
        };
        let meta = Meta {
            kind: self.kind.clone(),
            options: self.options.clone(),
            batch: matches!(self.input, TaskInput::Batch(_)),
            items,
        };
        // Plain structs with string keys: serialising cannot fail.
        (serde_json::to_string(&meta).unwrap_or_default(), bodies)
    }

    /// The spec a store kept as [`encode`](TaskSpec::encode) wrote it; an
    /// error (never a panic) for damaged data.
    pub fn decode(meta: &str, mut bodies: &[u8]) -> Result<TaskSpec, String> {
        let meta: Meta = serde_json::from_str(meta).map_err(|e| format!("damaged task spec: {e}"))?;
        let mut payloads = Vec::with_capacity(meta.items.len());
        for item in meta.items {
            if item.len > bodies.len() {
                return Err("damaged task spec: its bodies are shorter than it says".into());
            }
            let (body, rest) = bodies.split_at(item.len);
            payloads.push(Payload { args: item.args, body: body.to_vec() });
            bodies = rest;
        }
        let input = match (meta.batch, payloads.len()) {
            (true, _) => TaskInput::Batch(payloads),
            (false, 1) => TaskInput::One(payloads.remove(0)),
            (false, n) => return Err(format!("damaged task spec: one task with {n} payloads")),
        };
        Ok(TaskSpec { kind: meta.kind, input, options: meta.options })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn specs_round_trip_through_their_stored_form() {
        let options = TaskOptions {
            priority: Priority::High,
            timeout_ms: Some(500),
            callback_url: Some("https://example.com/cb".into()),
            idempotency_key: Some("k".into()),
            owner: Some("ci".into()),
        };
        let one = TaskSpec::one("analyze", json!({"page_url": "https://a/"}), b"<p>\xff</p>".to_vec(), options);
        let (meta, bodies) = one.encode();
        assert_eq!(TaskSpec::decode(&meta, &bodies), Ok(one));
        let batch = TaskSpec {
            kind: "bulk".into(),
            input: TaskInput::Batch(vec![
                Payload { args: json!({"url": "https://a/"}), body: Vec::new() },
                Payload { args: json!({}), body: b"<title>x</title>".to_vec() },
            ]),
            options: TaskOptions::default(),
        };
        let (meta, bodies) = batch.encode();
        assert_eq!(TaskSpec::decode(&meta, &bodies), Ok(batch));
    }

    #[test]
    fn fingerprints_ignore_the_key_and_nothing_else() {
        let spec = |key: &str, body: &[u8]| {
            let options = TaskOptions { idempotency_key: Some(key.into()), ..TaskOptions::default() };
            TaskSpec::one("analyze", json!({"a": 1}), body.to_vec(), options)
        };
        assert_eq!(spec("k1", b"<p>").fingerprint(), spec("k2", b"<p>").fingerprint());
        assert_ne!(spec("k1", b"<p>").fingerprint(), spec("k1", b"<b>").fingerprint());
        let mut high = spec("k1", b"<p>");
        high.options.priority = Priority::High;
        assert_ne!(high.fingerprint(), spec("k1", b"<p>").fingerprint());
    }

    #[test]
    fn input_bytes_count_bodies_and_arguments() {
        let args = json!({"url": "https://a/", "n": [1, 2]});
        let spec = TaskSpec::one("analyze", args.clone(), vec![0; 100], TaskOptions::default());
        assert_eq!(json_len(&args), args.to_string().len());
        assert_eq!(spec.input_bytes(), 100 + args.to_string().len() + "analyze".len() + 64);
    }

    #[test]
    fn damaged_specs_are_errors() {
        let spec = TaskSpec::one("a", json!(null), b"12345".to_vec(), TaskOptions::default());
        let (meta, bodies) = spec.encode();
        assert!(TaskSpec::decode(&meta, &bodies[..3]).unwrap_err().contains("shorter"));
        assert!(TaskSpec::decode("{not json", &bodies).is_err());
        assert!(TaskSpec::decode(r#"{"kind":"a","options":{},"batch":false,"items":[]}"#, b"").is_err());
    }
}

//! `GET /ws` from outside: a client written with Python's standard library
//! (`tests/data/ws_client.py`: its own handshake and masked frames) follows
//! tasks by id and all at once, speaks the protocol's control frames, is
//! closed with the right code for each bad frame, is dropped when it stops
//! reading, and sees only its own key's tasks.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{spawn_binary, stop};
use crate::keys::{add_key, ask};
use crate::util::{
    api_config, call, config, engine_config, get, start_with, submit, submit_pipelined, wait_for, TempDir,
};

/// The Python client, its lines as they come.
struct WsClient {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
}

impl WsClient {
    fn start(addr: SocketAddr, args: &[&str]) -> WsClient {
        let mut child = Command::new("python3")
            .arg("tests/data/ws_client.py")
            .arg(addr.port().to_string())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs (.ci/install-test-tools installs it)");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        WsClient { stdin: child.stdin.take(), child, lines }
    }

    /// A client following all tasks (with `key`, `-` for none), once it
    /// has heard that it does.
    fn following_all(addr: SocketAddr, key: &str, ends: usize) -> WsClient {
        let client = WsClient::start(addr, &["all", key, &ends.to_string()]);
        assert_eq!(client.message(), json!({"type": "subscribed", "all": true}));
        client
    }

    /// The next line, or `None` once the client has exited.
    fn line(&self) -> Option<String> {
        match self.lines.recv_timeout(Duration::from_secs(30)) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the WebSocket client said nothing for 30 s"),
        }
    }

    fn message(&self) -> Value {
        let line = self.line().expect("a message");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// Every line until the client exits; asserts it exited cleanly.
    fn rest(mut self) -> Vec<String> {
        let lines: Vec<String> = std::iter::from_fn(|| self.line()).collect();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "client failed: {status}; said {lines:?}");
        lines
    }
}

fn messages(lines: &[String]) -> Vec<Value> {
    lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The events of task `id` among `messages`, in order: each one's
/// (type, status), asserting versions rise and the last is its end.
fn events_of(messages: &[Value], id: &str) -> Vec<(String, String)> {
    let of: Vec<&Value> = messages.iter().filter(|m| m["task"]["task_id"] == id).collect();
    assert!(of.windows(2).all(|w| w[0]["version"].as_u64() < w[1]["version"].as_u64()), "versions rise: {of:?}");
    assert!(of.iter().all(|m| m["task"].get("result").is_none()), "no results in events");
    let events: Vec<(String, String)> = of
        .iter()
        .map(|m| (m["type"].as_str().unwrap().to_string(), m["task"]["status"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(events.last().map(|e| e.0.as_str()), Some("end"), "{events:?}");
    assert!(events[..events.len() - 1].iter().all(|e| e.0 == "status"), "{events:?}");
    events
}

#[test]
fn handshakes_that_are_not_websocket_are_refused() {
    let server = start_with(config(), engine_config(), api_config());
    let addr = server.local_addr();
    let ask = |headers: &str| call(addr, format!("GET /ws HTTP/1.1\r\nHost: t\r\n{headers}\r\n").as_bytes());
    let plain = ask("");
    assert_eq!((plain.status, plain.problem_code().as_str()), (426, "upgrade-required"));
    assert_eq!(plain.header("upgrade"), Some("websocket"));
    let upgrade = "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n";
    let old = ask(&format!("{upgrade}Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_eq!((old.status, old.header("sec-websocket-version")), (426, Some("13")));
    let bad_key = ask(&format!("{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: short\r\n"));
    assert_eq!((bad_key.status, bad_key.problem_code().as_str()), (400, "bad-handshake"));
    let post = call(addr, b"POST /ws HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(post.status, 405);
    // RFC 6455's own example: the accept key is derived from the nonce.
    let good = ask(&format!("{upgrade}Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"));
    assert_eq!(good.status, 101);
    assert_eq!(good.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    assert_eq!(good.header("content-length"), None, "a 101 has no body");
}

#[test]
fn a_client_follows_all_its_tasks_and_tasks_by_id() {
    let server = start_with(config(), engine_config(), api_config());
    let addr = server.local_addr();
    let all = WsClient::following_all(addr, "-", 3);
    let ids: Vec<String> =
        (0..3).map(|i| submit(addr, json!({"html": format!("<title>Page {i}</title><h1>x</h1>")}))).collect();
    let heard = messages(&all.rest());
    for id in &ids {
        let events = events_of(&heard, id);
        assert_eq!(events.last().unwrap().1, "completed", "{events:?}");
        assert!(events.iter().any(|e| e.1 == "queued" || e.1 == "processing"), "heard from its start: {events:?}");
    }

    // By id: ended tasks end at once, an unknown id is an error, and
    // nothing else comes.
    let mut args = vec!["follow", "-"];
    args.extend(ids.iter().map(String::as_str));
    args.push("0123456789abcdef0123456789abcdef");
    let heard = messages(&WsClient::start(addr, &args).rest());
    for id in &ids {
        assert_eq!(events_of(&heard, id), [("end".to_string(), "completed".to_string())]);
    }
    let errors: Vec<&Value> = heard.iter().filter(|m| m["type"] == "error").collect();
    assert_eq!(errors.len(), 1, "{heard:?}");
    assert_eq!(errors[0]["code"], "task-not-found");
    assert_eq!(errors[0]["task"], "0123456789abcdef0123456789abcdef");
    assert_eq!(heard.len(), ids.len() + 1, "{heard:?}");
}

#[test]
fn control_frames_fragments_and_the_closing_handshake() {
    let server = start_with(config(), engine_config(), api_config());
    let addr = server.local_addr();
    let lines = WsClient::start(addr, &["protocol"]).rest();
    assert_eq!(lines[0], "pong True are you there");
    assert_eq!(lines[1], "pong True mid", "a ping between fragments is answered at once");
    let unknown: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!((&unknown["code"], &unknown["task"]), (&json!("task-not-found"), &json!("no-such-task")));
    let bad: Value = serde_json::from_str(&lines[3]).unwrap();
    assert_eq!(bad["code"], "bad-message", "a message that is no command is answered, not fatal");
    assert_eq!(lines[4..], ["close True 1000", "eof true"], "the close is echoed, then the server closes");
}

#[test]
fn bad_frames_close_with_their_codes() {
    let server = start_with(config(), engine_config(), api_config());
    let addr = server.local_addr();
    for (case, code) in [
        ("unmasked", 1002),
        ("oversized", 1009),
        ("binary", 1003),
        ("bad-utf8", 1007),
        ("reserved-bits", 1002),
        ("fragmented-ping", 1002),
        ("bad-opcode", 1002),
    ] {
        let lines = WsClient::start(addr, &["close-code", case]).rest();
        assert_eq!(lines, [format!("close {code}")], "{case}");
    }
    // The server is unharmed.
    assert_eq!(call(addr, &get("/livez")).status, 200);
}

#[test]
fn a_subscriber_that_stops_reading_is_dropped_and_the_loop_stays_free() {
    // Only its backlog can drop it: the write timeout is out of reach.
    let mut config = config();
    config.limits.write_timeout = Duration::from_secs(600);
    let server = start_with(config, engine_config(), api_config());
    let addr = server.local_addr();
    let mut stalled = WsClient::start(addr, &["stall"]);
    assert_eq!(stalled.message(), json!({"type": "subscribed", "all": true}));
    let timed_out = server.state().connections_timed_out();
    // Each task makes about seven events of ~300 bytes: 200 tasks are more
    // than the connection's backlog allows (256 KiB) beyond a 4 KiB receive buffer.
    let started = Instant::now();
    while server.state().connections_timed_out() == timed_out {
        assert!(started.elapsed() < Duration::from_secs(60), "the stalled subscriber was never dropped");
        let ids = submit_pipelined(addr, (0..200).map(|i| json!({"html": format!("<title>{i}</title>")})));
        // One round at a time, so the queue never fills.
        wait_for(addr, ids.last().unwrap(), &["completed"]);
        let probe = Instant::now();
        assert_eq!(call(addr, &get("/livez")).status, 200);
        assert!(probe.elapsed() < Duration::from_secs(2), "the loop answers while a subscriber stalls");
    }
    stalled.stdin.take().unwrap().write_all(b"read now\n").unwrap();
    let lines = stalled.rest();
    assert!(lines.len() == 1 && lines[0].starts_with("ended after"), "{lines:?}");
}

#[test]
fn a_shutdown_closes_websockets_with_going_away() {
    let server = start_with(config(), engine_config(), api_config());
    let addr = server.local_addr();
    let client = WsClient::following_all(addr, "-", 1);
    server.shutdown();
    assert_eq!(client.rest(), [r#"{"type": "closed", "code": 1001}"#]);
}

#[test]
fn with_keys_a_client_hears_only_its_own_tasks() {
    let dir = TempDir::new("ws-keys");
    let file = dir.path().join("keys.toml");
    let alice = add_key(&file, "alice", "submit,read", &[]);
    let bob = add_key(&file, "bob", "submit,read", &[]);
    let (mut server, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--api-keys", file.to_str().unwrap()], &[]);
    let submit_as = |key: &str, title: &str| {
        let resp =
            ask(addr, "POST", "/analyze/async", Some(key), Some(json!({"html": format!("<title>{title}</title>")})));
        assert_eq!(resp.status, 202, "{}", resp.text());
        crate::util::json_of(&resp)["task_id"].as_str().unwrap().to_string()
    };

    // Without a key there is no WebSocket.
    let mut refused = WsClient::start(addr, &["all", "-", "1"]);
    assert_eq!(refused.line().as_deref(), Some("refused 401"));
    assert!(!refused.child.wait().unwrap().success());

    let follower = WsClient::following_all(addr, &alice, 1);
    let bobs = submit_as(&bob, "Bob's");
    let alices = submit_as(&alice, "Alice's");
    let heard = messages(&follower.rest());
    assert_eq!(events_of(&heard, &alices).last().unwrap().1, "completed");
    assert!(heard.iter().all(|m| m["task"]["task_id"] != bobs.as_str()), "Bob's task is not Alice's to hear");

    // Bob's task by id, asked for by Alice: not found, as over HTTP.
    let heard = messages(&WsClient::start(addr, &["follow", &alice, &bobs]).rest());
    assert_eq!(heard.len(), 1);
    assert_eq!((&heard[0]["code"], &heard[0]["task"]), (&json!("task-not-found"), &json!(bobs)));
    stop(&mut server);
}

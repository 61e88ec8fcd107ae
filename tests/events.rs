//! Following a task live: Server-Sent Events of its state and progress,
//! ending with its final status, and resumption with `Last-Event-ID`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::origin::{response, Action, Origin};
use crate::util::{api_config, config, connect, engine_config, get, json_of, post, start_full, Reader, Resp};
use pagelens::fetch::{FetchConfig, Guard};

/// The events of a whole stream: (id, event, data).
fn parse(resp: &Resp) -> Vec<(u64, String, Value)> {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("text/event-stream"));
    resp.text()
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let field = |name: &str| e.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().to_string();
            (field("id: ").parse().unwrap(), field("event: "), serde_json::from_str(&field("data: ")).unwrap())
        })
        .collect()
}

fn events(addr: std::net::SocketAddr, id: &str, last_event_id: Option<u64>) -> Resp {
    let resume = last_event_id.map(|n| format!("Last-Event-ID: {n}\r\n")).unwrap_or_default();
    let mut client = Reader::new(connect(addr));
    client.send(format!("GET /analyze/status/{id}/events HTTP/1.1\r\nHost: t\r\n{resume}\r\n").as_bytes());
    client.response(false)
}

#[test]
fn a_task_is_followed_from_queued_to_its_end_and_resumed_after() {
    // A page that takes its origin 300 ms: the stream opens while the task runs.
    let page = response(200, &[("Content-Type", "text/html")], b"<title>Slow</title><h1>x</h1>");
    let origin = Origin::start(move |_| Action::SendAfter(Duration::from_millis(300), page.clone()));
    let fetch = FetchConfig { guard: Guard::open(), ..FetchConfig::default() };
    let server = start_full(config(), engine_config(), api_config(), fetch);
    let addr = server.local_addr();
    let submitted = crate::util::call(addr, &post("/analyze/async", &json!({"url": origin.url("/slow")}), ""));
    assert_eq!(submitted.status, 202);
    let id = json_of(&submitted)["task_id"].as_str().unwrap().to_string();

    // The whole stream: it ends by itself with the task.
    let all = parse(&events(addr, &id, None));
    let (last_id, last_kind, last) = all.last().unwrap().clone();
    assert_eq!((last_kind.as_str(), last["status"].as_str()), ("end", Some("completed")), "{all:?}");
    assert!(all[..all.len() - 1].iter().all(|(_, kind, _)| kind == "status"), "{all:?}");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "ids rise: {all:?}");
    assert!(all.len() >= 2, "a running state, then the end: {all:?}");
    assert!(all.iter().any(|(_, _, v)| v["status"] == "processing"), "{all:?}");
    assert!(all.iter().all(|(_, _, v)| v["task_id"] == id.as_str() && v.get("result").is_none()));
    // After the last event the status says the same.
    let status = json_of(&crate::util::call(addr, &get(&format!("/analyze/status/{id}"))));
    assert_eq!(status["status"], "completed");

    // Resumed: only what is newer than the Last-Event-ID.
    assert!(parse(&events(addr, &id, Some(last_id))).is_empty(), "nothing newer: the stream just ends");
    let resumed = parse(&events(addr, &id, Some(all[0].0)));
    assert_eq!(resumed.len(), 1, "only the end: {resumed:?}");
    assert_eq!(resumed[0].1, "end");

    // Unknown and malformed ids.
    for bad in ["0123456789abcdef0123456789abcdef", "nope"] {
        let resp = events(addr, bad, None);
        assert_eq!((resp.status, resp.problem_code().as_str()), (404, "task-not-found"));
    }
}

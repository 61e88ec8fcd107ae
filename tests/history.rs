//! The task history: `GET /tasks`, newest first, a page at a time, from
//! the SQLite store of the real binary.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{spawn_binary, stop};
use crate::util::{call, get, json_of, post, TempDir};

/// Submits `n` small pages; returns their ids.
fn submit(addr: SocketAddr, n: usize) -> Vec<String> {
    crate::util::submit_pipelined(addr, (0..n).map(|i| json!({"html": format!("<title>Page {i}</title>")})))
}

fn list(addr: SocketAddr, query: &str) -> Value {
    let resp = call(addr, &get(&format!("/tasks?{query}")));
    assert_eq!(resp.status, 200, "{}", resp.text());
    json_of(&resp)
}

#[test]
fn the_history_pages_through_250_tasks_without_duplicates_or_gaps() {
    let dir = TempDir::new("history");
    let store = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let (mut server, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--store", &store], &[]);
    let ids = submit(addr, 250);
    let started = Instant::now();
    while list(addr, "state=completed&limit=1000")["tasks"].as_array().unwrap().len() < 250 {
        assert!(started.elapsed() < Duration::from_secs(30), "the tasks never completed");
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = list(addr, &format!("limit=40{cursor}"));
        let tasks = page["tasks"].as_array().unwrap();
        assert!(tasks.iter().all(|t| t.get("result").is_none() && t["status"] == "completed"));
        seen.extend(tasks.iter().map(|t| t["task_id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 250, "no task twice");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), ids.iter().collect::<HashSet<_>>(), "and none missing");
    // Newest first: the last submitted (created no earlier than the rest) leads.
    let created: Vec<String> = list(addr, "limit=1000")["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["created_at"].as_str().unwrap().to_string())
        .collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first");

    let with = list(addr, "limit=2&include=result");
    assert!(with["tasks"][0]["result"]["title"].as_str().unwrap().starts_with("Page "), "{with}");
    assert_eq!(list(addr, "kind=bulk")["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(list(addr, "state=queued&priority=high")["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(list(addr, "since=2099-01-01T00:00:00.000Z")["tasks"].as_array().unwrap().len(), 0);
    assert_eq!(list(addr, "until=2099-01-01T00:00:00.000Z&limit=1000")["tasks"].as_array().unwrap().len(), 250);

    for bad in ["state=finished", "limit=0", "limit=5000", "since=yesterday", "cursor=nope", "colour=red"] {
        let resp = call(addr, &get(&format!("/tasks?{bad}")));
        assert_eq!((resp.status, resp.problem_code().as_str()), (400, "bad-query"), "{bad}: {}", resp.text());
    }
    stop(&mut server);
}

/// Analytics count what the store holds: the buckets' sums are the tasks
/// that ended, by outcome, and the failures' code leads the error list.
#[test]
fn analytics_sums_equal_the_counts() {
    let dir = TempDir::new("analytics");
    let store = format!("sqlite:{}", dir.path().join("tasks.db").display());
    let (mut server, addr) = spawn_binary(
        &["--listen", "127.0.0.1:0", "--store", &store, "--allow-private-fetch", "--fetch-ports", "any"],
        &[],
    );
    let since = pagelens::clock::rfc3339(std::time::SystemTime::now() - Duration::from_secs(60));
    submit(addr, 30);
    // A closed port on loopback: each fetch is refused, the task fails.
    for _ in 0..10 {
        let resp = call(addr, &post("/analyze/async", &json!({"url": "http://127.0.0.1:1/"}), ""));
        assert_eq!(resp.status, 202, "{}", resp.text());
    }
    let started = Instant::now();
    let report = loop {
        let resp = call(addr, &get(&format!("/tasks/analytics?since={since}&bucket=1m")));
        assert_eq!(resp.status, 200, "{}", resp.text());
        let report = json_of(&resp);
        if report["totals"]["completed"].as_u64().unwrap() + report["totals"]["error"].as_u64().unwrap() == 40 {
            break report;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{report}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((report["totals"]["completed"].as_u64(), report["totals"]["error"].as_u64()), (Some(30), Some(10)));
    let buckets = report["buckets"].as_array().unwrap();
    let sum = |key: &str| buckets.iter().map(|b| b[key].as_u64().unwrap()).sum::<u64>();
    assert_eq!((sum("total"), sum("completed"), sum("error")), (40, 30, 10), "{report}");
    assert_eq!(report["errors"][0], json!({"code": "connect-refused", "count": 10}), "{report}");
    assert_eq!(report["bucket_seconds"], 60);
    assert!(report["timings_since_start"]["queue_wait"]["count"].as_u64().unwrap() >= 40, "{report}");
    assert!(report["timings_since_start"]["stages"]["parsing"]["count"].as_u64().unwrap() >= 30, "{report}");
    // The refused fetches were cache misses (nothing to keep).
    assert_eq!(report["cache_since_start"]["misses"], 0, "a failed fetch is not an answer: {report}");
    assert_eq!(report["cache_since_start"]["hit_ratio"], 0.0);
    for bad in ["bucket=0h", "bucket=1w", "since=today", "bucket=1s&since=2000-01-01T00:00:00.000Z", "x=1"] {
        let resp = call(addr, &get(&format!("/tasks/analytics?{bad}")));
        assert_eq!((resp.status, resp.problem_code().as_str()), (400, "bad-query"), "{bad}");
    }
    stop(&mut server);
}

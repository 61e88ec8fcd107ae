//! Accepted work is never lost: the real binary on a SQLite file, killed
//! with SIGKILL or stopped with SIGTERM and started again on the same file;
//! and the errors a bad data folder or file gives at start.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{spawn_binary, stop};
use crate::origin::{response, Action, Origin};
use crate::util::{connect, get, json_of, post, Reader, TempDir};

/// A page that takes the engine a little while.
fn page(n: usize) -> String {
    let words = "lorem <b>ipsum</b> dolor <a href=/x>sit</a> amet ".repeat(400);
    format!("<html><head><title>Page {n}</title></head><body><h1>{n}</h1><p>{words}</p></body></html>")
}

/// The binary on `db` with one reactor and one worker (unless `extra` names more).
fn serve(db: &std::path::Path, extra: &[&str]) -> (Child, SocketAddr) {
    serve_limited(db, extra, &[])
}

fn serve_limited(db: &std::path::Path, extra: &[&str], limits: &[crate::binary::Limit]) -> (Child, SocketAddr) {
    let store = format!("sqlite:{}", db.display());
    let mut args = vec!["--listen", "127.0.0.1:0", "--reactors", "1", "--store", &store];
    if !extra.contains(&"--workers") {
        args.extend(["--workers", "1"]);
    }
    args.extend_from_slice(extra);
    spawn_binary(&args, limits)
}

/// Submits `n` pages on one connection, pipelined 50 at a time; returns
/// the ids that got a `202`.
fn submit_all(addr: SocketAddr, n: usize, extra: Value) -> Vec<String> {
    crate::util::submit_pipelined(
        addr,
        (0..n).map(|i| {
            let mut body = json!({ "html": page(i) });
            for (k, v) in extra.as_object().into_iter().flatten() {
                body[k] = v.clone();
            }
            body
        }),
    )
}

fn stats(addr: SocketAddr) -> Value {
    let mut client = Reader::new(connect(addr));
    client.send(&get("/tasks/stats"));
    json_of(&client.response(false))
}

/// Waits until every id is `completed` with its page's analysis; a status
/// read is a fresh request each time on one connection.
fn expect_all_completed(addr: SocketAddr, ids: &[String]) {
    let mut client = Reader::new(connect(addr));
    let started = Instant::now();
    for (n, id) in ids.iter().enumerate() {
        loop {
            client.send(&get(&format!("/analyze/status/{id}")));
            let resp = client.response(false);
            assert_eq!(resp.status, 200, "task {id}: {}", resp.text());
            let status = json_of(&resp);
            if status["status"] == "completed" {
                assert_eq!(status["result"]["title"], format!("Page {n}"), "task {id}");
                break;
            }
            assert_eq!(status["status"].as_str().map(|s| s == "queued" || s == "processing"), Some(true), "{status}");
            assert!(started.elapsed() < Duration::from_secs(120), "task {id} never completed: {status}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_kill_9_loses_no_accepted_task() {
    let dir = TempDir::new("kill9");
    let db = dir.path().join("data").join("tasks.db");
    let (mut server, addr) = serve(&db, &[]);
    let ids = submit_all(addr, 2000, json!({}));
    // Killed while they run: some done, most still waiting.
    let started = Instant::now();
    loop {
        let tasks = &stats(addr)["tasks"];
        if tasks["completed"]["total"].as_u64() > Some(0) {
            assert!(tasks["queued"]["total"].as_u64() > Some(0), "{tasks}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(10));
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    let (mut again, addr) = serve(&db, &["--workers", "2"]);
    let recovered = stats(addr)["store"]["recovered"].clone();
    let found = recovered["queued"].as_u64().unwrap() + recovered["requeued"].as_u64().unwrap();
    assert!(found > 0 && found < 2000, "{recovered}");
    assert!(recovered["requeued"].as_u64() <= Some(1), "one worker ran at most one task: {recovered}");
    expect_all_completed(addr, &ids);
    // The commit groups that stored them, with their latency (HDR).
    let store = stats(addr)["store"].clone();
    let commits = &store["commits"];
    assert!(store["commit_groups_total"].as_u64() > Some(0), "{store}");
    assert!(commits["count"].as_u64() > Some(0), "{store}");
    assert!(commits["p99_ms"].as_f64() >= commits["p50_ms"].as_f64() && commits["p50_ms"].as_f64() > Some(0.0), "{store}");
    stop(&mut again);
}

#[test]
fn sigterm_keeps_queued_tasks_and_their_callbacks_for_the_next_start() {
    let dir = TempDir::new("sigterm");
    let db = dir.path().join("tasks.db");
    let hooks = Origin::start(|_| Action::Send(response(204, &[], b"")));
    let open = ["--allow-private-fetch", "--fetch-ports", "any"];
    let (mut server, addr) = serve(&db, &open);
    let ids = submit_all(addr, 300, json!({ "callback_url": hooks.url("/hook") }));
    let stderr = stop(&mut server);
    assert!(stderr.contains("stay in the store for the next start"), "{stderr}");

    let (mut again, addr) = serve(&db, &open);
    expect_all_completed(addr, &ids);
    let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let started = Instant::now();
    loop {
        let seen: HashSet<String> = hooks
            .seen()
            .iter()
            .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap()["task_id"].as_str().unwrap().to_string())
            .collect();
        assert!(seen.iter().all(|id| wanted.contains(id.as_str())), "a callback for a task never submitted");
        if seen.len() == wanted.len() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{} of {} callbacks", seen.len(), wanted.len());
        std::thread::sleep(Duration::from_millis(20));
    }
    for hook in hooks.seen() {
        let body: Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(body["status"], "completed", "{body}");
    }
    stop(&mut again);
}

#[test]
fn a_bad_store_is_a_clear_error_at_start() {
    let dir = TempDir::new("bad-store");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "not a folder").unwrap();
    let text = dir.path().join("notes.db");
    std::fs::write(&text, "these are notes, not a database; SQLite reads a 100-byte header first").unwrap();
    let newer = dir.path().join("newer.db");
    drop(pagelens::jobs::SqliteStore::open(&newer, pagelens::jobs::Durability::Process).unwrap());
    rusqlite_user_version(&newer, 7);
    for (store, needle) in [
        (format!("sqlite:{}/sub/tasks.db", file.display()), "cannot create the data folder"),
        (format!("sqlite:{}", text.display()), "not a pagelens database"),
        (format!("sqlite:{}", newer.display()), "schema is version 7, newer than this pagelens knows"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
            .args(["serve", "--listen", "127.0.0.1:0", "--store", &store])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{store}: {stderr}");
        assert!(stderr.contains(needle), "{store}: {stderr}");
    }
    // Nothing was written over the files that were not ours.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "not a folder");
    assert!(std::fs::read_to_string(&text).unwrap().starts_with("these are notes"));
}

fn rusqlite_user_version(path: &std::path::Path, version: i64) {
    let out = Command::new("python3")
        .args([
            "-c",
            &format!(
                "import sqlite3; c = sqlite3.connect({:?}); c.execute('PRAGMA user_version = {version}'); c.commit()",
                path.display().to_string()
            ),
        ])
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A full disk: submissions get `503 store-unavailable` (never a `202` for
/// a task not stored), the server keeps serving, and every task that got a
/// `202` completes once there is room again.
#[test]
fn a_full_disk_refuses_tasks_with_503_and_loses_none_it_accepted() {
    let dir = TempDir::new("full-disk");
    let db = dir.path().join("tasks.db");
    // Files capped at 3 MB (RLIMIT_FSIZE): past it every write fails as on a full disk.
    let (mut server, addr) = serve_limited(&db, &[], &[(libc::RLIMIT_FSIZE, 3 << 20)]);
    let mut client = Reader::new(connect(addr));
    let mut ids = Vec::new();
    let refusal = loop {
        assert!(ids.len() < 5000, "the store never filled");
        client.send(&post("/analyze/async", &json!({ "html": page(ids.len()) }), ""));
        let resp = client.response(false);
        match resp.status {
            202 => ids.push(json_of(&resp)["task_id"].as_str().unwrap().to_string()),
            _ => break resp,
        }
    };
    assert_eq!((refusal.status, refusal.problem_code().as_str()), (503, "store-unavailable"), "{}", refusal.text());
    assert!(refusal.header("retry-after").is_some());
    assert!(ids.len() > 10, "{} tasks before the disk filled", ids.len());
    eprintln!("{} tasks accepted before the disk filled: {}", ids.len(), refusal.text());
    client.send(&get("/livez"));
    assert_eq!(client.response(false).text(), "ok");
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();

    // Room again: everything accepted completes.
    let (mut again, addr) = serve(&db, &[]);
    expect_all_completed(addr, &ids);
    stop(&mut again);
}

/// A batch stopped part way (SIGTERM while it runs) finishes after the
/// restart: the items already stored are not run again, and its results
/// stream from the store with every item exactly once.
#[test]
fn a_batch_interrupted_by_a_restart_finishes_with_each_item_once() {
    let dir = TempDir::new("batch-restart");
    let db = dir.path().join("tasks.db");
    let (mut server, addr) = serve(&db, &["--shutdown-timeout", "50ms"]);
    let items: Vec<Value> = (0..40).map(|n| json!({ "html": page(n) })).collect();
    let resp = crate::util::call(addr, &post("/bulk/analyze/async", &json!({ "items": items }), ""));
    assert_eq!(resp.status, 202, "{}", resp.text());
    let id = json_of(&resp)["task_id"].as_str().unwrap().to_string();
    // Stopped once some items are done, well before all are.
    let started = Instant::now();
    loop {
        let mut client = Reader::new(connect(addr));
        client.send(&get(&format!("/analyze/status/{id}")));
        let status = json_of(&client.response(false));
        if status["items"]["done"].as_u64() > Some(2) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{status}");
        std::thread::sleep(Duration::from_millis(5));
    }
    stop(&mut server);

    let (mut again, addr) = serve(&db, &[]);
    assert_eq!(stats(addr)["store"]["recovered"]["requeued"], 1, "the batch was running when stopped");
    let mut client = Reader::new(connect(addr));
    client.send(&get(&format!("/bulk/{id}/results")));
    let resp = client.response(false);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let mut seen: Vec<u64> = resp
        .text()
        .lines()
        .map(|line| {
            let doc: Value = serde_json::from_str(line).unwrap();
            assert_eq!(doc["status"], "completed", "{doc}");
            doc["index"].as_u64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..40).collect::<Vec<u64>>());
    client.send(&get(&format!("/analyze/status/{id}")));
    let status = json_of(&client.response(false));
    assert_eq!(status["status"], "completed", "{status}");
    assert_eq!(status["items"]["done"], 40);
    stop(&mut again);
}

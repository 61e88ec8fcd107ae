//! API keys through the real binary: keys made with `pagelens keys add`,
//! missing, wrong and out-of-scope keys, tasks seen only by their key (and
//! admins), a daily quota, and a reload on SIGHUP.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::binary::{spawn_binary, stop};
use crate::util::{call, json_of, Resp, TempDir};

/// `pagelens keys add NAME --scopes ...`: the key it printed.
pub fn add_key(file: &Path, name: &str, scopes: &str, extra: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["keys", "add", name, "--scopes", scopes, "--file", file.to_str().unwrap()])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

pub fn ask(addr: SocketAddr, method: &str, path: &str, key: Option<&str>, body: Option<serde_json::Value>) -> Resp {
    let auth = key.map(|k| format!("Authorization: Bearer {k}\r\n")).unwrap_or_default();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let raw = format!(
        "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    call(addr, raw.as_bytes())
}

#[test]
fn keys_guard_every_route_and_tasks_belong_to_their_key() {
    let dir = TempDir::new("api-keys");
    let file = dir.path().join("keys.toml");
    let alice = add_key(&file, "alice", "submit,read", &[]);
    let bob = add_key(&file, "bob", "submit,read", &[]);
    let ops = add_key(&file, "ops", "admin", &[]);
    let watcher = add_key(&file, "watcher", "metrics", &[]);
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(![&alice, &bob, &ops, &watcher].iter().any(|k| text.contains(k.as_str())), "the file holds no key");
    let access = dir.path().join("access.log");
    let (mut server, addr) = spawn_binary(
        &["--listen", "127.0.0.1:0", "--api-keys", file.to_str().unwrap(), "--access-log", access.to_str().unwrap()],
        &[],
    );

    // Probes stay open; the rest needs a key.
    assert_eq!(ask(addr, "GET", "/livez", None, None).status, 200);
    assert_eq!(ask(addr, "GET", "/readyz", None, None).status, 200);
    let missing = ask(addr, "GET", "/tasks", None, None);
    assert_eq!((missing.status, missing.problem_code().as_str()), (401, "unauthorized"));
    assert_eq!(missing.header("www-authenticate"), Some("Bearer realm=\"pagelens\""));
    let wrong = ask(addr, "GET", "/tasks", Some("plk_0000"), None);
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("www-authenticate").unwrap().contains("invalid_token"));
    assert_eq!(ask(addr, "GET", "/nowhere", None, None).status, 401, "no route is revealed without a key");

    // Scopes.
    let scoped = ask(addr, "GET", "/tasks", Some(&watcher), None);
    assert_eq!((scoped.status, scoped.problem_code().as_str()), (403, "forbidden"));
    assert!(scoped.text().contains("read scope"));
    assert_eq!(ask(addr, "GET", "/metrics", Some(&watcher), None).status, 200);
    assert_eq!(ask(addr, "GET", "/metrics", Some(&alice), None).status, 403);

    // A task is its key's: others get 404, an admin sees it.
    let submitted = ask(addr, "POST", "/analyze/async", Some(&alice), Some(json!({"html": "<title>Alice's</title>"})));
    assert_eq!(submitted.status, 202, "{}", submitted.text());
    let id = json_of(&submitted)["task_id"].as_str().unwrap().to_string();
    let status = format!("/analyze/status/{id}");
    let started = Instant::now();
    while json_of(&ask(addr, "GET", &status, Some(&alice), None))["status"] != "completed" {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(json_of(&ask(addr, "GET", &status, Some(&alice), None))["owner"], "alice");
    assert_eq!(ask(addr, "GET", &status, Some(&ops), None).status, 200);
    for (method, path) in
        [("GET", status.clone()), ("GET", format!("{status}/events")), ("DELETE", format!("/tasks/{id}"))]
    {
        let resp = ask(addr, method, &path, Some(&bob), None);
        assert_eq!(resp.status, 404, "{method} {path}: {}", resp.text());
    }
    let listed = |key: &str| json_of(&ask(addr, "GET", "/tasks", Some(key), None))["tasks"].as_array().unwrap().len();
    assert_eq!((listed(&alice), listed(&bob), listed(&ops)), (1, 0, 1));

    // Idempotency keys are per API key: the same one from bob is a new task.
    let key = |k: &str, body: &str| {
        let raw = format!(
            "POST /analyze/async HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {k}\r\nIdempotency-Key: same\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        call(addr, raw.as_bytes())
    };
    let (a, b) = (key(&alice, "{\"html\": \"<p>a</p>\"}"), key(&bob, "{\"html\": \"<p>b</p>\"}"));
    assert_eq!((a.status, b.status), (202, 202), "{} {}", a.text(), b.text());
    assert_ne!(json_of(&a)["task_id"], json_of(&b)["task_id"]);

    // The key's name (never the key) is in the access log and the request metrics.
    let started = Instant::now();
    loop {
        let log = std::fs::read_to_string(&access).unwrap_or_default();
        let metrics = ask(addr, "GET", "/metrics", Some(&watcher), None).text();
        if log.contains(" key=alice") && metrics.contains("key=\"alice\"") {
            assert!(!log.contains(&alice) && !metrics.contains(&alice));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{log}\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // `keys list` names the keys and their scopes, never the keys.
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["keys", "list", "--file", file.to_str().unwrap()])
        .output()
        .unwrap();
    let listing = String::from_utf8(out.stdout).unwrap();
    assert!(listing.contains("alice: submit,read") && listing.contains("ops: admin"), "{listing}");
    assert!(!listing.contains(&alice));

    // A key added to the file works after SIGHUP; until then it is unknown.
    let late = add_key(&file, "late", "read", &["--daily-quota", "3"]);
    assert_eq!(ask(addr, "GET", "/tasks", Some(&late), None).status, 401);
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.id() as i32, libc::SIGHUP) };
    let started = Instant::now();
    let mut used = 0;
    loop {
        let resp = ask(addr, "GET", "/tasks", Some(&late), None);
        if resp.status == 200 {
            used += 1;
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the new key never worked");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its daily quota of 3: then 429 quota-exceeded until midnight UTC.
    while used < 3 {
        assert_eq!(ask(addr, "GET", "/tasks", Some(&late), None).status, 200);
        used += 1;
    }
    let over = ask(addr, "GET", "/tasks", Some(&late), None);
    assert_eq!((over.status, over.problem_code().as_str()), (429, "quota-exceeded"));
    assert!(over.header("retry-after").unwrap().parse::<u64>().unwrap() <= 86_400);
    let log = stop(&mut server);
    assert!(log.contains("API keys reloaded (5 keys)"), "{log}");
}

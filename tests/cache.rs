//! The result cache through the real binary, against a local origin that
//! counts requests and honours validators: a repeat is answered without a
//! fetch, a stale analysis is revalidated (`304`, no parse), and the
//! client's and the origin's `Cache-Control` are obeyed.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::binary::{spawn_binary, stop};
use crate::origin::{response, Action, Origin};
use crate::util::{call, json_of, Resp, TempDir};

const PAGE: &[u8] =
    b"<html lang=en><head><title>Cached page of the origin</title></head><body><h1>x</h1></body></html>";

fn analyze(addr: SocketAddr, url: &str, cache_control: Option<&str>) -> (Resp, Value) {
    let body = json!({ "url": url }).to_string();
    let extra = cache_control.map(|c| format!("Cache-Control: {c}\r\n")).unwrap_or_default();
    let raw = format!(
        "POST /analyze HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let resp = call(addr, raw.as_bytes());
    assert_eq!(resp.status, 200, "{}", resp.text());
    let doc = json_of(&resp);
    (resp, doc)
}

#[test]
fn repeats_are_answered_from_the_cache_and_stale_ones_revalidated() {
    // `/page` has an ETag and honours If-None-Match; `/private` says no-store.
    let origin = Origin::start(|seen| {
        let etag = "\"v1\"";
        if seen.path == "/private" {
            return Action::Send(response(200, &[("Content-Type", "text/html"), ("Cache-Control", "no-store")], PAGE));
        }
        if seen.headers.iter().any(|(n, v)| n == "if-none-match" && v == etag) {
            return Action::Send(response(304, &[("ETag", etag)], b""));
        }
        Action::Send(response(200, &[("Content-Type", "text/html"), ("ETag", etag)], PAGE))
    });
    let (mut server, addr) = spawn_binary(
        &["--listen", "127.0.0.1:0", "--cache-ttl", "2s", "--allow-private-fetch", "--fetch-ports", "any"],
        &[],
    );
    let page = origin.url("/page");
    let fetches = |path: &str| origin.seen().iter().filter(|s| s.path == path).count();

    let (_, first) = analyze(addr, &page, None);
    assert_eq!((first["cache"].as_str(), fetches("/page")), (Some("miss"), 1));
    let (resp, hit) = analyze(addr, &format!("{page}#fragment"), None);
    assert_eq!((hit["cache"].as_str(), fetches("/page")), (Some("hit"), 1), "no fetch for a repeat");
    assert!(resp.header("age").is_some(), "an Age header");
    assert_eq!(hit["title"], first["title"]);

    // The client's no-cache: revalidated with the origin, which says 304.
    let (_, revalidated) = analyze(addr, &page, Some("no-cache"));
    assert_eq!(revalidated["cache"], "revalidated");
    let last = origin.seen().into_iter().rfind(|s| s.path == "/page").unwrap();
    assert!(last.headers.iter().any(|(n, v)| n == "if-none-match" && v == "\"v1\""), "{:?}", last.headers);
    // no-store: the cache is neither read nor filled.
    let (_, skipped) = analyze(addr, &page, Some("no-store"));
    assert_eq!((skipped.get("cache"), fetches("/page")), (None, 3));
    // max-age=0: nothing stored is young enough.
    assert_eq!(analyze(addr, &page, Some("max-age=0")).1["cache"], "revalidated");

    // Past the TTL (2 s), the next analysis revalidates.
    let started = Instant::now();
    loop {
        let (_, doc) = analyze(addr, &page, None);
        if doc["cache"] == "revalidated" {
            break;
        }
        assert_eq!(doc["cache"], "hit");
        assert!(started.elapsed() < Duration::from_secs(10), "never went stale");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The origin's no-store keeps a page out of the cache.
    let private = origin.url("/private");
    assert_eq!(analyze(addr, &private, None).1["cache"], "miss");
    assert_eq!(analyze(addr, &private, None).1["cache"], "miss");
    assert_eq!(fetches("/private"), 2);

    let metrics = |name: &str| {
        let text = call(addr, b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").text();
        text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let started = Instant::now();
    while metrics("pagelens_cache_answers_total{outcome=\"hit\"}").unwrap_or(0.0) < 1.0 {
        assert!(started.elapsed() < Duration::from_secs(5), "the cache's figures never showed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(metrics("pagelens_cache_bytes").unwrap() > 0.0);
    stop(&mut server);
}

#[test]
fn a_sqlite_store_keeps_the_cache_across_restarts_within_its_byte_bound() {
    let origin = Origin::start(|_| Action::Send(response(200, &[("Content-Type", "text/html")], PAGE)));
    let dir = TempDir::new("cache-store");
    let db = dir.path().join("pagelens.db");
    let store = format!("sqlite:{}", db.display());
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--store",
        &store,
        "--cache-max-bytes",
        "24KiB",
        "--allow-private-fetch",
        "--fetch-ports",
        "any",
    ];
    let fetches = |path: &str| origin.seen().iter().filter(|s| s.path == path).count();
    let pages: Vec<String> = (0..12).map(|i| origin.url(&format!("/page/{i}"))).collect();

    let (mut server, addr) = spawn_binary(&args, &[]);
    for page in &pages {
        assert_eq!(analyze(addr, page, None).1["cache"], "miss");
    }
    stop(&mut server);

    // The store holds the newest within the bound, and the oldest no more.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT key, bytes FROM cache ORDER BY fresh_at")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    drop(conn);
    let total: i64 = rows.iter().map(|r| r.1).sum();
    assert!(total <= 24 * 1024, "{total} bytes stored");
    assert!(rows.len() > 1 && rows.len() < pages.len(), "{} of {} kept: {rows:?}", rows.len(), pages.len());
    assert!(rows.last().unwrap().0.starts_with(pages.last().unwrap().as_str()), "{rows:?}");

    // Restarted: what the store kept is a hit without a fetch, the rest a miss.
    let (mut server, addr) = spawn_binary(&args, &[]);
    let newest = pages.last().unwrap();
    let (resp, again) = analyze(addr, newest, None);
    assert_eq!((again["cache"].as_str(), fetches("/page/11")), (Some("hit"), 1), "no fetch after a restart");
    assert!(resp.header("age").is_some());
    assert_eq!(analyze(addr, &pages[0], None).1["cache"], "miss");
    assert_eq!(fetches("/page/0"), 2);
    stop(&mut server);
}

//! The API description at `/openapi.json` is kept true: every route is in
//! it (and nothing else), every reference resolves, and schemathesis finds
//! the running server answering as it says.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use pagelens::api::work::Pages;
use pagelens::api::App;
use pagelens::fetch::FetchConfig;
use serde_json::Value;

use crate::binary::{spawn_binary, stop};
use crate::util::{api_config, call, config, engine_config, fetcher, get, json_of, start, start_engine, TempDir};

fn document(addr: std::net::SocketAddr) -> Value {
    let resp = call(addr, &get("/openapi.json"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), Some("application/json"));
    json_of(&resp)
}

#[test]
fn every_route_is_described_and_nothing_else() {
    let server = start(config());
    let doc = document(server.local_addr());
    assert_eq!(doc["openapi"], "3.1.0");
    let described: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| ops.as_object().unwrap().keys().map(move |m| (m.to_uppercase(), path.clone())))
        .collect();
    let pages = Pages::new(fetcher(FetchConfig::default()));
    let engine = start_engine(engine_config(), &pages, &api_config());
    let app = App::new(Arc::clone(&engine), pages, api_config()).unwrap();
    let routed: BTreeSet<(String, String)> =
        app.routes().into_iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(described, routed, "the description and the router differ");
    for (method, path) in &described {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op["operationId"].is_string() && op["summary"].is_string(), "{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        // A WebSocket's success is its 101.
        let success = |s: &String| s.starts_with('2') || s == "101";
        assert!(responses.keys().any(success), "{method} {path} has no success answer");
    }
    // Every $ref points at something.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(refs.len() > 20);
    for r in refs {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external ref {r}"));
        assert!(doc.pointer(pointer).is_some(), "dangling $ref {r}");
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// Where `.ci/install-test-tools` put schemathesis.
fn schemathesis() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| manifest.join("target"), PathBuf::from);
    let target = if target.is_relative() { manifest.join(target) } else { target };
    let bin = target.join("test-tools/venv/bin/schemathesis");
    assert!(bin.exists(), "{} is missing: run .ci/install-test-tools (the README's test command does)", bin.display());
    bin
}

/// Schemathesis generates requests from the description (examples,
/// boundaries, fuzzing, and chains through the links) and checks every
/// answer against it: statuses, content types, headers, bodies, 405s and
/// their `Allow`, and that invalid input is refused. Generated URLs are
/// rewritten to a loopback address by `tests/data/schemathesis_hooks.py`,
/// so nothing leaves the machine.
#[test]
fn schemathesis_finds_the_server_true_to_its_description() {
    let bin = schemathesis();
    let (mut server, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1", "--sync-wait", "2s"], &[]);
    let dir = TempDir::new("schemathesis");
    let hooks = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let out = Command::new(bin)
        .current_dir(dir.path())
        .env("PYTHONPATH", &hooks)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_hooks")
        .args(["run", &format!("http://{addr}/openapi.json"), "--checks", "all"])
        .args(["--exclude-checks", "positive_data_acceptance,ignored_auth,use_after_free,ensure_resource_availability"])
        .args(["--phases", "examples,coverage,fuzzing,stateful", "--max-examples", "50", "--seed", "1"])
        // An endless event stream: its head is checked by the metrics tests.
        .args(["--exclude-path", "/performance/real-time"])
        .args(["--request-timeout", "20", "--generation-database", "none", "--no-color"])
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
    stop(&mut server);
}

//! `pagelens loadtest` against servers started here on loopback, in short
//! bounded runs: exact counts, a known mix of answers and failures,
//! coordinated-omission correction, adaptive back-off, ramps, URL weights,
//! the task flow against pagelens, report files, and bad input.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::origin::{ok, response, Action, Origin};
use crate::util::{config, start};
use pagelens::loadtest::plan::{Plan, RequestOptions, Target};
use pagelens::loadtest::{self, LoadConfig};

fn settings(url: &str) -> LoadConfig {
    let target = Target::parse(url).unwrap();
    let options = RequestOptions { method: "GET".into(), ..RequestOptions::default() };
    LoadConfig {
        extra_roots: Vec::new(),
        tls_resume: false,
        plan: Plan::single(target, &options).unwrap(),
        threads: 1,
        connections: 4,
        duration: Duration::from_secs(1),
        requests: None,
        rate: None,
        adaptive: false,
        pipeline: 1,
        timeout: Duration::from_secs(5),
        warmup: Duration::ZERO,
        ramp: Duration::ZERO,
        progress: false,
        stop: Default::default(),
    }
}

/// Runs the binary; returns its exit code, stdout and stderr.
fn cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens")).arg("loadtest").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str, contents: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("pagelens-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn n_requests_are_exactly_n_across_threads_and_pipelining() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let url = format!("http://{}/livez", server.local_addr());
    for (threads, connections, pipeline) in [(1, 1, 1), (2, 8, 1), (2, 4, 8)] {
        let report =
            loadtest::run(&LoadConfig { requests: Some(777), threads, connections, pipeline, ..settings(&url) })
                .unwrap();
        let s = &report.stats;
        assert_eq!((s.requests, s.errors.total()), (777, 0), "t{threads} c{connections} p{pipeline}: {:?}", s.errors);
        assert_eq!(s.statuses.get(&200), Some(&777));
        assert_eq!(s.corrected.len(), 777);
    }
}

#[test]
fn statuses_and_errors_match_what_the_server_did() {
    let _turn = crate::one_at_a_time();
    // Every fifth request is dropped without an answer, every fifth answered 404, the rest 200.
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    let origin = Origin::start(move |_| match counter.fetch_add(1, Ordering::SeqCst) % 5 {
        0 => Action::Close,
        1 => Action::Send(response(404, &[], b"no")),
        _ => ok("text/plain", b"yes"),
    });
    let report = loadtest::run(&LoadConfig { requests: Some(500), ..settings(&origin.url("/")) }).unwrap();
    let s = &report.stats;
    let seen = origin.seen().len();
    assert_eq!(seen, 500, "each request sent once");
    assert_eq!(s.requests + s.errors.total(), 500);
    assert_eq!(s.errors.reset, 100, "{:?}", s.errors);
    assert_eq!(s.statuses.get(&404), Some(&100));
    assert_eq!(s.statuses.get(&200), Some(&300));
    assert!(
        report.recommendations().iter().any(|r| r.contains("20.0% of requests failed")),
        "{:?}",
        report.recommendations()
    );
}

#[test]
fn one_stall_shows_in_the_corrected_tail_not_only_in_the_max() {
    let _turn = crate::one_at_a_time();
    // At 200 requests/s on one connection, the 100th request stalls 500 ms.
    let n = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&n);
    let origin = Origin::start(move |_| match counter.fetch_add(1, Ordering::SeqCst) {
        100 => Action::SendAfter(Duration::from_millis(500), response(200, &[], b"late")),
        _ => ok("text/plain", b"ok"),
    });
    let report = loadtest::run(&LoadConfig {
        connections: 1,
        rate: Some(200.0),
        duration: Duration::from_secs(2),
        ..settings(&origin.url("/"))
    })
    .unwrap();
    let s = &report.stats;
    let ms = |v: u64| v as f64 / 1000.0;
    // About 100 requests were due during the stall and waited for it.
    assert!(
        ms(s.corrected.value_at_quantile(0.99)) > 350.0,
        "corrected p99 {}",
        ms(s.corrected.value_at_quantile(0.99))
    );
    assert!(ms(s.corrected.value_at_quantile(0.95)) > 100.0);
    // Measured from the actual send, only the stalled request is slow: the tail hides it...
    assert!(
        ms(s.uncorrected.value_at_quantile(0.99)) < 100.0,
        "uncorrected p99 {}",
        ms(s.uncorrected.value_at_quantile(0.99))
    );
    // ...but the stall itself is still there.
    assert!(ms(s.uncorrected.max()) >= 480.0);
    assert!(s.requests >= 390, "{} of ~400 scheduled", s.requests);
}

#[test]
fn the_adaptive_rate_backs_off_on_429() {
    let _turn = crate::one_at_a_time();
    let origin = Origin::start(|_| Action::Send(response(429, &[], b"slow down")));
    let fixed = loadtest::run(&LoadConfig { rate: Some(400.0), ..settings(&origin.url("/")) }).unwrap();
    let adaptive =
        loadtest::run(&LoadConfig { rate: Some(400.0), adaptive: true, ..settings(&origin.url("/")) }).unwrap();
    assert!(fixed.stats.scheduled >= 390, "fixed rate: {}", fixed.stats.scheduled);
    assert!(adaptive.stats.scheduled < 150, "adaptive rate kept sending: {}", adaptive.stats.scheduled);
    assert!(adaptive.recommendations().iter().any(|r| r.contains("429/503")));
}

#[test]
fn the_ramp_rises_linearly_before_measuring() {
    let _turn = crate::one_at_a_time();
    let origin = Origin::start(|_| ok("text/plain", b"ok"));
    let started = Instant::now();
    loadtest::run(&LoadConfig {
        rate: Some(400.0),
        ramp: Duration::from_secs(2),
        duration: Duration::from_millis(500),
        ..settings(&origin.url("/"))
    })
    .unwrap();
    let seen = origin.seen();
    let in_window = |from: u64, to: u64| {
        seen.iter()
            .filter(|s| (Duration::from_millis(from)..Duration::from_millis(to)).contains(&(s.at - started)))
            .count()
    };
    let (first, second) = (in_window(0, 1000), in_window(1000, 2000));
    // 0 -> 400/s over 2 s: about 100 requests in the first second, 300 in the second.
    assert!(first < second / 2, "first second {first}, second {second}");
    assert!((60..=140).contains(&first), "{first}");
}

#[test]
fn url_weights_shape_the_mix() {
    let _turn = crate::one_at_a_time();
    let origin = Origin::start(|_| ok("text/plain", b"ok"));
    let file = temp("urls.txt", &format!("# weights\n/heavy 3\n{} 1\n", origin.url("/light")));
    let target = Target::parse(&origin.url("/")).unwrap();
    let plan = Plan::urls(target, &file, &RequestOptions { method: "GET".into(), ..Default::default() }).unwrap();
    let report = loadtest::run(&LoadConfig { plan, requests: Some(800), ..settings(&origin.url("/")) }).unwrap();
    let heavy = origin.seen().iter().filter(|s| s.path == "/heavy").count();
    assert_eq!(report.stats.requests, 800);
    assert!((520..=680).contains(&heavy), "/heavy {heavy} of 800 at weight 3:1");
}

#[test]
fn the_task_flow_scenario_runs_against_pagelens() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let page = temp("page.json", r#"{"html": "<html><head><title>Load</title></head><body><h1>x</h1></body></html>"}"#);
    let scenario = temp(
        "flow.toml",
        &format!(
            r#"
[[request]]
name = "livez"
path = "/livez"
weight = 1

[[task]]
name = "analyze-async"
method = "POST"
path = "/analyze/async"
headers = {{ "Content-Type" = "application/json" }}
body_file = "{}"
poll_interval = "20ms"
weight = 1
"#,
            page.file_name().unwrap().to_str().unwrap()
        ),
    );
    let json = temp("flow-report.json", "");
    let url = format!("http://{}/", server.local_addr());
    let (code, out, err) = cli(&[
        &url,
        "--scenario",
        scenario.to_str().unwrap(),
        "-c",
        "4",
        "-t",
        "1",
        "-d",
        "2s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Tasks: completed "), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let completed = report["tasks"]["outcomes"]["completed"].as_u64().unwrap();
    assert!(completed > 5, "{report}");
    assert_eq!(report["tasks"]["outcomes"].as_object().unwrap().len(), 1, "only completed: {}", report["tasks"]);
    assert!(report["tasks"]["latency"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(report["by_name"]["analyze-async"].as_u64().unwrap() >= completed, "submissions are counted");
    assert!(report["by_name"]["livez"].as_u64().unwrap() > 0);
    // Polls are the tool's own: counted apart, never in the request figures.
    let polls = report["polls"]["count"].as_u64().unwrap();
    assert!(polls >= completed, "{}", report["polls"]);
    assert_eq!(report["polls"]["status"]["200"].as_u64(), Some(polls));
    let submitted_and_livez =
        report["by_name"]["analyze-async"].as_u64().unwrap() + report["by_name"]["livez"].as_u64().unwrap();
    assert_eq!(report["requests"].as_u64(), Some(submitted_and_livez));
    assert!(out.contains("Polls (the tool's own"), "{out}");
    assert!(out.contains("    200 OK"), "a status table: {out}");
}

/// Open loop with one connection: a flow waiting to poll (every 50 ms)
/// must not hold back the submissions the schedule sends (100/s), and the
/// polls do not count toward the rate.
#[test]
fn polls_never_delay_scheduled_submissions() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let page = temp("page.json", r#"{"html": "<title>x</title>"}"#);
    let scenario = temp(
        "poll-flow.toml",
        &format!(
            "[[task]]\nname = \"a\"\nmethod = \"POST\"\npath = \"/analyze/async\"\nheaders = {{ \"Content-Type\" = \"application/json\" }}\nbody_file = \"{}\"\npoll_interval = \"50ms\"\n",
            page.file_name().unwrap().to_str().unwrap()
        ),
    );
    let json = temp("poll-flow.json", "");
    let url = format!("http://{}/", server.local_addr());
    let (code, out, err) = cli(&[
        &url,
        "--scenario",
        scenario.to_str().unwrap(),
        "-c",
        "1",
        "-t",
        "1",
        "--rate",
        "100",
        "-d",
        "2s",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Were a poll to hold the connection, a flow (50 ms or more) would cap it near 20/s.
    let rate = report["requests_per_s"].as_f64().unwrap();
    assert!((80.0..=110.0).contains(&rate), "submissions at {rate}/s of 100: {out}");
    assert!(report["polls"]["count"].as_u64().unwrap() > 0, "{out}");
    assert!(out.contains("corrected") && out.contains("uncorrected"), "open loop shows both: {out}");
}

#[test]
fn json_and_hgrm_files_are_well_formed() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let url = format!("http://{}/livez", server.local_addr());
    let (json, hgrm) = (temp("r.json", ""), temp("r.hgrm", ""));
    let (code, out, err) = cli(&[
        &url,
        "-n",
        "300",
        "-c",
        "3",
        "-t",
        "1",
        "--json",
        json.to_str().unwrap(),
        "--hgrm",
        hgrm.to_str().unwrap(),
        "--latency",
    ]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("Detailed percentile spectrum") && out.contains("Requests/sec:"), "{out}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["requests"], 300);
    assert_eq!(report["status"]["200"], 300);
    assert_eq!(report["errors"]["total"], 0);
    assert!(report["latency"]["corrected"]["p99_ms"].as_f64().unwrap() > 0.0);
    let series = report["timeseries"].as_array().unwrap();
    assert_eq!(series.iter().map(|s| s["requests"].as_u64().unwrap()).sum::<u64>(), 300);
    let text = std::fs::read_to_string(&hgrm).unwrap();
    let rows: Vec<Vec<f64>> = text
        .lines()
        .skip(2)
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split_whitespace().map(|x| x.parse::<f64>().unwrap()).collect())
        .collect();
    assert!(rows.iter().all(|r| r.len() == 4 || r.len() == 3), "{text}");
    assert_eq!(rows.last().unwrap()[2], 300.0);
    assert!(text.contains("#[Max     ="));
}

#[test]
fn bad_targets_and_bad_input_give_clear_messages_and_exit_codes() {
    let _turn = crate::one_at_a_time();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (code, _, err) = cli(&[&format!("http://{closed}/"), "-d", "1s", "-c", "2", "-t", "1"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("unreachable"), "{err}");

    // Slower than --timeout: counted as timeouts, exit 3.
    let slow = Origin::start(|_| Action::SendAfter(Duration::from_millis(600), response(200, &[], b"late")));
    let (code, out, _) = cli(&[&slow.url("/"), "-d", "1s", "-c", "2", "-t", "1", "--timeout", "200ms"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("timeout ") && !out.contains("timeout 0,"), "{out}");

    // Every response an error status: a finding and exit 3.
    let server = start(config());
    let (code, out, _) =
        cli(&[&format!("http://{}/no/such/page", server.local_addr()), "-n", "20", "-c", "2", "-t", "1"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("every response was an error status (404)"), "{out}");
    // With every step of --find-max passing, no knee is claimed.
    let (code, out, err) = cli(&[
        &format!("http://{}/livez", server.local_addr()),
        "--find-max",
        "--slo-p99",
        "1s",
        "--rate",
        "50",
        "--max-steps",
        "2",
        "-d",
        "300ms",
        "-c",
        "2",
        "-t",
        "1",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("no knee found within 2 steps"), "{out}");

    // Malformed answers are parse errors; closing mid-response is a reset.
    let junk = Origin::start(|s| match s.path.as_str() {
        "/junk" => Action::Send(b"SSH-2.0-nope\r\n\r\n".to_vec()),
        _ => Action::Trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort".to_vec(), Duration::ZERO),
    });
    let report =
        loadtest::run(&LoadConfig { requests: Some(20), connections: 1, ..settings(&junk.url("/junk")) }).unwrap();
    assert_eq!(report.stats.errors.parse, 20);
    let report =
        loadtest::run(&LoadConfig { requests: Some(20), connections: 1, ..settings(&junk.url("/cut")) }).unwrap();
    assert_eq!(report.stats.errors.reset, 20);

    // A rate the server cannot serve: said so, with the achieved rate.
    let slow = Origin::start(|_| Action::SendAfter(Duration::from_millis(20), response(200, &[], b"ok")));
    let report = loadtest::run(&LoadConfig { rate: Some(500.0), connections: 1, ..settings(&slow.url("/")) }).unwrap();
    let said = report.recommendations().join("\n");
    assert!(said.contains("of 500 req/s") && said.contains("saturated"), "{said}");

    // Bad flags and files.
    let server = start(config());
    let url = format!("http://{}/livez", server.local_addr());
    let (code, _, err) = cli(&[&url, "-c", "0"]);
    assert_eq!((code, err.contains("-c must be at least 1")), (1, true), "{err}");
    let (code, _, err) = cli(&[&url, "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = cli(&["ftp://127.0.0.1/"]);
    assert_eq!((code, err.contains("ftp")), (1, true), "{err}");
    let broken = temp("broken.toml", "[[request]]\nname = \"x\"\npath = ");
    let (code, _, err) = cli(&[&url, "--scenario", broken.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("broken.toml"), "{err}");
    let zero = temp("zero.toml", "[[request]]\nname = \"x\"\npath = \"/\"\nweight = 0\n");
    let (code, _, err) = cli(&[&url, "--scenario", zero.to_str().unwrap()]);
    assert_eq!((code, err.contains("weight must be at least 1")), (1, true), "{err}");
    let unknown = temp("unknown.toml", "[[request]]\nname = \"x\"\npath = \"/\"\nbogus = 1\n");
    let (code, _, err) = cli(&[&url, "--scenario", unknown.to_str().unwrap()]);
    assert_eq!((code, err.contains("bogus")), (1, true), "{err}");
    let (code, _, err) = cli(&[&url, "--body", "/no/such/body"]);
    assert_eq!((code, err.contains("/no/such/body")), (1, true), "{err}");
}

#[test]
fn find_max_reports_the_knee_of_a_server_with_known_capacity() {
    let _turn = crate::one_at_a_time();
    // One connection to an origin taking 10 ms a request: at most ~100 requests/s.
    let origin = Origin::start(|_| Action::SendAfter(Duration::from_millis(10), response(200, &[], b"ok")));
    let config = LoadConfig {
        connections: 1,
        rate: Some(40.0),
        duration: Duration::from_millis(1500),
        ..settings(&origin.url("/"))
    };
    let (steps, knee) = loadtest::find_max(&config, Duration::from_millis(50), 8).unwrap();
    let knee = knee.expect("40/s passes");
    assert!(
        (40.0..=110.0).contains(&knee),
        "knee {knee}; steps {:?}",
        steps.iter().map(|s| (s.rate, s.pass)).collect::<Vec<_>>()
    );
    assert!(steps.iter().any(|s| !s.pass), "it went past the knee");
}

#[test]
fn the_shipped_scenarios_run_against_pagelens() {
    let _turn = crate::one_at_a_time();
    let mut c = config();
    c.limits.max_body_bytes = 1024 * 1024;
    let server = start(c);
    let url = format!("http://{}/", server.local_addr());
    for name in ["pagelens-mix.toml", "task-flow.toml"] {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("loadtest/scenarios").join(name);
        let plan = Plan::scenario(Target::parse(&url).unwrap(), &file, false).unwrap();
        let report =
            loadtest::run(&LoadConfig { plan, duration: Duration::from_millis(1500), ..settings(&url) }).unwrap();
        let s = &report.stats;
        assert_eq!(s.errors.total(), 0, "{name}: {:?}", s.errors);
        assert!(s.statuses.keys().all(|k| (200..300).contains(k)), "{name}: {:?}", s.statuses);
        assert!(s.tasks.outcomes.get("completed").is_some_and(|n| *n > 0), "{name}: {:?}", s.tasks.outcomes);
    }
}

#[test]
fn sigint_ends_the_run_early_with_a_report_of_what_was_measured() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let url = format!("http://{}/livez", server.local_addr());
    let child = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["loadtest", &url, "-d", "60s", "-c", "2", "-t", "1"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: kill sends a signal to the child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "it stopped promptly");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let seconds: f64 = text.split(" requests in ").nth(1).unwrap().split('s').next().unwrap().parse().unwrap();
    assert!((1.0..5.0).contains(&seconds), "measured for the time it ran: {text}");
}

fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn an_unreachable_rate_is_said_so_and_costs_no_memory() {
    let _turn = crate::one_at_a_time();
    let server = start(config());
    let url = format!("http://{}/livez", server.local_addr());
    let before = resident_kib();
    let report = loadtest::run(&LoadConfig { rate: Some(10_000_000.0), connections: 2, ..settings(&url) }).unwrap();
    let grown = resident_kib().saturating_sub(before);
    let s = &report.stats;
    // Ten million were due in the second; far fewer could be sent, and nothing was queued for them.
    assert!(s.scheduled > 5_000_000, "scheduled {}", s.scheduled);
    assert!(s.requests < s.scheduled / 10, "{} of {}", s.requests, s.scheduled);
    assert!(grown < 50 * 1024, "memory grew by {grown} KiB");
    // The harness measures its own threads' CPU time: what tells a busy harness from a slow server.
    assert!(s.cpu > Duration::ZERO && s.cpu <= report.elapsed * report.threads as u32 + Duration::from_millis(500));
    let said = report.recommendations().join("\n");
    // Which of the two it was depends on how busy this machine left the harness; the report says which.
    let expected = if report.harness_bound() {
        "could not reach 10000000 req/s (achieved"
    } else {
        "of 10000000 req/s: the server is saturated"
    };
    assert!(said.contains(expected), "{said}");
}

#[test]
fn large_bodies_are_counted_not_held() {
    let _turn = crate::one_at_a_time();
    let body = Arc::new(vec![b'x'; 20 << 20]);
    let origin = Origin::start(move |_| ok("application/octet-stream", &body));
    let report =
        loadtest::run(&LoadConfig { requests: Some(3), connections: 1, ..settings(&origin.url("/")) }).unwrap();
    let s = &report.stats;
    assert_eq!((s.requests, s.errors.total()), (3, 0));
    assert!(s.bytes > 3 * (20 << 20), "every byte counted: {}", s.bytes);
    // The binary's peak resident memory while it reads 5 x 20 MiB, against
    // the same run on a 1 KiB body: no body is held.
    let small = Origin::start(|_| ok("application/octet-stream", &[b'x'; 1024]));
    let baseline = peak_resident_kib(&small.url("/"));
    let peak = peak_resident_kib(&origin.url("/"));
    assert!(peak < baseline + 4 * 1024, "peak resident memory {peak} KiB, {baseline} KiB on a small body");
}

/// The peak resident memory (KiB) of `pagelens loadtest` reading `url` 5
/// times: the kernel's own count for that child (`wait4`'s `ru_maxrss`),
/// not a sample that a short run can slip between.
fn peak_resident_kib(url: &str) -> u64 {
    // Reaped by the wait4 below, which std's wait does not offer.
    #[allow(clippy::zombie_processes)]
    let child = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .args(["loadtest", url, "-n", "5", "-c", "1", "-t", "1"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 only writes
    // to the two out-parameters, which live through the call.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "the child was waited for");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "pagelens loadtest failed: {status}");
    // Linux counts ru_maxrss in KiB.
    usage.ru_maxrss as u64
}

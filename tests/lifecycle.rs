//! Connection limits, descriptor exhaustion, graceful shutdown, and the
//! binary's command line.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::binary::{spawn_binary, stop, terminate, wait_exit};
use crate::util::{config, connect, get, request, start, Reader};

#[test]
fn past_max_connections_new_ones_get_503_and_close() {
    let mut cfg = config();
    cfg.max_connections = 5;
    let server = start(cfg);
    let addr = server.local_addr();
    let mut open: Vec<Reader> = (0..5).map(|_| Reader::new(connect(addr))).collect();
    for client in &mut open {
        client.send(&get("/livez"));
        assert_eq!(client.response(false).status, 200);
    }
    let mut extra = Reader::new(connect(addr));
    let resp = extra.response(false);
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    extra.expect_closed();
    assert!(server.state().connections_refused() >= 1);

    // Once one closes, there is room again.
    drop(open.pop());
    let started = Instant::now();
    loop {
        let resp = request(addr, &get("/livez"));
        if resp.status == 200 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "slot never freed");
        sleep(Duration::from_millis(20));
    }
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests_and_closes_idle_ones() {
    let server = start(config());
    let addr = server.local_addr();
    let mut idle = Reader::new(connect(addr));
    idle.send(&get("/livez"));
    assert_eq!(idle.response(false).status, 200);
    let mut busy = Reader::new(connect(addr));
    busy.send(&get("/delay/500"));
    sleep(Duration::from_millis(100));

    let started = Instant::now();
    server.shutdown();
    idle.expect_closed();
    let resp = busy.response(false);
    assert_eq!((resp.status, resp.text().as_str()), (200, "slept 500"));
    assert_eq!(resp.header("connection"), Some("close"));
    busy.expect_closed();
    assert!(TcpStream::connect(addr).is_err(), "new connections are refused while draining");
    server.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
}

#[test]
fn shutdown_gives_up_on_stuck_requests_at_the_deadline() {
    let mut cfg = config();
    cfg.shutdown_timeout = Duration::from_millis(300);
    let server = start(cfg);
    let mut busy = Reader::new(connect(server.local_addr()));
    busy.send(&get("/delay/3000"));
    sleep(Duration::from_millis(50));
    let started = Instant::now();
    server.shutdown();
    server.join().unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(2), "{took:?}");
    busy.expect_closed();
}

#[test]
fn sigterm_drains_a_request_in_flight_and_exits_zero() {
    let (mut child, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "2"], &[]);
    let mut idle = Reader::new(connect(addr));
    idle.send(&get("/livez"));
    assert_eq!(idle.response(false).status, 200);
    // Half a request is in flight when the signal comes.
    let mut in_flight = Reader::new(connect(addr));
    in_flight.send(b"GET /readyz HTTP/1.1\r\nHo");
    sleep(Duration::from_millis(100));

    terminate(&child);
    idle.expect_closed();
    in_flight.send(b"st: t\r\n\r\n");
    let resp = in_flight.response(false);
    // Ready no more: the server is draining, and says so while finishing.
    assert_eq!((resp.status, resp.text().as_str()), (503, "draining"));
    assert_eq!(resp.header("connection"), Some("close"));
    in_flight.expect_closed();
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("draining"), "{stderr}");
}

/// Every log line has a timestamp and a level, as text or as one JSON
/// object a line (`--log-format json`).
#[test]
fn log_lines_have_a_timestamp_and_a_level_in_either_format() {
    for format in ["text", "json"] {
        let (mut child, _) = spawn_binary(
            &["--listen", "127.0.0.1:0", "--reactors", "1", "--log-format", format, "--allow-private-fetch"],
            &[],
        );
        let stderr = stop(&mut child);
        let lines: Vec<&str> = stderr.lines().collect();
        assert!(lines.len() >= 3, "the guard warning, the signal, the stop: {stderr}");
        for line in lines {
            if format == "json" {
                let doc: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
                assert!(doc["ts"].as_str().is_some_and(|t| t.ends_with('Z')), "{line}");
                assert!(["info", "warn", "error"].contains(&doc["level"].as_str().unwrap()), "{line}");
                assert!(doc["msg"].is_string(), "{line}");
            } else {
                let (ts, rest) = line.split_once(' ').unwrap();
                assert!(pagelens::clock::parse_rfc3339(ts).is_some(), "{line}");
                assert!(["INFO ", "WARN ", "ERROR"].iter().any(|l| rest.starts_with(l)), "{line}");
            }
        }
    }
}

/// `--access-log FILE`: one line a response, deferred answers and protocol
/// errors included, in text or JSON.
#[test]
fn the_access_log_has_a_line_a_response_in_either_format() {
    use crate::util::{call, get, post, request};
    let dir = crate::util::TempDir::new("access-log");
    for format in ["text", "json"] {
        let path = dir.path().join(format!("access-{format}.log"));
        let log = path.to_str().unwrap();
        let (mut child, addr) =
            spawn_binary(&["--listen", "127.0.0.1:0", "--log-format", format, "--access-log", log], &[]);
        assert_eq!(call(addr, &get("/livez")).status, 200);
        assert_eq!(call(addr, &get("/tasks/active?limit=1")).status, 200);
        assert_eq!(
            call(addr, &post("/analyze/async", &serde_json::json!({"html": "<title>x</title>"}), "")).status,
            202
        );
        assert_eq!(call(addr, &get("/nowhere")).status, 404);
        assert_eq!(request(addr, b"GET /livez HTTP/1.1\r\n\r\n").status, 400, "no Host");
        // Lines are written by a thread of their own: wait for all five.
        let started = Instant::now();
        let text = loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            if text.lines().count() >= 5 {
                break text;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        if format == "json" {
            let docs: Vec<serde_json::Value> = lines.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
            assert_eq!(docs[0]["method"], "GET");
            assert_eq!(docs[0]["target"], "/livez");
            assert_eq!((docs[0]["status"].as_u64(), docs[0]["bytes"].as_u64()), (Some(200), Some(2)));
            assert!(docs[0]["duration_ms"].as_f64().is_some_and(|ms| ms >= 0.0));
            assert_eq!(docs[0]["client"], "127.0.0.1");
            assert!(docs[0]["ts"].as_str().is_some_and(|t| pagelens::clock::parse_rfc3339(t).is_some()));
            assert_eq!(docs[1]["target"], "/tasks/active?limit=1");
            assert_eq!((docs[2]["method"].as_str(), docs[2]["status"].as_u64()), (Some("POST"), Some(202)));
            assert_eq!(docs[3]["status"], 404);
            assert_eq!((docs[4]["method"].as_str(), docs[4]["status"].as_u64()), (Some("-"), Some(400)));
        } else {
            let fields: Vec<&str> = lines[0].split(' ').collect();
            assert!(pagelens::clock::parse_rfc3339(fields[0]).is_some(), "{}", lines[0]);
            assert_eq!(&fields[1..6], ["127.0.0.1", "\"GET", "/livez\"", "200", "2"], "{}", lines[0]);
            assert!(fields[6].ends_with("ms"), "{}", lines[0]);
            assert!(lines[2].contains("\"POST /analyze/async\" 202 "), "{}", lines[2]);
            assert!(lines[4].contains("\"- -\" 400 "), "{}", lines[4]);
        }
        stop(&mut child);
    }
}

/// With --drain-grace, SIGTERM first keeps accepting while /readyz answers
/// 503 and every response closes its connection (a load balancer's cue),
/// then stops as without it.
#[test]
fn the_drain_grace_keeps_accepting_with_readyz_503_then_stops() {
    let (mut child, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "2", "--drain-grace", "2s"], &[]);
    let started = Instant::now();
    terminate(&child);
    // New connections are still taken; readiness turns 503.
    loop {
        // (The request that sees the flip may have been read just before it.)
        if request(addr, &get("/readyz")).status == 503 {
            let resp = request(addr, &get("/readyz"));
            assert_eq!((resp.status, resp.header("connection")), (503, Some("close")));
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "/readyz never turned 503 during the grace");
        sleep(Duration::from_millis(10));
    }
    let mut client = Reader::new(connect(addr));
    client.send(&get("/livez"));
    let resp = client.response(false);
    assert_eq!((resp.status, resp.header("connection")), (200, Some("close")), "served, then closed");
    client.expect_closed();
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    assert!(started.elapsed() >= Duration::from_secs(2), "stopped before the grace ended");
    assert!(TcpStream::connect(addr).is_err(), "the listeners close after the grace");
}

/// Out of descriptors, each connection that cannot be kept is still
/// answered: `503` with `Retry-After`, through the spare descriptor.
#[test]
fn connections_past_the_descriptor_limit_get_503_not_silence() {
    let (mut child, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1"], &[(libc::RLIMIT_NOFILE, 48)]);
    let mut clients: Vec<Reader> = (0..150)
        .map(|_| {
            let mut client = Reader::new(connect(addr));
            client.send(&get("/livez"));
            client
        })
        .collect();
    let (mut served, mut refused) = (0, 0);
    for client in &mut clients {
        let resp = client.try_response(false).expect("an answer, not a reset").expect("an answer before EOF");
        match resp.status {
            200 => served += 1,
            503 => {
                assert_eq!((resp.header("retry-after"), resp.header("connection")), (Some("1"), Some("close")));
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(served > 0 && refused > 0, "served {served}, refused {refused}");
    drop(clients);
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

#[test]
fn running_out_of_descriptors_neither_spins_nor_kills_the_loop() {
    let (mut child, addr) = spawn_binary(&["--listen", "127.0.0.1:0", "--reactors", "1"], &[(libc::RLIMIT_NOFILE, 48)]);
    // Far more connections than the server has descriptors for.
    let flood: Vec<TcpStream> = (0..150).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    sleep(Duration::from_millis(300));
    let mut cpu_before = String::new();
    std::fs::File::open(format!("/proc/{}/stat", child.id())).unwrap().read_to_string(&mut cpu_before).unwrap();
    sleep(Duration::from_millis(500));
    let mut cpu_after = String::new();
    std::fs::File::open(format!("/proc/{}/stat", child.id())).unwrap().read_to_string(&mut cpu_after).unwrap();
    let ticks = |stat: &str| -> u64 {
        let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    // A spinning accept loop would burn ~50 ticks in half a second.
    assert!(ticks(&cpu_after) - ticks(&cpu_before) < 20, "the reactor spins while out of descriptors");
    drop(flood);
    let started = Instant::now();
    loop {
        let mut client = Reader::new(connect(addr));
        client.send(&get("/livez"));
        if let Ok(Some(resp)) = client.try_response(false) {
            assert_eq!(resp.status, 200);
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "server never recovered");
        sleep(Duration::from_millis(100));
    }
    assert!(child.try_wait().unwrap().is_none(), "server died");
    let health: serde_json::Value = serde_json::from_slice(&request(addr, &get("/health")).body).unwrap();
    assert!(health["connections"]["refused_total"].as_u64().unwrap() > 0, "EMFILE never happened: {health}");
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
}

#[test]
fn help_explains_every_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_pagelens")).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--reactors",
        "--max-connections",
        "--header-timeout",
        "--body-timeout",
        "--idle-timeout",
        "--write-timeout",
        "--shutdown-timeout",
        "--drain-grace",
        "--log-format",
        "--max-header-bytes",
        "--max-body-bytes",
        "--workers",
        "--queue-capacity",
        "--sync-wait",
        "--task-timeout",
        "--max-task-timeout",
        "--result-ttl",
        "--store",
        "--durability",
        "--max-queued-bytes",
        "--max-result-bytes",
        "--max-bulk-items",
        "--no-metrics",
        "--alert-p99",
        "--alert-error-rate",
        "--alert-queue-fill",
        "--alert-connection-fill",
        "--alert-timeout-rate",
        "--alert-for",
        "--alert-window",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
    }
    assert!(help.contains("PAGELENS_LISTEN"), "{help}");
}

/// Completions and the man page come from the CLI definition: every flag is
/// in them, and bash accepts the script.
#[test]
fn completions_and_the_man_page_are_generated() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_pagelens")).args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("--drain-grace") && bash.contains("--store"), "serve's flags are completed");
    let dir = crate::util::TempDir::new("completions");
    let script = dir.path().join("pagelens.bash");
    std::fs::write(&script, &bash).unwrap();
    let check = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", String::from_utf8_lossy(&check.stderr));
    for shell in ["zsh", "fish"] {
        assert!(run(&["completions", shell]).contains("pagelens"), "{shell}");
    }
    let man = run(&["manpage"]);
    assert!(man.starts_with(".ie") || man.contains(".TH pagelens 1"), "{}", &man[..100.min(man.len())]);
    assert!(man.contains("serve") && man.contains("loadtest"), "the subcommands are in the man page");
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    for (args, needle) in [
        (&["serve", "--header-timeout", "soon"][..], "does not start with a number"),
        (&["serve", "--max-body-bytes", "3 furlongs"][..], "unknown size unit"),
        (&["serve", "--listen", "nowhere"][..], "invalid socket address"),
        (&["serve", "--idle-timeout", "0s"][..], "must be more than zero"),
        (&["serve", "--alert-error-rate", "5"][..], "is a share: from 0 to 1"),
        (&["serve", "--store", "postgres://x"][..], "give sqlite:PATH, memory, redis://HOST:PORT/DB or rediss://"),
        (
            &["serve", "--store", "redis://127.0.0.1:1/0", "--listen", "127.0.0.1:0"][..],
            "--store: redis://127.0.0.1:1/0: ",
        ),
        (&["serve", "--store", "redis://no such host/0"][..], "--store"),
        (&["serve", "--durability", "eventually"][..], "give process or power"),
        (&["serve", "--rate-limit", "fast"][..], "is not a rate such as 20/s"),
        (&["serve", "--rate-limit", "0/s"][..], "must be above zero"),
        (&["serve", "--rate-limit-submit", "5/week"][..], "unknown unit"),
        (&["serve", "--trust-proxy", "10.0.0.0/99"][..], "bad prefix length"),
        (&["serve", "--api-keys", "/nonexistent/keys.toml"][..], "--api-keys /nonexistent/keys.toml"),
        (&["keys", "add", "x", "--scopes", "root", "--file", "/tmp/unused.toml"][..], "unknown scope \"root\""),
        (&["analyze", "example.com"][..], "give its URL: https://example.com/"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_pagelens")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn flags_can_come_from_the_environment() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pagelens"))
        .arg("serve")
        .env("PAGELENS_STORE", "memory")
        .env("PAGELENS_IO_ENGINE", crate::IO_ENGINE)
        .env("PAGELENS_LISTEN", "127.0.0.1:0")
        .env("PAGELENS_REACTORS", "1")
        .env("PAGELENS_FETCH_ALLOW", "10.9.0.0/16,10.8.0.0/16")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("127.0.0.1:") && line.contains("(1 reactors,"), "{line}");
    terminate(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(5)).success());
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("open for 10.9.0.0/16, 10.8.0.0/16"), "PAGELENS_FETCH_ALLOW was ignored: {stderr}");
}

/// The start line says which I/O engine runs and why: the one this suite
/// asked for, unless the kernel refuses io_uring (then epoll, with the
/// reason, and one warning on stderr).
#[test]
fn the_start_line_names_the_engine_asked_for() {
    let (mut child, line) = crate::binary::spawn_binary_line(&["--listen", "127.0.0.1:0", "--reactors", "1"], &[]);
    let expected = match (crate::IO_ENGINE, pagelens::reactor::io_uring_available()) {
        ("io_uring", Ok(())) => "io_uring: asked for".to_string(),
        ("io_uring", Err(e)) => format!("epoll: io_uring refused ({e})"),
        ("epoll", _) => "epoll: asked for".to_string(),
        _ => "epoll: auto".to_string(),
    };
    assert!(line.contains(&expected), "{line:?} should say {expected:?}");
    stop(&mut child);
}

/// Where a seccomp filter forbids io_uring (Docker's default profile does),
/// asking for it starts on epoll with one warning, never fails to start,
/// and serves.
#[test]
fn a_refused_io_uring_falls_back_to_epoll_with_one_log_line() {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagelens"));
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--reactors", "2", "--store", "memory", "--io-engine", "io_uring"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: prctl with a filter built on this stack frame; async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let refuse_io_uring = [
                // Load the syscall number, then: io_uring_setup -> EPERM, anything else -> allow.
                libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
                libc::sock_filter {
                    code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 1,
                    k: libc::SYS_io_uring_setup as u32,
                },
                libc::sock_filter {
                    code: (libc::BPF_RET | libc::BPF_K) as u16,
                    jt: 0,
                    jf: 0,
                    k: libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
                },
                libc::sock_filter { code: (libc::BPF_RET | libc::BPF_K) as u16, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW },
            ];
            let program = libc::sock_fprog { len: refuse_io_uring.len() as u16, filter: refuse_io_uring.as_ptr().cast_mut() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program as *const libc::sock_fprog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    assert!(line.contains("(2 reactors, epoll: io_uring refused (Operation not permitted"), "{line}");
    let addr = line.split("http://").nth(1).and_then(|r| r.split_whitespace().next()).unwrap();
    let reply = request(addr.parse().unwrap(), &get("/livez"));
    assert_eq!(reply.status, 200);
    let stderr = stop(&mut child);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("io_uring")).collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains("fell back to epoll"), "{stderr}");
}

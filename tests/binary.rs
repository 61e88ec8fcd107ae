//! The real `pagelens` binary as a child process: started, limited,
//! signalled and stopped.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A resource limit of the binary: which (`libc::RLIMIT_*`), and how much.
pub type Limit = (libc::__rlimit_resource_t, u64);

/// Runs the real binary with `args` (tasks in memory unless `args` name a
/// store) under `limits`; returns it and the address it printed. SIGXFSZ is
/// ignored, so that a file-size limit fails writes as a full disk does.
pub fn spawn_binary(args: &[&str], limits: &[Limit]) -> (Child, SocketAddr) {
    let (child, line) = spawn_binary_line(args, limits);
    let addr = line.split("http://").nth(1).and_then(|rest| rest.split_whitespace().next()).unwrap_or_default();
    (child, addr.parse().unwrap_or_else(|_| panic!("no address in {line:?}")))
}

/// As [`spawn_binary`], returning the start line instead of the address.
pub fn spawn_binary_line(args: &[&str], limits: &[Limit]) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pagelens"));
    command
        .arg("serve")
        .env("PAGELENS_STORE", "memory")
        .env("PAGELENS_IO_ENGINE", crate::IO_ENGINE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let limits = limits.to_vec();
    // SAFETY: setrlimit and signal are async-signal-safe and touch no shared state.
    unsafe {
        command.pre_exec(move || {
            for &(resource, limit) in &limits {
                let lim = libc::rlimit { rlim_cur: limit, rlim_max: limit };
                if libc::setrlimit(resource, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = command.spawn().expect("start pagelens");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    (child, line)
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("pagelens did not exit within {limit:?}");
        }
        sleep(Duration::from_millis(20));
    }
}

pub fn terminate(child: &Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
}

/// Stops the binary with SIGTERM, asserts it exits cleanly, and returns
/// what it logged.
pub fn stop(child: &mut Child) -> String {
    terminate(child);
    let status = wait_exit(child, Duration::from_secs(30));
    let mut stderr = String::new();
    if let Some(mut err) = child.stderr.take() {
        err.read_to_string(&mut stderr).unwrap();
    }
    assert!(status.success(), "{status}: {stderr}");
    stderr
}

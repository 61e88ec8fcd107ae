//! The process's own figures, from /proc.

use super::Exposition;

fn resident_kib() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    })
}

/// Fields of `/proc/self/stat` after the parenthesised command name
/// (`fields[0]` is field 3, the state).
fn stat_field(index: usize) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(index)?.parse().ok()
}

/// Clock ticks a second.
fn ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// When the process started, in seconds since the Unix epoch: boot time plus
/// the start tick (field 22).
fn start_time() -> Option<f64> {
    let boot: f64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(boot + stat_field(19)? / ticks_per_second())
}

/// The standard process figures, under the names every Prometheus client
/// library exports them by, and the build.
pub fn collect(out: &mut Exposition) {
    if let Some(kib) = resident_kib() {
        out.single("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", kib * 1024.0);
    }
    // utime and stime are fields 14 and 15.
    if let (Some(user), Some(system)) = (stat_field(11), stat_field(12)) {
        let cpu = (user + system) / ticks_per_second();
        out.single("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", cpu);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.single("process_open_fds", "gauge", "Number of open file descriptors.", fds.count() as f64);
    }
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        out.single("process_max_fds", "gauge", "Maximum number of open file descriptors.", limit.rlim_cur as f64);
    }
    if let Some(start) = start_time() {
        let help = "Start time of the process since unix epoch in seconds.";
        out.single("process_start_time_seconds", "gauge", help, start);
    }
    out.family("pagelens_build_info", "gauge", "The running build: always 1, its version in a label.");
    out.sample("pagelens_build_info", &[("version", env!("CARGO_PKG_VERSION"))], 1.0);
}

/// The system part of the live snapshot: version, cores, pid, memory.
pub fn snapshot() -> (&'static str, serde_json::Value) {
    let system = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "cores": crate::system::cores(),
        "resident_memory_bytes": resident_kib().map(|k| k * 1024.0),
    });
    ("system", system)
}

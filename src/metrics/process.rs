//! The process's own figures, from /proc.

use super::Exposition;

fn resident_kib() -> Option<f64> {
    std::fs::read_to_string("/proc/self/status").ok().and_then(|s| {
        s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
    })
}

/// Resident memory, CPU seconds and open descriptors.
pub fn collect(out: &mut Exposition) {
    if let Some(kib) = resident_kib() {
        out.single("pagelens_process_resident_memory_bytes", "gauge", "Resident memory.", kib * 1024.0);
    }
    if let Some(ticks) = std::fs::read_to_string("/proc/self/stat").ok().and_then(|s| {
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let fields: Vec<&str> = s.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
    }) {
        // SAFETY: sysconf only reads a constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        out.single("pagelens_process_cpu_seconds_total", "counter", "User and system CPU time.", ticks / hz);
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        out.single("pagelens_process_open_fds", "gauge", "Open file descriptors.", fds.count() as f64);
    }
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

//! Facts about the machine, read once.

use std::sync::OnceLock;

/// The cores this process may use (cgroup quota and affinity included), at
/// least 1. Counting them reads the cgroup's files, which is file I/O a
/// request must not wait for, so it is done once.
pub fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

//! Memory the process really uses, next to what `plan::estimate` predicts:
//! the peak resident set size (Linux's `VmHWM`), which a run resets when it
//! starts so its events report its own peak.
//!
//! On GPU backends the weights and activations live in device memory, which
//! burn 0.22 does not report; there the host peak is still recorded (it
//! holds the dataset, the tokenizer and the checkpoint copies) and the events
//! say which of the two a number is.

use std::path::Path;

/// Peak resident set size of this process in bytes, if the platform says.
pub fn peak_rss() -> Option<u64> {
    read_status_kib(Path::new("/proc/self/status"), "VmHWM:").map(|kib| kib * 1024)
}

/// Current resident set size of this process in bytes, if the platform says.
pub fn current_rss() -> Option<u64> {
    read_status_kib(Path::new("/proc/self/status"), "VmRSS:").map(|kib| kib * 1024)
}

/// The machine's memory as the kernel reports it (`/proc/meminfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct SystemMemory {
    /// Installed RAM.
    pub total: u64,
    /// What can be allocated without swapping (`MemAvailable`).
    pub available: u64,
}

/// This machine's RAM, where the platform says (Linux).
pub fn system_memory() -> Option<SystemMemory> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    Some(SystemMemory {
        total: parse_kib(&text, "MemTotal:")? * 1024,
        available: parse_kib(&text, "MemAvailable:")? * 1024,
    })
}

/// Starts a new peak at the current resident size (Linux: writing 5 to
/// `clear_refs`). Returns false where the platform cannot, in which case
/// [`peak_rss`] keeps counting from the process start.
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// A `Key:   1234 kB` line of a /proc status file, in KiB.
fn read_status_kib(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    parse_kib(&text, key)
}

fn parse_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut parts = line[key.len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value),
        Some(_) => None,
    }
}

/// Bytes as a short human string (`1.50 GiB`, `640.0 MiB`).
pub fn human_bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1024f64.powi(3) => format!("{:.2} GiB", n / 1024f64.powi(3)),
        n if n >= 1024f64.powi(2) => format!("{:.1} MiB", n / 1024f64.powi(2)),
        n if n >= 1024.0 => format!("{:.1} KiB", n / 1024.0),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines_are_read_in_kib() {
        let text = "Name:\ttunesmith\nVmPeak:\t  900 kB\nVmHWM:\t  2048 kB\nVmRSS:\t1024 kB\n";
        assert_eq!(parse_kib(text, "VmHWM:"), Some(2048));
        assert_eq!(parse_kib(text, "VmRSS:"), Some(1024));
        assert_eq!(parse_kib(text, "VmSwap:"), None);
        assert_eq!(parse_kib("VmHWM:\t12 MB\n", "VmHWM:"), None);
    }

    #[test]
    fn the_peak_follows_a_large_allocation_and_resets() {
        if peak_rss().is_none() {
            return; // not Linux: nothing to measure
        }
        let before = peak_rss().unwrap();
        // 256 MiB, touched so it is resident.
        let big = vec![1u8; 256 << 20];
        let during = peak_rss().unwrap();
        assert!(during >= before.max(current_rss().unwrap()));
        assert!(during >= 256 << 20, "{during}");
        drop(big);
        if reset_peak() {
            let after = peak_rss().unwrap();
            assert!(after < during, "{after} vs {during}");
        }
    }

    #[test]
    fn system_memory_is_positive_where_reported() {
        if let Some(m) = system_memory() {
            assert!(m.total > 0 && m.available <= m.total, "{m:?}");
        }
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(3 << 30), "3.00 GiB");
        assert_eq!(human_bytes(640 << 20), "640.0 MiB");
        assert_eq!(human_bytes(10), "10 B");
    }
}

//! CPU time and resident memory of a process, from `/proc` (Linux).

use std::time::Instant;

/// Clock ticks per second for `/proc/*/stat` times.
fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime + stime of `pid` (`"self"` for this process) in seconds.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold
    // spaces: field 3 (state) is the first after ") ".
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14, stime 15 (1-based) → index 11, 12 here.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) / clk_tck())
}

/// Resident set size of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// A CPU usage meter over an interval.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    pid: String,
    at: Instant,
    cpu: Option<f64>,
}

impl CpuMeter {
    /// Start measuring `pid` now.
    pub fn start(pid: &str) -> CpuMeter {
        CpuMeter {
            pid: pid.to_string(),
            at: Instant::now(),
            cpu: cpu_seconds(pid),
        }
    }

    /// CPU seconds used since start per wall second (1.0 = one core busy).
    pub fn ratio(&self) -> Option<f64> {
        let now = cpu_seconds(&self.pid)?;
        let wall = self.at.elapsed().as_secs_f64();
        let then = self.cpu?;
        (wall > 0.0).then(|| (now - then) / wall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_self() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_bytes("self").unwrap() > 0);
        let m = CpuMeter::start("self");
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed().as_millis() < 50 {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(m.ratio().unwrap() >= 0.0, "{x}");
    }
}

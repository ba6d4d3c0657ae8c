//! Facts about the machine from `/proc` (Linux).

use std::fs;

use super::schema::Machine;

/// CPU model, core count, RAM and kernel of this machine.
pub fn machine() -> Machine {
    let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let ram_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    Machine {
        cpu,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        ram_bytes: ram_kib * 1024,
        kernel,
        gpu: None,
    }
}

/// The 1-minute load average (`/proc/loadavg`), where available.
pub fn load_average() -> Option<f64> {
    load_averages().map(|l| l[0])
}

/// The 1-, 5- and 15-minute load averages (`/proc/loadavg`, what `uptime` shows), where
/// available.
pub fn load_averages() -> Option<[f64; 3]> {
    parse_loadavg(&fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// Seconds of CPU time the whole machine has spent busy (all cores; `/proc/stat`: every
/// field of the `cpu` line but idle and iowait), where available.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse::<f64>().ok())
        .collect::<Option<_>>()?;
    if v.len() < 5 {
        return None;
    }
    let busy: f64 = v.iter().take(8).sum::<f64>() - v[3] - v[4];
    // SAFETY: sysconf with a valid name.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| busy / hz as f64)
}

/// CPU seconds (user + system) of this process and of its waited-for children.
pub fn own_and_children_cpu_seconds() -> f64 {
    let secs = |who| {
        // SAFETY: getrusage writes into a zeroed struct it owns.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

/// `0.52, 0.61, 0.70`, as `uptime` writes a load average.
pub fn format_load(l: &[f64; 3]) -> String {
    format!("{:.2}, {:.2}, {:.2}", l[0], l[1], l[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_has_cores_and_ram() {
        let m = machine();
        assert!(m.cores >= 1);
        if cfg!(target_os = "linux") {
            assert!(m.ram_bytes > 0);
            assert_ne!(m.cpu, "");
            assert!(load_averages().is_some());
            let busy = machine_busy_seconds().unwrap();
            assert!(busy > 0.0);
            assert!(own_and_children_cpu_seconds() >= 0.0);
        }
    }

    #[test]
    fn loadavg_is_parsed() {
        assert_eq!(
            parse_loadavg("0.52 0.61 0.70 2/345 6789\n"),
            Some([0.52, 0.61, 0.70])
        );
        assert_eq!(parse_loadavg("0.5 x 1"), None);
        assert_eq!(parse_loadavg(""), None);
        assert_eq!(format_load(&[0.5, 1.0, 12.25]), "0.50, 1.00, 12.25");
    }
}

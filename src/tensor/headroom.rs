//! How much host memory there is to allocate, and a check made before a large allocation.
//! Linux overcommits: asking for 40 GiB on a 24 GiB machine succeeds, and the process is killed
//! later, when the pages are touched (by `zeros`, `randn`, a model's initialisation). So
//! allocations that could matter (`CHECKED_BYTES` and up) are compared first with the memory
//! available: the kernel's MemAvailable, or the cgroup's limit less its usage when that is
//! smaller (a container's limit is what the OOM killer enforces).

use std::fmt::Display;

use anyhow::{bail, Result};

/// Smaller allocations are not checked (reading /proc costs more than they risk).
pub const CHECKED_BYTES: u64 = 256 << 20;

/// Bytes of memory this process could still allocate, if the system says.
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok();
    let available = meminfo.as_deref().and_then(|m| meminfo_kib(m, "MemAvailable:")).map(|kib| kib * 1024);
    let cgroup = cgroup_headroom();
    match (available, cgroup) {
        (Some(a), Some(c)) => Some(a.min(c)),
        (a, c) => a.or(c),
    }
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    meminfo.lines().find_map(|l| l.strip_prefix(key)).and_then(|rest| rest.split_whitespace().next()).and_then(|n| n.parse().ok())
}

/// The cgroup (v2, else v1) memory limit less current usage, when there is a limit.
fn cgroup_headroom() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let (limit, usage) = match read("/sys/fs/cgroup/memory.max") {
        Some(limit) => (limit, read("/sys/fs/cgroup/memory.current")?),
        None => (read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?, read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?),
    };
    // v1 reports "no limit" as a huge number.
    (limit < (1u64 << 60)).then(|| limit.saturating_sub(usage))
}

/// The machine's memory (MemTotal), if the system says.
pub fn total_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| meminfo_kib(&m, "MemTotal:")).map(|kib| kib * 1024)
}

/// A size as a person writes it: `512M`, `4G`, `2GiB`, `1.5g`, or plain bytes.
pub fn parse_bytes(text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number.parse().map_err(|_| anyhow::anyhow!("'{text}' is not a size (such as 512M, 4G or 2GiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().trim_end_matches("ib").trim_end_matches('b') {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => bail!("'{text}' is not a size (such as 512M, 4G or 2GiB)"),
    };
    Ok((value * scale as f64) as u64)
}

/// Bytes as a person reads them: `3.6 TiB`, `512 MiB`.
pub fn human(bytes: u64) -> String {
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{value:.1} {}", units[unit]) }
}

/// An error if `bytes` of host memory for `what` are more than is available.
pub fn check(bytes: u64, what: impl Display) -> Result<()> {
    if bytes < CHECKED_BYTES {
        return Ok(());
    }
    if let Some(available) = available_bytes() {
        if bytes > available {
            bail!("out of memory: {what} needs {} and {} are available", human(bytes), human(available));
        }
    }
    Ok(())
}

/// `check` for a new tensor of `size` with `options` (host memory only: CUDA's allocator
/// reports its own shortage as an error).
pub fn check_tensor(size: &[i64], options: (tch::Kind, tch::Device), what: impl Display) -> Result<()> {
    match options.1 {
        tch::Device::Cpu => check(tensor_bytes(size, options.0), what),
        _ => Ok(()),
    }
}

/// The bytes a tensor of `size` and `kind` takes (saturating: an absurd size stays absurd).
pub fn tensor_bytes(size: &[i64], kind: tch::Kind) -> u64 {
    size.iter().fold(kind.elt_size_in_bytes() as u64, |acc, &d| acc.saturating_mul(d.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 bytes");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(human(4_000_000_000_000), "3.6 TiB");
        assert_eq!(tensor_bytes(&[1000, 1000], tch::Kind::Float), 4_000_000);
        assert_eq!(tensor_bytes(&[i64::MAX, i64::MAX], tch::Kind::Float), u64::MAX);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert!(parse_bytes("lots").is_err() && parse_bytes("3X").is_err());
    }

    #[test]
    fn more_than_the_machine_has_is_refused_before_allocating() {
        assert!(check(1 << 20, "a small tensor").is_ok());
        if let Some(available) = available_bytes() {
            let err = check(available.saturating_mul(4).max(CHECKED_BYTES), "tensor.zeros").unwrap_err().to_string();
            assert!(err.starts_with("out of memory: tensor.zeros needs"), "{err}");
        }
    }
}

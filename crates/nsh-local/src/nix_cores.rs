//! Whether the user set Nix's `cores`, or the build should get its job's CPUs.
//!
//! Nix sends the hook all its settings, `cores` among them, so an explicit `--cores` or
//! `--option cores N` looks the same as the default. The default (`getDefaultCores` in
//! `libstore/globals.cc`): Nix 2.8 to 2.10 `std::thread::hardware_concurrency()` (the
//! online CPUs); 2.11 to 2.30 the cgroup v2 `cpu.max` quota rounded up if there is one,
//! else the online CPUs; 2.31 on `0` (resolved the same way when a build starts). So a
//! value of 0, of the online CPUs or of the cgroup quota of this hook means "not set" and
//! the node's agent uses the job's allocation; any other value is the user's and is passed
//! on. The ambiguity: a user who asks for exactly this machine's default gets the job's
//! CPUs instead.

/// The user's `cores` from the `cores` setting Nix sent, or `None` if it is the default.
pub fn user_cores(setting: Option<&str>, machine_defaults: &[u32]) -> Option<u32> {
    let n: u32 = setting?.trim().parse().ok()?;
    (n != 0 && !machine_defaults.contains(&n)).then_some(n)
}

/// What Nix's default `cores` can be on this machine: the online CPUs and this process's
/// cgroup v2 CPU quota (if any).
pub fn machine_defaults() -> Vec<u32> {
    let mut v = Vec::new();
    // SAFETY: sysconf has no preconditions.
    let online = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if let Ok(n) = u32::try_from(online) {
        v.push(n.max(1));
    }
    if let Some(n) = cgroup_quota() {
        v.push(n);
    }
    v
}

/// `ceil(quota / period)` of this process's cgroup v2 `cpu.max`, as Nix's `getMaxCPU`.
fn cgroup_quota() -> Option<u32> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let cpu_max = std::fs::read_to_string(format!("/sys/fs/cgroup{rel}/cpu.max")).ok()?;
    quota_of(&cpu_max)
}

fn quota_of(cpu_max: &str) -> Option<u32> {
    let mut parts = cpu_max.split_ascii_whitespace();
    let quota: f64 = parts.next()?.parse().ok()?;
    let period: f64 = parts.next()?.parse().ok()?;
    if period <= 0.0 || quota <= 0.0 {
        return None;
    }
    let n = (quota / period).ceil();
    (1.0..=65535.0).contains(&n).then_some(n as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_or_explicit() {
        let defaults = [8, 3];
        assert_eq!(user_cores(None, &defaults), None);
        assert_eq!(user_cores(Some("0"), &defaults), None);
        assert_eq!(user_cores(Some("8"), &defaults), None);
        assert_eq!(user_cores(Some("3"), &defaults), None);
        assert_eq!(user_cores(Some("1"), &defaults), Some(1));
        assert_eq!(user_cores(Some("16"), &defaults), Some(16));
        assert_eq!(user_cores(Some("lots"), &defaults), None);
        assert_eq!(user_cores(Some("-1"), &defaults), None);
    }

    #[test]
    fn cgroup_quota_like_nix() {
        assert_eq!(quota_of("max 100000\n"), None);
        assert_eq!(quota_of("150000 100000\n"), Some(2));
        assert_eq!(quota_of("200000 100000"), Some(2));
        assert_eq!(quota_of("junk"), None);
        assert_eq!(quota_of("1 0"), None);
    }

    #[test]
    fn this_machine_has_a_default() {
        assert!(machine_defaults().first().is_some_and(|n| *n >= 1));
    }
}

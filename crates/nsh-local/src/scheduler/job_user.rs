//! As whom the jobs run. Under nix-daemon the hook runs as root, and Slurm (munge) and PBS
//! vouch for root: a job submitted as is would run as root on the cluster. So a root hook
//! that submits from this machine (`slurm-native`, `slurm-cli` and `pbs` without
//! `login-host`) needs `job-user`, or `allow-root-jobs = true` to say running as root is
//! meant. Through a login host, or through slurmrestd, the credentials decide (the ssh user,
//! the token's user), not this process.

use anyhow::{Result, bail};

use crate::config::{Config, JobScheduler};

/// The user jobs are submitted for, looked up in this machine's passwd database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUser {
    pub name: String,
    pub uid: u32,
    /// Primary group: the job's group.
    pub gid: u32,
    pub home: String,
}

/// Whom the chosen backend's jobs run as: `Some` when this root process must submit on
/// another user's behalf, `None` when the jobs run as this process's user (or as whoever
/// the login host or the token says). Errors name the setting to change.
pub fn job_user(config: &Config) -> Result<Option<JobUser>> {
    let submits_here = match config.job_scheduler {
        JobScheduler::Slurm => false,
        JobScheduler::SlurmNative => true,
        JobScheduler::SlurmCli | JobScheduler::Pbs => config.login_host.is_none(),
    };
    if !submits_here {
        return Ok(None);
    }
    let euid = rustix::process::geteuid().as_raw();
    let scheduler = config.job_scheduler;
    match (&config.job_user, euid) {
        (Some(name), 0) => {
            let user = lookup(name)?;
            if user.uid == 0 && !config.allow_root_jobs {
                bail!(
                    "job-user = {name} is root: its jobs would run as root on the cluster; name \
                     an ordinary user, or set allow-root-jobs = true if that is meant"
                );
            }
            Ok(Some(user))
        }
        (None, 0) if config.allow_root_jobs => Ok(None),
        (None, 0) => bail!(
            "nsh runs as root (as under nix-daemon) and job-scheduler = {scheduler} submits from \
             this machine, so its jobs would run as root on the cluster: set job-user = <the \
             user the jobs should run as> in nsh.conf (or allow-root-jobs = true if root jobs \
             are meant)"
        ),
        (Some(name), euid) => {
            let user = lookup(name)?;
            if user.uid != euid {
                bail!(
                    "job-user = {name} (uid {}), but nsh runs as uid {euid}, which cannot submit \
                     for another user: remove job-user (the jobs run as uid {euid}), or run the \
                     hook as root (under nix-daemon)",
                    user.uid
                );
            }
            Ok(None)
        }
        (None, _) => Ok(None),
    }
}

/// `name` in the passwd database (getpwnam_r: NSS, so LDAP users resolve too).
pub fn lookup(name: &str) -> Result<JobUser> {
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| anyhow::anyhow!("job-user '{name}' holds a NUL byte"))?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: all-zero is a valid `passwd` (null pointers, zero ids); getpwnam_r fills it
    // from `buf`, which outlives every use of its pointers below.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call; buf's length is passed with it.
    let rc = unsafe {
        libc::getpwnam_r(
            c_name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut found,
        )
    };
    if rc != 0 {
        bail!(
            "cannot look up job-user '{name}': {}",
            std::io::Error::from_raw_os_error(rc)
        );
    }
    if found.is_null() {
        bail!(
            "job-user = {name}: no such user on this machine (getent passwd {name} finds \
             nothing); name a user who may submit jobs"
        );
    }
    // SAFETY: pw_dir points into `buf` (or is null), NUL-terminated by getpwnam_r.
    let home = if pwd.pw_dir.is_null() {
        String::new()
    } else {
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_dir) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(JobUser {
        name: name.to_owned(),
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
        home,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
    }

    #[test]
    fn unknown_user_is_a_clear_error() {
        let err = lookup("no-such-user-nsh").unwrap_err().to_string();
        assert!(err.contains("no such user"), "{err}");
    }

    #[test]
    fn who_submits() {
        let mut config = Config {
            job_scheduler: JobScheduler::SlurmNative,
            ..Config::default()
        };
        let root = rustix::process::geteuid().is_root();
        if root {
            let err = job_user(&config).unwrap_err().to_string();
            assert!(err.contains("set job-user"), "{err}");
            config.allow_root_jobs = true;
            assert_eq!(job_user(&config).unwrap(), None);
            config.allow_root_jobs = false;
            config.job_user = Some("root".into());
            let err = job_user(&config).unwrap_err().to_string();
            assert!(err.contains("is root"), "{err}");
        } else {
            assert_eq!(job_user(&config).unwrap(), None);
            config.job_user = Some("root".into());
            let err = job_user(&config).unwrap_err().to_string();
            assert!(err.contains("cannot submit for another user"), "{err}");
        }
        // Through a login host or slurmrestd, this process's user does not decide.
        for (scheduler, login) in [
            (JobScheduler::SlurmCli, Some("login1")),
            (JobScheduler::Pbs, Some("login1")),
            (JobScheduler::Slurm, None),
        ] {
            let config = Config {
                job_scheduler: scheduler,
                login_host: login.map(Into::into),
                ..Config::default()
            };
            assert_eq!(job_user(&config).unwrap(), None, "{scheduler}");
        }
    }
}

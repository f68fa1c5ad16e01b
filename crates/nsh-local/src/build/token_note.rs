//! The scheduler's credential expiring while a build runs. How the job ended comes from
//! the agent (BuildDone), so a rejected token in a status poll while the agent serves never
//! fails the build: nsh says once that the token expired, where it is set and how to renew
//! it, and carries on.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::config::Config;
use crate::nix_log::Ui;
use crate::scheduler::{JobId, Scheduler};

/// What a status poll's error means while the agent serves the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollVerdict {
    /// Not worth a word (slurmrestd busy, the job not listed): the agent decides anyway.
    Ignore,
    /// The token was rejected and nobody was told yet: say so, once.
    WarnExpired,
}

/// Remembers whether the user was told that the token expired.
#[derive(Default)]
pub struct TokenNote {
    told: AtomicBool,
}

impl TokenNote {
    /// The verdict on a status poll's error while the agent serves (`rejected`: the
    /// scheduler refused the credentials, [`Scheduler::rejects_credentials`]); the build
    /// goes on either way.
    pub fn verdict(&self, rejected: bool) -> PollVerdict {
        if rejected && !self.told.swap(true, Ordering::SeqCst) {
            PollVerdict::WarnExpired
        } else {
            PollVerdict::Ignore
        }
    }
}

impl TokenNote {
    /// A status poll of `job` failed while the agent serves: tells the user once if the
    /// token was rejected; never an error.
    pub fn poll_failed(&self, ui: &Ui, config: &Config, job: &JobId, rejected: bool) {
        if self.verdict(rejected) == PollVerdict::WarnExpired {
            ui.warn(&expired_message(config, job));
        }
    }

    /// The end-of-build status poll: reports an expired token (or that a renewed one was
    /// taken up), so the user learns it before the next build is refused. The build's
    /// result came from the agent and stays as it is.
    pub async fn after_build<S: Scheduler>(
        &self,
        sched: &S,
        ui: &Ui,
        config: &Config,
        job: &JobId,
    ) {
        if let Err(e) = sched.status(job).await {
            tracing::debug!(%job, "end-of-build status: {e:#}");
            self.poll_failed(ui, config, job, sched.rejects_credentials(&e));
        }
        if sched.take_token_renewal() {
            ui.info(&format!(
                "nsh: job {job}: slurmrestd rejected the token nsh started with; nsh re-read \
                 slurm-jwt-token from nsh.conf's files and continues with the renewed one"
            ));
        }
    }
}

/// The message for a rejected token during `job`: which setting, where it was set, what
/// happens to the build, how to renew.
pub fn expired_message(config: &Config, job: &JobId) -> String {
    let origin = config
        .origins
        .get("slurm-jwt-token")
        .map(|o| format!(" (set at {o})"))
        .unwrap_or_default();
    format!(
        "nsh: job {job}: slurmrestd rejected slurm-jwt-token{origin}: it has probably expired. \
         The build goes on (the agent reports its end), but until the token is renewed nsh \
         cannot query or cancel jobs: a Ctrl-C then ends the job through the agent's 60 s \
         lease. Renew it with `scontrol token lifespan=SECONDS` and write the new token into \
         that file; running hooks re-read it (README: Schedulers, Slurm REST, Authentication)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_while_serving_warns_once_and_never_fails() {
        let note = TokenNote::default();
        assert_eq!(note.verdict(false), PollVerdict::Ignore);
        assert_eq!(note.verdict(true), PollVerdict::WarnExpired);
        assert_eq!(note.verdict(true), PollVerdict::Ignore);
        assert_eq!(note.verdict(false), PollVerdict::Ignore);
    }

    #[test]
    fn message_names_setting_origin_job_and_renewal() {
        let mut config = Config::default();
        config
            .origins
            .insert("slurm-jwt-token".into(), "/etc/nix/nsh-token.conf:1".into());
        let m = expired_message(&config, &JobId("42".into()));
        for part in [
            "job 42",
            "slurm-jwt-token",
            "/etc/nix/nsh-token.conf:1",
            "scontrol token lifespan=SECONDS",
            "re-read",
        ] {
            assert!(m.contains(part), "{part} missing in: {m}");
        }
    }
}

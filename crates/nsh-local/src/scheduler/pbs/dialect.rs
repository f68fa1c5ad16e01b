//! Which PBS the commands belong to, from `qstat --version`:
//!
//! ```plain
//! pbs_version = 23.06.06                  OpenPBS, PBS Professional (exit 0)
//! Version: 6.1.3                          Torque (exit 0)
//! Unknown option: version / Usage: …      Slurm's Torque wrappers (exit 2)
//! ```

use std::fmt;

/// The PBS flavour behind `qsub`/`qstat`/`qdel`. Found once per process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    /// OpenPBS or PBS Professional: `qsub -f`, `qstat -x`, substates, `Exit_status`.
    /// `json`: `qstat -F json` exists (PBS Professional 14 and later, every OpenPBS).
    OpenPbs { version: String, json: bool },
    /// Torque: `C` for completed, lowercase `exit_status`, text only (`-x` is XML there).
    Torque { version: String },
    /// Debian's Torque-compatible wrappers over Slurm: text only, no exit status, no
    /// `qsub -f`, one `-l`.
    SlurmWrappers,
}

/// First PBS Professional major version with `qstat -F json`.
const FIRST_JSON_MAJOR: u32 = 14;

impl Dialect {
    /// From `qstat --version`'s output; `None` if it is none of the three.
    pub fn detect(stdout: &str, stderr: &str) -> Option<Dialect> {
        let field = |text: &str, key: &str| {
            text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix(key)
                    .map(|v| v.trim().trim_start_matches(['=', ':']).trim().to_owned())
            })
        };
        if let Some(version) = field(stdout, "pbs_version") {
            let major = version
                .split('.')
                .next()
                .and_then(|m| m.parse::<u32>().ok());
            let json = major.is_none_or(|m| m >= FIRST_JSON_MAJOR);
            return Some(Dialect::OpenPbs { version, json });
        }
        if let Some(version) = field(stdout, "Version").or(field(stderr, "Version")) {
            return Some(Dialect::Torque { version });
        }
        if stderr.contains("Unknown option: version") {
            return Some(Dialect::SlurmWrappers);
        }
        None
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dialect::OpenPbs { version, .. } => write!(f, "OpenPBS/PBS Professional {version}"),
            Dialect::Torque { version } => write!(f, "Torque {version}"),
            Dialect::SlurmWrappers => f.write_str("Slurm's Torque wrappers"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_versions() {
        assert_eq!(
            Dialect::detect(include_str!("fixtures/openpbs-23.06-version.stdout"), ""),
            Some(Dialect::OpenPbs {
                version: "23.06.06".into(),
                json: true
            })
        );
        assert_eq!(
            Dialect::detect(
                include_str!("fixtures/wrappers-26.05-version.stdout"),
                include_str!("fixtures/wrappers-26.05-version.stderr")
            ),
            Some(Dialect::SlurmWrappers)
        );
        assert_eq!(
            Dialect::detect("Version: 6.1.3\n", ""),
            Some(Dialect::Torque {
                version: "6.1.3".into()
            })
        );
        assert_eq!(
            Dialect::detect("pbs_version = 13.1.2\n", ""),
            Some(Dialect::OpenPbs {
                version: "13.1.2".into(),
                json: false
            })
        );
        assert_eq!(Dialect::detect("", "sh: qstat: not found"), None);
    }
}

//! What nsh knows of libslurm's ABI, one generated file per Slurm major release.
//!
//! libslurm's structs and calls change at every major (its soname number, the "API
//! current", changes with them), so nsh carries the offsets it needs for each supported
//! release and picks one at run time by `slurm_api_version()`. The files are written by
//! tools/slurm-layout/generate from that release's own headers; its README.md says how to
//! add a release.

mod v22_05;
mod v24_11;
mod v26_05;

/// The supported releases, newest first (the order libslurm.so.N is looked for in).
pub const SUPPORTED: &[&Layout] = &[&v26_05::LAYOUT, &v24_11::LAYOUT, &v22_05::LAYOUT];

/// A struct member: where it is and how many bytes it has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: usize,
    pub size: usize,
}

/// A job state (the `enum job_states` value) or a state flag (its bit), with the word
/// squeue prints for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct State {
    pub name: &'static str,
    pub value: u32,
}

/// One of Slurm's error numbers (slurm_errno.h), by its C name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode {
    pub name: &'static str,
    pub code: i32,
}

/// How `slurm_load_job` / `slurm_kill_job` take the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobIdArg {
    /// `uint32_t job_id` (up to 25.11).
    U32,
    /// A `slurm_step_id_t` by value (26.05 on).
    StepIdByValue,
}

/// `job_desc_msg_t`: the submit request.
#[derive(Debug)]
pub struct JobDescLayout {
    pub size: usize,
    pub align: usize,
    pub name: Field,
    pub script: Field,
    pub environment: Field,
    pub env_size: Field,
    pub work_dir: Field,
    pub std_out: Field,
    pub std_err: Field,
    pub cpus_per_task: Field,
    pub pn_min_memory: Field,
    pub user_id: Field,
    pub group_id: Field,
    pub exc_nodes: Field,
    pub requeue: Field,
}

/// `slurm_job_info_t`: one job record of `slurm_load_job`.
#[derive(Debug)]
pub struct JobInfoLayout {
    pub size: usize,
    pub job_id: Field,
    pub job_state: Field,
    pub exit_code: Field,
    pub batch_host: Field,
    pub nodes: Field,
    pub state_reason: Field,
    pub state_desc: Field,
    pub user_id: Field,
    pub num_cpus: Field,
    pub pn_min_memory: Field,
}

/// `job_info_msg_t`: the response of `slurm_load_job`.
#[derive(Debug)]
pub struct JobInfoMsgLayout {
    pub size: usize,
    pub record_count: Field,
    pub job_array: Field,
}

/// `submit_response_msg_t`: the response of `slurm_submit_batch_job`.
#[derive(Debug)]
pub struct SubmitResponseLayout {
    pub size: usize,
    pub job_id: Field,
}

/// `slurm_step_id_t`, and its bytes as `SLURM_STEP_ID_INITIALIZER` makes them.
#[derive(Debug)]
pub struct StepIdLayout {
    pub size: usize,
    pub align: usize,
    pub job_id: Field,
    pub init: &'static [u8],
}

/// One Slurm release's ABI, as far as nsh uses it.
#[derive(Debug)]
pub struct Layout {
    /// "major.minor", e.g. "26.05".
    pub release: &'static str,
    /// SLURM_VERSION_NUMBER of the headers it was generated from.
    #[cfg_attr(not(test), allow(dead_code, reason = "checked by the layout tests"))]
    pub version_number: u32,
    /// libtool current = the N of libslurm.so.N = `slurm_api_version() >> 16`.
    pub api_current: u32,
    /// The architecture the offsets were computed on (`std::env::consts::ARCH` spelling).
    pub arch: &'static str,
    pub job_desc: JobDescLayout,
    pub job_info: JobInfoLayout,
    pub job_info_msg: JobInfoMsgLayout,
    pub submit_response: SubmitResponseLayout,
    pub step_id: StepIdLayout,
    pub load_job_takes: JobIdArg,
    pub kill_job_takes: JobIdArg,
    /// How many `enum job_state_reason` values the release has (REASON_END).
    pub reason_count: u32,
    pub job_state_base: u32,
    pub job_states: &'static [State],
    pub state_flags: &'static [State],
    pub mem_per_cpu: u64,
    #[cfg_attr(not(test), allow(dead_code, reason = "checked by the layout tests"))]
    pub no_val: u32,
    #[cfg_attr(not(test), allow(dead_code, reason = "checked by the layout tests"))]
    pub no_val16: u16,
    pub no_val64: u64,
    pub errors: &'static [ErrorCode],
}

const PTR: usize = size_of::<*const u8>();

impl Layout {
    /// The number of a Slurm error by its C name; None when this release has no such error.
    pub fn error(&self, name: &str) -> Option<i32> {
        self.errors.iter().find(|e| e.name == name).map(|e| e.code)
    }

    /// The C name of an error number, if nsh's list has it.
    pub fn error_name(&self, code: i32) -> Option<&'static str> {
        self.errors.iter().find(|e| e.code == code).map(|e| e.name)
    }

    /// The state's words as squeue spells them: the base state, then each flag set.
    pub fn state_words(&self, job_state: u32) -> Vec<&'static str> {
        let base = job_state & self.job_state_base;
        let mut words: Vec<&'static str> = Vec::new();
        match self.job_states.iter().find(|s| s.value == base) {
            Some(s) => words.push(s.name),
            None => words.push("UNKNOWN"),
        }
        words.extend(
            self.state_flags
                .iter()
                .filter(|f| job_state & f.value != 0)
                .map(|f| f.name),
        );
        words
    }

    /// Whether every member nsh reads or writes has the size the Rust side assumes and lies
    /// inside its struct; the problem, naming the member, when not. A layout that fails this
    /// is never used, so a wrong file fails loudly instead of corrupting memory.
    pub fn check(&self) -> Result<(), String> {
        if self.arch != std::env::consts::ARCH {
            return Err(format!(
                "generated on {}, this nsh runs on {}",
                self.arch,
                std::env::consts::ARCH
            ));
        }
        let d = &self.job_desc;
        let i = &self.job_info;
        let m = &self.job_info_msg;
        let s = &self.step_id;
        let checks: &[(&str, usize, Field, &[usize])] = &[
            ("job_desc_msg_t.name", d.size, d.name, &[PTR]),
            ("job_desc_msg_t.script", d.size, d.script, &[PTR]),
            ("job_desc_msg_t.environment", d.size, d.environment, &[PTR]),
            ("job_desc_msg_t.env_size", d.size, d.env_size, &[4]),
            ("job_desc_msg_t.work_dir", d.size, d.work_dir, &[PTR]),
            ("job_desc_msg_t.std_out", d.size, d.std_out, &[PTR]),
            ("job_desc_msg_t.std_err", d.size, d.std_err, &[PTR]),
            (
                "job_desc_msg_t.cpus_per_task",
                d.size,
                d.cpus_per_task,
                &[2],
            ),
            (
                "job_desc_msg_t.pn_min_memory",
                d.size,
                d.pn_min_memory,
                &[8],
            ),
            ("job_desc_msg_t.user_id", d.size, d.user_id, &[4]),
            ("job_desc_msg_t.group_id", d.size, d.group_id, &[4]),
            ("job_desc_msg_t.exc_nodes", d.size, d.exc_nodes, &[PTR]),
            ("job_desc_msg_t.requeue", d.size, d.requeue, &[2]),
            ("slurm_job_info_t.job_id", i.size, i.job_id, &[4]),
            ("slurm_job_info_t.job_state", i.size, i.job_state, &[4]),
            ("slurm_job_info_t.exit_code", i.size, i.exit_code, &[4]),
            ("slurm_job_info_t.batch_host", i.size, i.batch_host, &[PTR]),
            ("slurm_job_info_t.nodes", i.size, i.nodes, &[PTR]),
            (
                "slurm_job_info_t.state_reason",
                i.size,
                i.state_reason,
                &[2, 4],
            ),
            ("slurm_job_info_t.state_desc", i.size, i.state_desc, &[PTR]),
            ("slurm_job_info_t.user_id", i.size, i.user_id, &[4]),
            ("slurm_job_info_t.num_cpus", i.size, i.num_cpus, &[4]),
            (
                "slurm_job_info_t.pn_min_memory",
                i.size,
                i.pn_min_memory,
                &[8],
            ),
            ("job_info_msg_t.record_count", m.size, m.record_count, &[4]),
            ("job_info_msg_t.job_array", m.size, m.job_array, &[PTR]),
            (
                "submit_response_msg_t.job_id",
                self.submit_response.size,
                self.submit_response.job_id,
                &[4],
            ),
            ("slurm_step_id_t.job_id", s.size, s.job_id, &[4]),
        ];
        for (what, struct_size, f, sizes) in checks {
            if !sizes.contains(&f.size) {
                return Err(format!(
                    "{what} has {} bytes, nsh expects {sizes:?}",
                    f.size
                ));
            }
            if f.offset
                .checked_add(f.size)
                .is_none_or(|end| end > *struct_size)
            {
                return Err(format!(
                    "{what} at {}+{} lies outside its struct of {struct_size} bytes",
                    f.offset, f.size
                ));
            }
        }
        if d.align == 0 || d.align > 8 || s.init.len() != s.size {
            return Err("job_desc_msg_t alignment or slurm_step_id_t initializer unusable".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc_fields(l: &Layout) -> Vec<(&'static str, Field)> {
        let d = &l.job_desc;
        vec![
            ("name", d.name),
            ("script", d.script),
            ("environment", d.environment),
            ("env_size", d.env_size),
            ("work_dir", d.work_dir),
            ("std_out", d.std_out),
            ("std_err", d.std_err),
            ("cpus_per_task", d.cpus_per_task),
            ("pn_min_memory", d.pn_min_memory),
            ("user_id", d.user_id),
            ("group_id", d.group_id),
            ("exc_nodes", d.exc_nodes),
            ("requeue", d.requeue),
        ]
    }

    fn info_fields(l: &Layout) -> Vec<(&'static str, Field)> {
        let i = &l.job_info;
        vec![
            ("job_id", i.job_id),
            ("job_state", i.job_state),
            ("exit_code", i.exit_code),
            ("batch_host", i.batch_host),
            ("nodes", i.nodes),
            ("state_reason", i.state_reason),
            ("state_desc", i.state_desc),
            ("user_id", i.user_id),
            ("num_cpus", i.num_cpus),
            ("pn_min_memory", i.pn_min_memory),
        ]
    }

    /// No two members of one struct may overlap: a copy-paste slip in a layout would.
    fn assert_disjoint(release: &str, what: &str, fields: &[(&str, Field)]) {
        for (n, (a, fa)) in fields.iter().enumerate() {
            for (b, fb) in &fields[n + 1..] {
                let apart = fa.offset + fa.size <= fb.offset || fb.offset + fb.size <= fa.offset;
                assert!(apart, "{release}: {what}.{a} overlaps {what}.{b}");
            }
        }
    }

    #[test]
    fn every_layout_passes_its_own_check_and_members_are_disjoint() {
        for l in SUPPORTED {
            assert_eq!(l.check(), Ok(()), "{}", l.release);
            assert_disjoint(l.release, "job_desc_msg_t", &desc_fields(l));
            assert_disjoint(l.release, "slurm_job_info_t", &info_fields(l));
        }
    }

    #[test]
    fn releases_are_newest_first_and_api_numbers_distinct() {
        let apis: Vec<u32> = SUPPORTED.iter().map(|l| l.api_current).collect();
        assert_eq!(apis, [45, 42, 38]);
        let releases: Vec<&str> = SUPPORTED.iter().map(|l| l.release).collect();
        assert_eq!(releases, ["26.05", "24.11", "22.05"]);
        for l in SUPPORTED {
            let major = l.version_number >> 16;
            let minor = (l.version_number >> 8) & 0xff;
            assert_eq!(l.release, format!("{major}.{minor:02}"));
        }
    }

    #[test]
    fn the_errors_and_constants_the_backend_needs_exist() {
        for l in SUPPORTED {
            for name in [
                "ESLURM_INVALID_JOB_ID",
                "ESLURM_ALREADY_DONE",
                "ESLURM_ACCOUNTING_POLICY",
                "ESLURM_USER_ID_MISSING",
                "SLURM_PROTOCOL_AUTHENTICATION_ERROR",
                "SLURMCTLD_COMMUNICATIONS_CONNECTION_ERROR",
                "ESLURM_INVALID_PARTITION_NAME",
            ] {
                assert!(l.error(name).is_some(), "{}: {name}", l.release);
            }
            assert_eq!(
                l.error("ESLURM_INVALID_JOB_ID"),
                Some(2017),
                "{}",
                l.release
            );
            assert_eq!(l.error_name(2017), Some("ESLURM_INVALID_JOB_ID"));
            assert_eq!(l.mem_per_cpu, 1 << 63);
            assert_eq!(
                (l.no_val, l.no_val16, l.no_val64),
                (0xffff_fffe, 0xfffe, u64::MAX - 1)
            );
            assert_eq!(l.job_state_base, 0xff);
        }
        // 26.05 dropped it; the backend must not rely on it existing.
        assert_eq!(
            v26_05::LAYOUT.error("ESLURM_ERROR_ON_DESC_TO_RECORD_COPY"),
            None
        );
        assert!(
            v22_05::LAYOUT
                .error("ESLURM_ERROR_ON_DESC_TO_RECORD_COPY")
                .is_some()
        );
    }

    #[test]
    fn the_job_argument_follows_the_headers() {
        assert_eq!(v22_05::LAYOUT.load_job_takes, JobIdArg::U32);
        assert_eq!(v24_11::LAYOUT.kill_job_takes, JobIdArg::U32);
        assert_eq!(v26_05::LAYOUT.load_job_takes, JobIdArg::StepIdByValue);
        assert_eq!(v26_05::LAYOUT.kill_job_takes, JobIdArg::StepIdByValue);
    }

    #[test]
    fn state_words_name_the_base_then_the_flags() {
        for l in SUPPORTED {
            let r = l.release;
            assert_eq!(l.state_words(0), ["PENDING"], "{r}");
            assert_eq!(l.state_words(1 | 0x4000), ["RUNNING", "CONFIGURING"], "{r}");
            assert_eq!(
                l.state_words(4 | 0x8000),
                ["CANCELLED", "COMPLETING"],
                "{r}"
            );
            assert_eq!(l.state_words(3), ["COMPLETED"], "{r}");
            assert_eq!(l.state_words(0xb), ["OUT_OF_MEMORY"], "{r}");
            assert_eq!(l.state_words(0x400), ["PENDING", "REQUEUED"], "{r}");
            assert_eq!(l.state_words(0x7f), ["UNKNOWN"], "{r}");
        }
        // Bit 9 changed meaning in 24.11.
        assert_eq!(
            v22_05::LAYOUT.state_words(5 | 0x200),
            ["FAILED", "UPDATE_DB"]
        );
        assert_eq!(
            v26_05::LAYOUT.state_words(5 | 0x200),
            ["FAILED", "GETENV_FAILED"]
        );
    }
}

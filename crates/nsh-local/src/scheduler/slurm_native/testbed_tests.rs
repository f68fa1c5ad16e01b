//! The FFI layer against a real Slurm: run inside the testbed's submit host (libslurm,
//! munge and slurmctld reachable), one test binary for every generation:
//!
//!     NSH_TESTBED_INSTANCE=X scripts/slurm-native-ffi-test --generation sid|trixie|bookworm
//!
//! (builds the test binary, puts it into target/dist, which the testbed shows as
//! /opt/nsh/bin, and runs this test there as root).

use std::time::{Duration, Instant};

use super::ffi::{JobDesc, JobInfo, Libslurm, LoadError, state_words};

fn user(name: &str) -> (u32, u32) {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: getpwnam with a valid C string; the record is read at once, single-threaded use.
    let pw = unsafe { libc::getpwnam(c.as_ptr()) };
    assert!(
        !pw.is_null(),
        "no user {name} on this host: run inside the testbed"
    );
    // SAFETY: non-NULL passwd record from getpwnam.
    unsafe { ((*pw).pw_uid, (*pw).pw_gid) }
}

fn job(script: &str) -> JobDesc {
    let (uid, gid) = user("alice");
    JobDesc {
        name: "nsh-ffi-test".into(),
        script: script.into(),
        environment: vec!["PATH=/usr/bin:/bin".into()],
        work_dir: "/tmp".into(),
        std_out: "/dev/null".into(),
        std_err: "/dev/null".into(),
        cpus_per_task: Some(1),
        min_memory_mb: Some(100),
        memory_per_cpu: false,
        user_id: Some(uid),
        group_id: Some(gid),
        exclude_nodes: None,
    }
}

/// Polls until the job has left PENDING/RUNNING/SUSPENDED and is no longer COMPLETING.
fn wait_ended(lib: &Libslurm, id: u32, limit: Duration) -> JobInfo {
    let start = Instant::now();
    loop {
        let info = lib
            .load_job(id)
            .expect("slurm_load_job")
            .expect("job known");
        let words = state_words(lib, info.job_state);
        let active = ["PENDING", "RUNNING", "SUSPENDED", "COMPLETING"];
        if !words.iter().any(|w| active.contains(w)) {
            return info;
        }
        assert!(
            start.elapsed() < limit,
            "job {id} still {words:?} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn scontrol_release() -> String {
    let out = std::process::Command::new("scontrol")
        .arg("--version")
        .output()
        .expect("scontrol --version");
    // "slurm 26.05.5" -> "26.05"
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let version = text.split_whitespace().nth(1).unwrap_or_default();
    version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".")
}

struct CancelOnDrop<'a>(&'a Libslurm, u32);

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill_job(self.1, libc::SIGKILL as u16);
    }
}

#[test]
#[ignore = "needs the testbed: scripts/slurm-native-ffi-test"]
fn against_the_testbed() {
    let lib = Libslurm::open(None, None).expect("open libslurm");
    eprintln!("loaded {} as Slurm {}", lib.library_path(), lib.release());
    assert_eq!(lib.release(), scontrol_release());

    let (uid, _) = user("alice");
    let short = lib
        .submit(&job("#!/bin/sh\nsleep 2\n"))
        .expect("submit sleep 2");
    // The other fields: node exclusion, memory per CPU.
    let mut other = job("#!/bin/sh\nexit 3\n");
    other.exclude_nodes = Some("node1".into());
    other.min_memory_mb = Some(50);
    other.memory_per_cpu = true;
    let failing = lib.submit(&other).expect("submit exit 3");
    let long = lib
        .submit(&job("#!/bin/sh\nsleep 300\n"))
        .expect("submit sleep 300");
    // Cancelled even when an assertion fails first, so no sleep 300 holds a node.
    let _cancel = CancelOnDrop(&lib, long);
    assert!(short != failing && failing != long);

    let info = wait_ended(&lib, short, Duration::from_secs(90));
    assert_eq!(info.job_id, short);
    assert_eq!(state_words(&lib, info.job_state), ["COMPLETED"], "{info:?}");
    assert_eq!(
        (info.exit_code, info.user_id, info.num_cpus),
        (0, uid, 1),
        "{info:?}"
    );
    assert_eq!(info.pn_min_memory, 100, "{info:?}");
    assert!(
        info.batch_host.is_some() && info.nodes.is_some(),
        "{info:?}"
    );

    let info = wait_ended(&lib, failing, Duration::from_secs(90));
    assert_eq!(state_words(&lib, info.job_state), ["FAILED"], "{info:?}");
    // A raw wait status: exit 3 is 3 << 8.
    assert_eq!(info.exit_code, 3 << 8, "{info:?}");
    assert_eq!(info.nodes.as_deref(), Some("node2"), "{info:?}");
    assert_eq!(
        info.pn_min_memory,
        50 | lib.layout().mem_per_cpu,
        "{info:?}"
    );

    // No node has 1000 CPUs: up to 24.11 slurmctld refuses the job (an error with Slurm's
    // number and text), 26.05 queues it with a reason.
    let mut huge = job("#!/bin/sh\ntrue\n");
    huge.cpus_per_task = Some(1000);
    match lib.submit(&huge) {
        Err(e) => {
            eprintln!("1000 CPUs: {e} ({:?})", lib.layout().error_name(e.code));
            assert!(e.code > 0 && !e.message.is_empty(), "{e}");
            assert!(lib.layout().error_name(e.code).is_some(), "{e}");
        }
        Ok(id) => {
            let _cancel = CancelOnDrop(&lib, id);
            let info = lib.load_job(id).expect("load_job").expect("job known");
            eprintln!("1000 CPUs: job {id} {info:?}");
            assert_eq!(state_words(&lib, info.job_state), ["PENDING"], "{info:?}");
            assert!(info.state_reason.is_some(), "{info:?}");
        }
    }
    let e = lib
        .kill_job(4_000_000_000, 9)
        .expect_err("kill of an unknown job");
    assert_eq!(
        lib.layout().error_name(e.code),
        Some("ESLURM_INVALID_JOB_ID"),
        "{e}"
    );
    assert!(!e.message.is_empty(), "{e}");

    lib.kill_job(long, libc::SIGKILL as u16)
        .expect("slurm_kill_job");
    let info = wait_ended(&lib, long, Duration::from_secs(60));
    assert_eq!(
        state_words(&lib, info.job_state)[0],
        "CANCELLED",
        "{info:?}"
    );
    let again = lib
        .kill_job(long, libc::SIGKILL as u16)
        .expect_err("kill of an ended job");
    assert_eq!(
        lib.layout().error_name(again.code),
        Some("ESLURM_ALREADY_DONE"),
        "{again}"
    );

    assert_eq!(
        lib.load_job(4_000_000_000)
            .expect("load_job of an unknown id"),
        None
    );

    let bogus = std::path::Path::new("/nonexistent/slurm.conf");
    match Libslurm::open(None, Some(bogus)) {
        Err(e @ LoadError::SlurmConf { .. }) => {
            assert!(e.to_string().contains("/nonexistent/slurm.conf"), "{e}")
        }
        Err(e) => panic!("wrong error for a bogus slurm.conf: {e}"),
        Ok(_) => panic!("a bogus slurm.conf was accepted"),
    }
}

//! The submit request: a `job_desc_msg_t` buffer of the layout's size, filled by libslurm's
//! own initialiser, then nsh's fields written at the layout's offsets.

use std::ffi::{CString, c_char, c_void};

use super::JobDesc;
use super::library::InitJobDescFn;
use crate::scheduler::slurm_native::layouts::{Field, Layout};

/// The buffer and everything its pointers point to: all of it lives until dropped, after
/// the submit call returned.
pub(super) struct JobDescBuffer {
    // u64 words: 8-aligned, which Layout::check requires of job_desc_msg_t.
    words: Vec<u64>,
    _strings: Vec<CString>,
    _env: Vec<*const c_char>,
}

fn c_string(what: &str, s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("the job's {what} contains a NUL byte"))
}

impl JobDescBuffer {
    /// Builds the request; Err names the field nsh could not pass to C.
    pub(super) fn new(layout: &Layout, init: InitJobDescFn, job: &JobDesc) -> Result<Self, String> {
        let d = &layout.job_desc;
        let mut buf = JobDescBuffer {
            words: vec![0u64; d.size.div_ceil(8)],
            _strings: Vec::new(),
            _env: Vec::new(),
        };
        // SAFETY: the buffer has job_desc_msg_t's size and alignment for this release;
        // slurm_init_job_desc_msg only writes inside it (defaults, NO_VAL markers).
        unsafe { init(buf.base().cast::<c_void>()) };
        for (what, field, value) in [
            ("name", d.name, &job.name),
            ("script", d.script, &job.script),
            ("work_dir", d.work_dir, &job.work_dir),
            ("std_out", d.std_out, &job.std_out),
            ("std_err", d.std_err, &job.std_err),
        ] {
            buf.put_string(what, field, value)?;
        }
        if let Some(ex) = &job.exclude_nodes {
            buf.put_string("exclude_nodes", d.exc_nodes, ex)?;
        }
        buf.put_environment(layout, &job.environment)?;
        if let Some(c) = job.cpus_per_task {
            buf.put(d.cpus_per_task, &c.to_ne_bytes());
        }
        if let Some(mb) = job.min_memory_mb {
            if mb & layout.mem_per_cpu != 0 || mb >= layout.no_val64 {
                return Err(format!(
                    "the job's memory ({mb} MB) is out of Slurm's range"
                ));
            }
            let v = if job.memory_per_cpu {
                mb | layout.mem_per_cpu
            } else {
                mb
            };
            buf.put(d.pn_min_memory, &v.to_ne_bytes());
        }
        if let Some(uid) = job.user_id {
            buf.put(d.user_id, &uid.to_ne_bytes());
        }
        if let Some(gid) = job.group_id {
            buf.put(d.group_id, &gid.to_ne_bytes());
        }
        // nsh resubmits lost builds itself; Slurm requeueing one would run it twice.
        buf.put(d.requeue, &0u16.to_ne_bytes());
        Ok(buf)
    }

    pub(super) fn base(&mut self) -> *mut u8 {
        self.words.as_mut_ptr().cast::<u8>()
    }

    /// Writes `bytes` at the field; its size was checked against the layout at load.
    fn put(&mut self, f: Field, bytes: &[u8]) {
        assert_eq!(f.size, bytes.len(), "job_desc field size (Layout::check)");
        let end = f.offset + f.size;
        let all = self.words.as_mut_slice();
        // SAFETY: viewing the u64 buffer as bytes; same memory and length in bytes.
        let raw =
            unsafe { std::slice::from_raw_parts_mut(all.as_mut_ptr().cast::<u8>(), all.len() * 8) };
        raw[f.offset..end].copy_from_slice(bytes);
    }

    fn put_ptr(&mut self, f: Field, p: *const c_void) {
        self.put(f, &(p as usize).to_ne_bytes());
    }

    fn put_string(&mut self, what: &str, f: Field, s: &str) -> Result<(), String> {
        let c = c_string(what, s)?;
        // The CString's heap buffer does not move when the CString is moved into the Vec.
        self.put_ptr(f, c.as_ptr().cast());
        self._strings.push(c);
        Ok(())
    }

    fn put_environment(&mut self, layout: &Layout, env: &[String]) -> Result<(), String> {
        let d = &layout.job_desc;
        let count = u32::try_from(env.len()).map_err(|_| "too many environment variables")?;
        for e in env {
            let c = c_string("environment", e)?;
            self._env.push(c.as_ptr());
            self._strings.push(c);
        }
        self._env.push(std::ptr::null());
        self.put_ptr(d.environment, self._env.as_ptr().cast());
        self.put(d.env_size, &count.to_ne_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::slurm_native::layouts::SUPPORTED;

    unsafe extern "C" fn fake_init(p: *mut c_void) {
        // SAFETY: the test passes a buffer of at least 8 bytes.
        unsafe { p.cast::<u8>().write(0xaa) };
    }

    fn job() -> JobDesc {
        JobDesc {
            name: "nsh-x".into(),
            script: "#!/bin/sh\ntrue\n".into(),
            environment: vec!["A=1".into(), "B=2".into()],
            work_dir: "/tmp".into(),
            std_out: "/dev/null".into(),
            std_err: "/dev/null".into(),
            cpus_per_task: Some(3),
            min_memory_mb: Some(100),
            memory_per_cpu: true,
            user_id: Some(1000),
            group_id: Some(1001),
            exclude_nodes: None,
        }
    }

    #[test]
    fn fields_land_at_the_layouts_offsets() {
        for l in SUPPORTED {
            let d = &l.job_desc;
            let mut b = JobDescBuffer::new(l, fake_init, &job()).unwrap();
            let base = b.base();
            // SAFETY: reading inside the buffer at checked offsets; pointers are ours.
            unsafe {
                use super::super::job_info::{copy_string, read_ptr, read_uint};
                assert_eq!(base.read(), 0xaa, "{}: initialiser ran first", l.release);
                assert_eq!(read_uint(base, d.cpus_per_task), 3);
                assert_eq!(read_uint(base, d.pn_min_memory), 100 | l.mem_per_cpu);
                assert_eq!(read_uint(base, d.user_id), 1000);
                assert_eq!(read_uint(base, d.group_id), 1001);
                assert_eq!(read_uint(base, d.env_size), 2);
                assert_eq!(read_uint(base, d.requeue), 0);
                let s = copy_string(read_ptr(base, d.work_dir).cast());
                assert_eq!(s.as_deref(), Some("/tmp"));
                let env = read_ptr(base, d.environment).cast::<*const c_char>();
                assert_eq!(copy_string(*env.add(1)).as_deref(), Some("B=2"));
                assert!((*env.add(2)).is_null());
            }
        }
    }

    #[test]
    fn a_nul_byte_or_an_impossible_memory_is_refused_naming_the_field() {
        let l = SUPPORTED[0];
        let mut j = job();
        j.work_dir = "/tm\0p".into();
        let e = JobDescBuffer::new(l, fake_init, &j).err().unwrap();
        assert!(e.contains("work_dir"), "{e}");
        let mut j = job();
        j.min_memory_mb = Some(u64::MAX);
        let e = JobDescBuffer::new(l, fake_init, &j).err().unwrap();
        assert!(e.contains("memory"), "{e}");
    }
}

//! Reading libslurm's responses: integers at the layout's offsets, strings copied out.

use std::ffi::{c_char, c_void};

use super::JobInfo;
use super::library::StringOfFn;
use crate::scheduler::slurm_native::layouts::{Field, Layout};

/// The most of one string from libslurm nsh copies; the rest is cut (strings from the
/// cluster are untrusted and only ever shown or compared).
pub(super) const MAX_STRING: usize = 4096;

/// A copy of the C string at `p`, at most MAX_STRING bytes, lossy UTF-8; None for NULL.
///
/// # Safety
/// `p` is NULL or points to readable memory holding a NUL within MAX_STRING bytes or at
/// least MAX_STRING readable bytes.
pub(super) unsafe fn copy_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per this function's contract; strnlen reads no further than MAX_STRING.
    let len = unsafe { libc::strnlen(p, MAX_STRING) };
    // SAFETY: `len` bytes from `p` were just found readable.
    let bytes = unsafe { std::slice::from_raw_parts(p.cast::<u8>(), len) };
    Some(String::from_utf8_lossy(bytes).into_owned())
}

/// Reads an unsigned integer of the field's size (checked against the layout at load).
///
/// # Safety
/// `base` points to a struct of the layout's size for this field's struct.
pub(super) unsafe fn read_uint(base: *const u8, f: Field) -> u64 {
    // SAFETY: offset + size lies inside the struct (Layout::check); reads are unaligned-safe.
    unsafe {
        let p = base.add(f.offset);
        match f.size {
            1 => u64::from(p.read()),
            2 => u64::from(p.cast::<u16>().read_unaligned()),
            4 => u64::from(p.cast::<u32>().read_unaligned()),
            _ => p.cast::<u64>().read_unaligned(),
        }
    }
}

/// # Safety
/// As `read_uint`, and the field is a pointer member.
pub(super) unsafe fn read_ptr(base: *const u8, f: Field) -> *const c_void {
    // SAFETY: per contract; Layout::check verified the member has pointer size.
    unsafe { base.add(f.offset).cast::<*const c_void>().read_unaligned() }
}

/// # Safety
/// As `read_ptr`, and a non-NULL pointer there is a C string libslurm owns.
unsafe fn read_string(base: *const u8, f: Field) -> Option<String> {
    // SAFETY: per contract.
    unsafe { copy_string(read_ptr(base, f).cast()) }
}

fn u32_of(v: u64) -> u32 {
    u32::try_from(v).unwrap_or(u32::MAX)
}

/// Copies one `slurm_job_info_t` record out; nothing in the result points into it.
///
/// # Safety
/// `rec` points to a `slurm_job_info_t` of `layout`'s release, alive for the call.
pub(super) unsafe fn read_record(
    layout: &Layout,
    rec: *const u8,
    reason_string: StringOfFn,
) -> JobInfo {
    let i = &layout.job_info;
    // SAFETY: `rec` is a record of this layout (contract); each field was checked at load.
    unsafe {
        let reason = read_uint(rec, i.state_reason);
        // The string call indexes a table by the enum: never ask beyond its end.
        let state_reason = match i32::try_from(reason) {
            Ok(r) if reason < u64::from(layout.reason_count) => {
                copy_string(reason_string(r)).filter(|r| r != "None")
            }
            _ => Some(format!("reason {reason}")),
        };
        JobInfo {
            job_id: u32_of(read_uint(rec, i.job_id)),
            job_state: u32_of(read_uint(rec, i.job_state)),
            exit_code: u32_of(read_uint(rec, i.exit_code)),
            batch_host: read_string(rec, i.batch_host).filter(|s| !s.is_empty()),
            nodes: read_string(rec, i.nodes).filter(|s| !s.is_empty()),
            state_reason,
            state_desc: read_string(rec, i.state_desc).filter(|s| !s.is_empty()),
            user_id: u32_of(read_uint(rec, i.user_id)),
            num_cpus: u32_of(read_uint(rec, i.num_cpus)),
            pn_min_memory: read_uint(rec, i.pn_min_memory),
        }
    }
}

/// The record for job `id` in a `job_info_msg_t`, copied out; None when it has none.
///
/// # Safety
/// `msg` points to a `job_info_msg_t` of `layout`'s release as slurm_load_job returned it.
pub(super) unsafe fn find_job(
    layout: &Layout,
    msg: *const u8,
    id: u32,
    reason_string: StringOfFn,
) -> Option<JobInfo> {
    let m = &layout.job_info_msg;
    // SAFETY: per contract: record_count records of job_info.size bytes at job_array.
    unsafe {
        let count = read_uint(msg, m.record_count);
        let array = read_ptr(msg, m.job_array).cast::<u8>();
        if array.is_null() {
            return None;
        }
        // A job array's tasks could all come back; nsh submits single jobs, so pick its own.
        (0..count.min(u64::from(u32::MAX)) as usize)
            .map(|n| array.add(n * layout.job_info.size))
            .find(|rec| read_uint(*rec, layout.job_info.job_id) == u64::from(id))
            .map(|rec| read_record(layout, rec, reason_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_copied_bounded_and_lossy() {
        let long = vec![b'x'; MAX_STRING + 100];
        let mut c = long.clone();
        c.push(0);
        // SAFETY: `c` is NUL-terminated and alive.
        let s = unsafe { copy_string(c.as_ptr().cast()) }.unwrap();
        assert_eq!(s.len(), MAX_STRING);
        let bad = b"ok\xffend\0";
        // SAFETY: NUL-terminated static bytes.
        assert_eq!(
            unsafe { copy_string(bad.as_ptr().cast()) }.unwrap(),
            "ok\u{fffd}end"
        );
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { copy_string(std::ptr::null()) }, None);
    }

    #[test]
    fn integers_are_read_by_the_size_the_layout_gives() {
        let mut buf = [0u8; 16];
        buf[2..4].copy_from_slice(&0x1234u16.to_ne_bytes());
        buf[4..8].copy_from_slice(&0xdead_beefu32.to_ne_bytes());
        buf[8..16].copy_from_slice(&(1u64 << 63 | 5).to_ne_bytes());
        let at = |offset, size| Field { offset, size };
        // SAFETY: every field lies inside `buf`.
        unsafe {
            assert_eq!(read_uint(buf.as_ptr(), at(2, 2)), 0x1234);
            assert_eq!(read_uint(buf.as_ptr(), at(4, 4)), 0xdead_beef);
            assert_eq!(read_uint(buf.as_ptr(), at(8, 8)), 1 << 63 | 5);
        }
    }
}

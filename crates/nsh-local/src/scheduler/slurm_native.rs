//! `job-scheduler = slurm-native`: Slurm through libslurm, opened at run time.

// Until the backend in this file uses them.
#[allow(dead_code)]
pub mod ffi;
#[allow(dead_code)]
pub mod layouts;
#[cfg(test)]
mod testbed_tests;

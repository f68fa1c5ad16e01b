//! TEMPORARY STUB (replaced by the FFI layer before merge).
#![allow(dead_code, unused_variables)]
use std::path::Path;
pub struct Libslurm;
#[derive(Debug)]
pub struct LoadError(pub String);
impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
pub struct JobDesc {
    pub name: String,
    pub script: String,
    pub environment: Vec<String>,
    pub work_dir: String,
    pub std_out: String,
    pub std_err: String,
    pub cpus_per_task: Option<u16>,
    pub min_memory_mb: Option<u64>,
    pub memory_per_cpu: bool,
    pub user_id: Option<u32>,
    pub group_id: Option<u32>,
    pub exclude_nodes: Option<String>,
}
pub struct JobInfo {
    pub job_id: u32,
    pub job_state: u32,
    pub exit_code: u32,
    pub batch_host: Option<String>,
    pub nodes: Option<String>,
    pub state_reason: Option<String>,
    pub state_desc: Option<String>,
    pub user_id: u32,
    pub num_cpus: u32,
    pub pn_min_memory: u64,
}
#[derive(Debug)]
pub struct SlurmError {
    pub code: i32,
    pub message: String,
    pub call: &'static str,
}
impl Libslurm {
    pub fn open(library: Option<&Path>, slurm_conf: Option<&Path>) -> Result<Libslurm, LoadError> {
        Err(LoadError("stub".into()))
    }
    pub fn release(&self) -> &str {
        "0"
    }
    pub fn library_path(&self) -> String {
        String::new()
    }
    pub fn submit(&self, job: &JobDesc) -> Result<u32, SlurmError> {
        todo!()
    }
    pub fn load_job(&self, id: u32) -> Result<Option<JobInfo>, SlurmError> {
        todo!()
    }
    pub fn kill_job(&self, id: u32, signal: u16) -> Result<(), SlurmError> {
        todo!()
    }
}
pub fn state_words(lib: &Libslurm, job_state: u32) -> Vec<&'static str> {
    vec![]
}

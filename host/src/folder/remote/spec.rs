//! A job's spec, as the collector stores it and the workers read it: what
//! a worker needs to run the task as the local run would.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::exec::builder::Isolation;
use crate::limits::Limits;

/// What a worker needs besides the module.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct Spec {
    /// The task's name (in error messages, as locally).
    pub task: String,
    /// `instance` or `process`.
    pub isolation: String,
    pub limits: Limits,
    /// Extra attempts after a transient failure (timeout, worker crash).
    pub retries: u32,
}

impl Spec {
    pub(crate) fn isolation(&self) -> Isolation {
        match self.isolation.as_str() {
            "process" => Isolation::Process,
            _ => Isolation::Instance,
        }
    }

    pub(crate) fn isolation_name(isolation: Isolation) -> &'static str {
        match isolation {
            Isolation::Process => "process",
            Isolation::Instance => "instance",
        }
    }
}

/// The job id: the same module, spec and output folder give the same id,
/// so that running the same command again resumes the same job.
pub(crate) fn job_id(module: &str, spec: &Spec, output: &std::path::Path) -> String {
    let mut h = Sha256::new();
    h.update(module.as_bytes());
    h.update(serde_json::to_vec(spec).unwrap_or_default());
    let output = std::fs::canonicalize(output).unwrap_or_else(|_| output.to_path_buf());
    h.update(std::os::unix::ffi::OsStrExt::as_bytes(output.as_os_str()));
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        h.update(host.trim().as_bytes());
    }
    sandpool_cluster::schema::hex(&h.finalize()[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_id_follows_the_spec_and_the_output() {
        let spec = Spec {
            task: "t".into(),
            isolation: "instance".into(),
            limits: Limits::default(),
            retries: 0,
        };
        let a = job_id("m", &spec, std::path::Path::new("/x/out"));
        assert_eq!(a, job_id("m", &spec, std::path::Path::new("/x/out")));
        assert_ne!(a, job_id("m", &spec, std::path::Path::new("/x/out2")));
        let other = Spec { retries: 1, ..spec };
        assert_ne!(a, job_id("m", &other, std::path::Path::new("/x/out")));
        assert_eq!(other.isolation(), Isolation::Instance);
    }
}

//! What nodes need from the machine, in one place: what a kind needs to run ([`Resources`]),
//! what a batch job of a kind reserves by default ([`BatchDefaults`]), the YAML's per-node
//! overrides ([`ResourceSpec`]) and the two resolved into one reservation ([`BatchResources`]).

use serde::{Deserialize, Serialize};

/// What a node needs from the machine while it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resources {
    /// Accelerators the node uses (0 or 1 on one device; more for data parallel).
    pub gpus: u32,
    /// Device memory a one-device node needs at most, in MiB, when the kind can say: with it, the
    /// local executor lets the node share a GPU with others whose needs fit beside it (see
    /// [`crate::gpu`]). `None`: the node holds its device alone (trainings).
    #[serde(default)]
    pub gpu_mem_mb: Option<u64>,
}

/// A kind's default batch reservation (see [`crate::node::Node::batch_defaults`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchDefaults {
    /// CPU cores.
    pub cpus: u32,
    /// Memory in GiB.
    pub mem_gb: u32,
    /// Wall time in minutes.
    pub minutes: u32,
}

impl BatchDefaults {
    /// A reservation of `cpus` cores, `mem_gb` GiB and `minutes` of wall time.
    pub const fn new(cpus: u32, mem_gb: u32, minutes: u32) -> BatchDefaults {
        BatchDefaults {
            cpus,
            mem_gb,
            minutes,
        }
    }
}

impl Resources {
    /// One accelerator (when the run's device is one), held alone.
    pub const GPU: Resources = Resources {
        gpus: 1,
        gpu_mem_mb: None,
    };

    /// One accelerator, shared with other nodes while `mb` MiB fits beside them.
    pub const fn gpu_shared(mb: u64) -> Resources {
        Resources {
            gpus: 1,
            gpu_mem_mb: Some(mb),
        }
    }
}

impl Default for BatchDefaults {
    fn default() -> Self {
        BatchDefaults {
            cpus: 2,
            mem_gb: 8,
            minutes: 60,
        }
    }
}

/// Per-node resource overrides from the YAML (`resources:`), used by the schedulers.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSpec {
    /// Accelerators the node holds (overrides the kind's default).
    pub gpus: Option<u32>,
    /// Device memory the node needs (`6G`, `512M`): lets it share a GPU of the local executor's
    /// pool (`--gpu-mem`); overrides the kind's estimate and the last run's measured peak.
    pub gpu_mem: Option<String>,
    /// CPU cores (Slurm `--cpus-per-task`).
    pub cpus: Option<u32>,
    /// Memory (Slurm `--mem`, e.g. `16G`).
    pub mem: Option<String>,
    /// Wall-time limit (Slurm `--time`, e.g. `2:00:00`).
    pub time: Option<String>,
    /// Slurm partition.
    pub partition: Option<String>,
    /// Slurm account.
    pub account: Option<String>,
    /// Slurm QOS.
    pub qos: Option<String>,
    /// Slurm constraint.
    pub constraint: Option<String>,
}

/// A batch job's reservation, resolved.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BatchResources {
    /// GPUs.
    pub gpus: u32,
    /// CPU cores.
    pub cpus: u32,
    /// Memory (Slurm syntax, e.g. `16G`).
    pub mem: String,
    /// Wall time (Slurm syntax, e.g. `4:00:00`).
    pub time: String,
    /// Partition.
    pub partition: Option<String>,
    /// Account.
    pub account: Option<String>,
    /// QOS.
    pub qos: Option<String>,
    /// Constraint.
    pub constraint: Option<String>,
}

impl BatchResources {
    /// The kind's defaults overridden by the YAML's `resources:`.
    pub fn resolve(kind: &dyn crate::node::Node, gpus: u32, spec: &ResourceSpec) -> BatchResources {
        let d = kind.batch_defaults();
        let time = format!("{}:{:02}:00", d.minutes / 60, d.minutes % 60);
        BatchResources {
            gpus: spec.gpus.unwrap_or(gpus),
            cpus: spec.cpus.unwrap_or(d.cpus),
            mem: spec.mem.clone().unwrap_or_else(|| format!("{}G", d.mem_gb)),
            time: spec.time.clone().unwrap_or(time),
            partition: spec.partition.clone(),
            account: spec.account.clone(),
            qos: spec.qos.clone(),
            constraint: spec.constraint.clone(),
        }
    }
}

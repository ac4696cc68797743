//! Executors: what computes a ready task. [`local::LocalExecutor`] runs it on a thread of this
//! process; [`slurm::SlurmExecutor`] submits it as a batch job running `cedm exec KEY`. The
//! scheduler (`crate::run`) decides what runs and when; an executor only computes.

use std::sync::atomic::AtomicBool;

use crate::event::Reporter;
use crate::node::Registry;
use crate::task::{Task, TaskError, TaskOutcome};

pub mod local;
pub mod slurm;

pub use local::LocalExecutor;

/// What the engine needs to run a plan.
pub struct Engine<'a> {
    /// The cache.
    pub cache: &'a cedm_cache::Cache,
    /// Node kinds.
    pub registry: &'a Registry,
    /// Where events go.
    pub reporter: &'a dyn Reporter,
}

/// Something that computes a task (in this process, or as a batch job).
pub trait Executor: Send + Sync {
    /// Whether tasks run on this machine, sharing its accelerator: the scheduler then holds a
    /// device token per GPU node so that two trainings do not share a GPU by accident. A batch
    /// executor leaves GPUs to the batch system.
    fn shares_host_gpu(&self) -> bool;

    /// Compute the task and return its record (publishing it into the cache).
    ///
    /// # Errors
    /// When the task fails.
    fn execute(
        &self,
        task: &Task,
        engine: &Engine<'_>,
        stop: &AtomicBool,
    ) -> Result<TaskOutcome, TaskError>;
}

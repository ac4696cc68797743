//! Executors: what computes a ready task. [`local::LocalExecutor`] runs it on a thread of this
//! process; [`slurm::SlurmExecutor`] submits it as a batch job and [`ray::RayExecutor`] as a Ray
//! job, each running `cedm exec KEY`. The scheduler (`crate::run`) decides what runs and when;
//! an executor only computes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use cedm_cache::{Failure, HitCheck, RunMeta};

use crate::event::{Event, EventKind, Reporter};
use crate::node::Registry;
use crate::task::{Task, TaskError, TaskOutcome};

pub mod local;
pub mod ray;
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

/// Report a line about a task's job (submitted, running, resubmitted) as a log event.
pub(crate) fn report_line(engine: &Engine<'_>, task: &Task, line: &str) {
    engine.reporter.event(&Event {
        instance: task.instance.clone(),
        node: task.node.clone(),
        kind: EventKind::Log {
            line: line.to_string(),
        },
    });
}

/// A batch job's `cedm exec` exited 0: its record must be in the cache.
pub(crate) fn job_succeeded(
    task: &Task,
    engine: &Engine<'_>,
    job: &str,
    log: &Path,
) -> Result<TaskOutcome, TaskError> {
    match engine.cache.check(&task.key)? {
        HitCheck::Hit(r) => Ok(TaskOutcome::Ran(r)),
        _ => Err(TaskError::Node(format!(
            "{job} exited 0 but its result is not in the cache (log: {})",
            log.display()
        ))),
    }
}

/// A batch job's `cedm exec` exited with `code` (not 0, not 130): the failure it recorded, with
/// the job and its log.
pub(crate) fn job_exited(
    task: &Task,
    engine: &Engine<'_>,
    job: &str,
    code: i32,
    log: &Path,
) -> TaskError {
    let error = match engine.cache.failure(&task.key) {
        Ok(Some(f)) => f.error,
        _ => format!("{job} exited with {code}"),
    };
    TaskError::Node(format!("{error} ({job}, log: {})", log.display()))
}

/// A batch job ended without `cedm exec` saying how (killed, out of memory, the node failed):
/// record the failure with the job's log in the cache, so that `cedm cache show` shows it.
pub(crate) fn job_lost(
    task: &Task,
    engine: &Engine<'_>,
    executor: &str,
    error: String,
    log: &Path,
) -> TaskError {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let meta = RunMeta {
        experiment: task.experiment.clone(),
        node: task.node.clone(),
        instance: task.instance.clone(),
        started: cedm_cache::rfc3339_now(),
        seconds: 0.0,
        device: task.device.to_string(),
        host: String::new(),
        cedm_version: env!("CARGO_PKG_VERSION").to_string(),
        executor: executor.to_string(),
        log: engine.cache.put_bytes(text.as_bytes()).ok(),
        peak_rss: None,
        stats: BTreeMap::new(),
        resume: None,
    };
    let _ = engine.cache.put_failure(&Failure {
        key: task.key,
        kind: task.kind.clone(),
        error: error.clone(),
        meta,
    });
    TaskError::Node(error)
}

/// A batch run's id (`<pid>-<UTC time>`, unique per driver) and its folder
/// `<cache>/<executor>/<id>/`, created, for job scripts, logs and exit codes.
///
/// # Errors
/// When the folder cannot be created.
pub(crate) fn run_dir(
    cache: &cedm_cache::Cache,
    executor: &str,
) -> Result<(String, std::path::PathBuf), TaskError> {
    let id = format!(
        "{}-{}",
        std::process::id(),
        cedm_cache::rfc3339_now()
            .replace([':', '-'], "")
            .replace('T', "-")
            .trim_end_matches('Z')
    );
    let dir = cache.root().join(executor).join(&id);
    std::fs::create_dir_all(&dir)
        .map_err(|e| TaskError::Node(format!("creating {}: {e}", dir.display())))?;
    Ok((id, dir))
}

/// A shell word.
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

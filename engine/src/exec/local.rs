//! The local executor: tasks run on threads of this process.

use std::sync::atomic::AtomicBool;

use super::{Engine, Executor};
use crate::task::{Task, TaskError, TaskOutcome, execute_locked};

/// Runs tasks in this process, one thread each.
pub struct LocalExecutor;

impl Executor for LocalExecutor {
    fn shares_host_gpu(&self) -> bool {
        true
    }
    fn execute(
        &self,
        task: &Task,
        engine: &Engine<'_>,
        stop: &AtomicBool,
    ) -> Result<TaskOutcome, TaskError> {
        execute_locked(
            task,
            engine.cache,
            engine.registry,
            engine.reporter,
            stop,
            "local",
        )
    }
}

//! cedm-engine: experiments as content-addressed dataflow graphs.
//!
//! - [`spec`]: the YAML experiment format, parsed with spans.
//! - [`interp`]: `${var}` interpolation; [`plan`]: sweep expansion into node instances, validated
//!   against the node kinds, as a petgraph DAG.
//! - [`key`]: node keys (blake3 of kind, version, canonical params, input output-digests, file
//!   digests). Because keys use upstream *output* digests, a node that reruns and produces the
//!   same bytes leaves everything below it cached (early cutoff).
//! - [`run`]: `status` (cached / will run and why / waits) and the scheduler.
//! - [`node`]: the [`Node`] trait node kinds implement; [`event`]: what the engine reports.
//!
//! The engine knows nothing about machine learning; `cedm-nodes` provides the kinds.

#![forbid(unsafe_code)]

pub mod device;
pub mod diag;
pub mod event;
pub mod exec;
pub mod gpu;
pub mod interp;
pub mod key;
pub mod kind;
pub mod limits;
pub mod node;
pub mod overrides;
pub mod panics;
pub mod plan;
pub mod resources;
pub mod run;
pub mod search;
pub mod spec;
pub mod task;
pub mod toy;
pub mod yaml;

use std::path::{Path, PathBuf};

pub use diag::{Problem, SpecError};
pub use event::{Event, EventKind, Reason, Reporter, Status};
pub use kind::{Kind, Trajectory, rules};
pub use node::{
    Artifact, BatchDefaults, Checked, FileKind, FileParam, Node, NodeError, ParamError, Progress,
    Registry, Resources, RunContext, Slot, check_typed,
};
pub use plan::{Instance, Plan, expand};
pub use run::{
    DeviceSpec, Engine, Executor, LocalExecutor, Outcome, RunOptions, RunSummary, parse_device,
    run, run_with, status,
};
pub use spec::Experiment;
pub use task::{BatchResources, Task, TaskError, TaskOutcome, load_task, save_task};

/// Errors of loading and planning an experiment.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum EngineError {
    /// The experiment file cannot be read.
    #[error("cannot read experiment {path}: {source}")]
    #[diagnostic(code(cedm::spec::read))]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The experiment has problems (all of them, with spans).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(#[from] SpecError),
    /// The cache failed.
    #[error(transparent)]
    #[diagnostic(code(cedm::cache))]
    Cache(#[from] cedm_cache::CacheError),
}

/// Load, parse, expand and validate an experiment file.
///
/// # Errors
/// An unreadable file, or every problem in it.
pub fn load_plan(path: &Path, registry: &Registry) -> Result<Plan, EngineError> {
    load_plan_with(path, &[], registry)
}

/// [`load_plan`] with command-line overrides applied ([`overrides`]).
///
/// # Errors
/// An unreadable file, or every problem in it and in the overrides.
pub fn load_plan_with(
    path: &Path,
    overrides: &[overrides::Override],
    registry: &Registry,
) -> Result<Plan, EngineError> {
    let exp = Experiment::load_with(path, overrides)?;
    Ok(expand(exp, registry)?)
}

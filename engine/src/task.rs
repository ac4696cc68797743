//! A task: everything needed to compute one key, self-contained, so that it can run in this
//! process or in a batch job on another machine (`cedm exec KEY`).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cedm_cache::{Cache, Digest, Failure, FileRef, HitCheck, InputRef, Record, RunMeta};
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Reason, Reporter};
use crate::node::{Artifact, Registry, RunContext};
pub use crate::resources::BatchResources;

/// One key to compute.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Task {
    /// The key.
    pub key: Digest,
    /// Experiment name.
    pub experiment: String,
    /// Node id.
    pub node: String,
    /// Instance label.
    pub instance: String,
    /// Kind.
    pub kind: String,
    /// Kind version the key was computed with.
    pub version: u32,
    /// Params the node sees (file params as absolute paths).
    pub params: serde_json::Value,
    /// Params in the key.
    pub key_params: serde_json::Value,
    /// Upstream artifacts.
    pub inputs: BTreeMap<String, InputRef>,
    /// External files.
    pub files: BTreeMap<String, FileRef>,
    /// Device to run on.
    pub device: crate::device::DeviceSpec,
    /// Why it runs (for the Started event).
    pub reason: Reason,
    /// What a batch job for it reserves (the kind's defaults with the YAML's overrides).
    #[serde(default)]
    pub resources: BatchResources,
}

/// How a task ended.
#[derive(Debug)]
pub enum TaskOutcome {
    /// Computed and published now.
    Ran(Record),
    /// Found in the cache (published by another process while we waited for its lock).
    Hit(Record),
}

impl TaskOutcome {
    /// The record either way.
    pub fn record(&self) -> &Record {
        match self {
            TaskOutcome::Ran(r) | TaskOutcome::Hit(r) => r,
        }
    }
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The node returned an error or panicked (already recorded as a failure in the cache).
    #[error("{0}")]
    Node(String),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] cedm_cache::CacheError),
    /// The kind is not registered in this binary.
    #[error("unknown kind `{0}` (this cedm was built without it)")]
    UnknownKind(String),
    /// The kind's version differs from the one the key was computed with.
    #[error("kind `{kind}` is version {have} here but the task needs version {want}")]
    VersionMismatch {
        /// Kind.
        kind: String,
        /// Here.
        have: u32,
        /// Wanted.
        want: u32,
    },
    /// An upstream artifact is missing from the cache.
    #[error("input `{slot}`: its record {key} is missing or damaged; re-run the experiment")]
    MissingInput {
        /// Slot.
        slot: String,
        /// Upstream key.
        key: Digest,
    },
    /// Stopped before it started (Ctrl-C while waiting for a lock).
    #[error("interrupted")]
    Interrupted,
    /// The node stopped when asked to (Ctrl-C, a scheduler's warning signal), keeping its
    /// checkpoints; recorded as the key's failure like any other stop.
    #[error("interrupted")]
    NodeInterrupted,
}

fn emit(reporter: &dyn Reporter, task: &Task, kind: EventKind) {
    reporter.event(&Event {
        instance: task.instance.clone(),
        node: task.node.clone(),
        kind,
    });
}

fn peak_rss() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Take the key's lock (waiting while another live process holds it), then compute the task
/// unless its result appeared meanwhile.
///
/// # Errors
/// See [`TaskError`].
pub fn execute_locked(
    task: &Task,
    cache: &Cache,
    registry: &Registry,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
    executor: &str,
) -> Result<TaskOutcome, TaskError> {
    let mut announced = false;
    let mut delay = Duration::from_millis(50);
    let guard = loop {
        match cache.try_lock(&task.key, &task.instance)? {
            Ok(g) => break g,
            Err(owner) => {
                if !announced {
                    emit(
                        reporter,
                        task,
                        EventKind::Waiting {
                            holder: format!("{}:{}", owner.host, owner.pid),
                        },
                    );
                    announced = true;
                }
                if task.reason != Reason::Forced {
                    if let HitCheck::Hit(r) = cache.check(&task.key)? {
                        return Ok(TaskOutcome::Hit(r));
                    }
                }
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Err(TaskError::Interrupted);
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(500));
            }
        }
    };
    // Whoever held the lock before us may have published the result (unless forced).
    if task.reason == Reason::Forced {
    } else if let HitCheck::Hit(r) = cache.check(&task.key)? {
        drop(guard);
        return Ok(TaskOutcome::Hit(r));
    }
    let out = run_task(task, cache, registry, reporter, stop, executor);
    drop(guard);
    out.map(TaskOutcome::Ran)
}

/// Compute a task and publish its result. The caller holds the key's lock.
///
/// # Errors
/// See [`TaskError`]. A node error is stored as the key's failure (with the log) first.
pub fn run_task(
    task: &Task,
    cache: &Cache,
    registry: &Registry,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
    executor: &str,
) -> Result<Record, TaskError> {
    let kind = registry
        .get(&task.kind)
        .ok_or_else(|| TaskError::UnknownKind(task.kind.clone()))?;
    if kind.version() != task.version {
        return Err(TaskError::VersionMismatch {
            kind: task.kind.clone(),
            have: kind.version(),
            want: task.version,
        });
    }
    let mut inputs = BTreeMap::new();
    for (slot, r) in &task.inputs {
        let record = match cache.check(&r.key)? {
            HitCheck::Hit(rec) if rec.output_digest == r.digest => rec,
            _ => {
                return Err(TaskError::MissingInput {
                    slot: slot.clone(),
                    key: r.key,
                });
            }
        };
        let files = record
            .outputs
            .iter()
            .map(|(n, o)| (n.clone(), cache.object_path(&o.digest)))
            .collect();
        inputs.insert(
            slot.clone(),
            Artifact {
                slot: slot.clone(),
                record,
                files,
            },
        );
    }
    let staging = cache.stage()?;
    emit(
        reporter,
        task,
        EventKind::Started {
            key: task.key,
            reason: task.reason.clone(),
        },
    );
    let started = cedm_cache::rfc3339_now();
    let t0 = Instant::now();
    let on_progress = |p| emit(reporter, task, EventKind::Progress(p));
    let on_log = |l: &str| {
        emit(
            reporter,
            task,
            EventKind::Log {
                line: l.to_string(),
            },
        )
    };
    let mut ctx = RunContext {
        params: task.params.clone(),
        inputs,
        out_dir: staging.out_dir().to_path_buf(),
        work_dir: cache.work_dir(&task.key),
        device: task.device,
        instance: task.instance.clone(),
        stop,
        on_progress: &on_progress,
        on_log: &on_log,
        log: std::sync::Mutex::new(String::new()),
        stats: BTreeMap::new(),
        last_progress: None,
    };
    let capture = crate::panics::Capture::start();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| kind.run(&mut ctx)));
    let caught = capture.finish();
    let seconds = t0.elapsed().as_secs_f64();
    let mut log_text = ctx.log_text();
    // A panic's location and backtrace go to the node's log; its error stays one line.
    for c in &caught {
        log_text.push_str(c);
        log_text.push('\n');
    }
    let log = cache.put_bytes(log_text.as_bytes()).ok();
    let meta = RunMeta {
        experiment: task.experiment.clone(),
        node: task.node.clone(),
        instance: task.instance.clone(),
        started,
        seconds,
        device: task.device.to_string(),
        host: cedm_cache::hostname(),
        cedm_version: env!("CARGO_PKG_VERSION").to_string(),
        executor: executor.to_string(),
        log,
        peak_rss: peak_rss(),
        stats: ctx.stats.clone(),
    };
    let interrupted = matches!(result, Ok(Err(crate::node::NodeError::Interrupted)));
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(error_chain(&e)),
        Err(p) => Some(format!(
            "node panicked: {}{}",
            panic_message(&*p).lines().next().unwrap_or_default(),
            if caught.is_empty() {
                ""
            } else {
                " (backtrace in the node's log: cedm cache show)"
            }
        )),
    };
    if let Some(error) = error {
        let _ = cache.put_failure(&Failure {
            key: task.key,
            kind: task.kind.clone(),
            error: error.clone(),
            meta,
        });
        return Err(if interrupted {
            TaskError::NodeInterrupted
        } else {
            TaskError::Node(error)
        });
    }
    cedm_cache::crash_point("before-publish");
    let record = cache.publish(
        staging,
        task.key,
        &task.kind,
        task.version,
        task.key_params.clone(),
        task.inputs.clone(),
        task.files.clone(),
        meta,
    )?;
    Ok(record)
}

/// An error and its sources, joined with ": ".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// Store a task in the cache (`tasks/<key>.json`) so that `cedm exec KEY` can run it elsewhere.
///
/// # Errors
/// Filesystem errors.
pub fn save_task(cache: &Cache, task: &Task) -> Result<std::path::PathBuf, TaskError> {
    let bytes = serde_json::to_vec_pretty(task).map_err(|e| TaskError::Node(e.to_string()))?;
    Ok(cache.write_aux("tasks", &format!("{}.json", task.key), &bytes)?)
}

/// Load a task stored by [`save_task`].
///
/// # Errors
/// When it is missing or malformed.
pub fn load_task(cache: &Cache, key: &Digest) -> Result<Task, TaskError> {
    let bytes = cache
        .read_aux("tasks", &format!("{key}.json"))?
        .ok_or_else(|| {
            TaskError::Node(format!(
                "no task for key {key} in {}",
                cache.root().display()
            ))
        })?;
    serde_json::from_slice(&bytes).map_err(|e| TaskError::Node(format!("task {key}: {e}")))
}

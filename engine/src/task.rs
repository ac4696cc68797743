//! A task: everything needed to compute one key, self-contained, so that it can run in this
//! process or in a batch job on another machine (`cedm exec KEY`).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use cedm_cache::{Cache, Digest, Failure, FileRef, HitCheck, InputRef, Record, RunMeta};
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Reason, Reporter};
use crate::key::{KeyInput, node_key, trajectory_key};
use crate::kind::Trajectory;
use crate::node::{Artifact, NodeError, Registry, RunContext};
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
                if task.reason != Reason::Forced
                    && let HitCheck::Hit(r) = cache.check(&task.key)?
                {
                    return Ok(TaskOutcome::Hit(r));
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
    let work_dir = cache.work_dir(&task.key);
    let trajectory = kind
        .trajectory()
        .and_then(|tr| trajectory_of(task, tr).map(|t| (tr, t)));
    let mut resumed = None;
    if let Some((tr, (id, length))) = &trajectory {
        let state = work_dir.join(tr.state);
        if !state.exists()
            && let Some((at, key, from)) = best_snapshot(cache, id, *length, &task.key)
        {
            place_state(&from, &state).map_err(|e| {
                TaskError::Node(format!(
                    "placing the state of snapshot {key} in {}: {e}",
                    state.display()
                ))
            })?;
            resumed = Some(format!(
                "resuming the trajectory from its snapshot at {} = {at} (key {key})",
                tr.length
            ));
        }
    }
    let run_started = started.clone();
    let sink = |length: f64,
                write: &dyn Fn(&std::path::Path) -> Result<(), NodeError>,
                state: Option<&std::path::Path>|
     -> Result<(), NodeError> {
        let Some((tr, (id, _))) = &trajectory else {
            return Ok(());
        };
        publish_snapshot(
            task,
            cache,
            executor,
            &run_started,
            t0,
            (*tr, *id),
            length,
            write,
            state,
        )
        .map(|published| {
            if let Some(key) = published {
                on_log(&format!(
                    "published the snapshot at {} = {length} as {key}",
                    tr.length
                ));
            }
        })
    };
    let mut ctx = RunContext {
        params: task.params.clone(),
        inputs,
        out_dir: staging.out_dir().to_path_buf(),
        work_dir: work_dir.clone(),
        device: task.device,
        instance: task.instance.clone(),
        stop,
        on_progress: &on_progress,
        on_log: &on_log,
        log: std::sync::Mutex::new(String::new()),
        stats: BTreeMap::new(),
        last_progress: None,
        snapshots: Some(&sink),
        scalar_stream: Some(work_dir.join(crate::node::SCALARS_FILE)),
        last_scalars: None,
        pending_scalars: BTreeMap::new(),
        memory_probe: None,
        last_memory: None,
    };
    if let Some(line) = &resumed {
        ctx.log(line);
    }
    let capture = crate::panics::Capture::start();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| kind.run(&mut ctx)));
    let caught = capture.finish();
    ctx.sample_device_memory();
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
        resume: None,
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
    let mut meta = meta;
    if let Some((tr, _)) = &trajectory {
        // The state at the end: what a longer run resumes from (moved out of the work
        // directory, which publishing removes).
        let state = work_dir.join(tr.state);
        if state.is_file() {
            meta.resume = Some(cache.put_object(&state)?.digest);
        }
    }
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
    if let Some((_, (id, length))) = &trajectory {
        cache.add_snapshot(id, *length, &task.key)?;
    }
    Ok(record)
}

/// Publish one snapshot of a trajectory under the key of the run to `length`; the key, or
/// `None` when nothing was published (this run's own key, already cached, or locked by a run
/// computing it).
#[allow(clippy::too_many_arguments)]
fn publish_snapshot(
    task: &Task,
    cache: &Cache,
    executor: &str,
    started: &str,
    t0: Instant,
    (tr, id): (Trajectory, Digest),
    length: f64,
    write: &dyn Fn(&std::path::Path) -> Result<(), NodeError>,
    state: Option<&std::path::Path>,
) -> Result<Option<Digest>, NodeError> {
    let cache_err =
        |e: cedm_cache::CacheError| NodeError::msg(format!("publishing a snapshot: {e}"));
    let mut params = task.key_params.clone();
    let Some(m) = params.as_object_mut() else {
        return Ok(None);
    };
    // In the type the kind's canonical params give it (an integer stays an integer), so the key
    // is the one a run asked for with this length has.
    let value = match m.get(tr.length) {
        Some(v) if v.is_u64() && length >= 0.0 && length.fract() == 0.0 => {
            serde_json::json!(length as u64)
        }
        Some(v) if v.is_i64() && length.fract() == 0.0 => serde_json::json!(length as i64),
        _ => serde_json::json!(length),
    };
    m.insert(tr.length.to_string(), value);
    let key = key_with(task, &params);
    if key == task.key {
        return Ok(None);
    }
    if let HitCheck::Hit(_) = cache.check(&key).map_err(cache_err)? {
        cache.add_snapshot(&id, length, &key).map_err(cache_err)?;
        return Ok(None);
    }
    let Ok(_guard) = cache.try_lock(&key, &task.instance).map_err(cache_err)? else {
        return Ok(None);
    };
    let staging = cache.stage().map_err(cache_err)?;
    write(staging.out_dir())?;
    let resume = match state {
        Some(p) => {
            let tmp = staging.dir().join("resume-state");
            std::fs::copy(p, &tmp).map_err(NodeError::io("copying", p))?;
            Some(cache.put_object(&tmp).map_err(cache_err)?.digest)
        }
        None => None,
    };
    let log = format!(
        "snapshot at {} = {length}, published by the run of key {} ({}) while it trained on\n",
        tr.length, task.key, task.instance
    );
    let meta = RunMeta {
        experiment: task.experiment.clone(),
        node: task.node.clone(),
        instance: format!("{} @ {} = {length}", task.instance, tr.length),
        started: started.to_string(),
        seconds: t0.elapsed().as_secs_f64(),
        device: task.device.to_string(),
        host: cedm_cache::hostname(),
        cedm_version: env!("CARGO_PKG_VERSION").to_string(),
        executor: executor.to_string(),
        log: cache.put_bytes(log.as_bytes()).ok(),
        peak_rss: peak_rss(),
        stats: BTreeMap::new(),
        resume,
    };
    cache
        .publish(
            staging,
            key,
            &task.kind,
            task.version,
            params,
            task.inputs.clone(),
            task.files.clone(),
            meta,
        )
        .map_err(cache_err)?;
    cache.add_snapshot(&id, length, &key).map_err(cache_err)?;
    Ok(Some(key))
}

/// The digests a task's key is computed from: its inputs' output digests and its files'.
fn digests(task: &Task) -> (BTreeMap<String, Digest>, BTreeMap<String, Digest>) {
    let inputs = task
        .inputs
        .iter()
        .map(|(s, r)| (s.clone(), r.digest))
        .collect();
    let files = task
        .files
        .iter()
        .map(|(p, f)| (p.clone(), f.digest))
        .collect();
    (inputs, files)
}

/// The key the task would have with these key params (its inputs and files unchanged).
fn key_with(task: &Task, params: &serde_json::Value) -> Digest {
    let (inputs, files) = digests(task);
    node_key(&KeyInput {
        kind: &task.kind,
        version: task.version,
        params,
        inputs: &inputs,
        files: &files,
    })
}

/// A task's trajectory: its identity and its length, when the kind has one and the task's key
/// is the one its parts give (a task from an older cedm whose key was computed otherwise is run
/// as a plain node).
fn trajectory_of(task: &Task, tr: Trajectory) -> Option<(Digest, f64)> {
    let length = task.key_params.get(tr.length)?.as_f64()?;
    let (inputs, files) = digests(task);
    let k = KeyInput {
        kind: &task.kind,
        version: task.version,
        params: &task.key_params,
        inputs: &inputs,
        files: &files,
    };
    if node_key(&k) != task.key {
        return None;
    }
    Some((trajectory_key(&k, tr.length), length))
}

/// The longest cached snapshot of the trajectory no longer than `length` (other than the key
/// itself) whose resume state is intact: its length, key and state file.
fn best_snapshot(
    cache: &Cache,
    trajectory: &Digest,
    length: f64,
    own: &Digest,
) -> Option<(f64, Digest, std::path::PathBuf)> {
    cache
        .snapshots(trajectory)
        .into_iter()
        .rev()
        .filter(|s| s.length <= length && s.key != *own)
        .find_map(|s| {
            let HitCheck::Hit(r) = cache.check(&s.key).ok()? else {
                return None;
            };
            let d = r.meta.resume?;
            let p = cache.object_file(&d).ok()??;
            // A damaged state would silently change every later step: check it first.
            (Digest::of_file(&p).ok()? == d).then_some((s.length, s.key, p))
        })
}

/// Copy a snapshot's state into the work directory as the kind's state file (atomically).
fn place_state(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = to.with_extension("resume-tmp");
    std::fs::copy(from, &tmp)?;
    // Objects are read-only; the kind rewrites its checkpoint in place of this one.
    let mut perm = std::fs::metadata(&tmp)?.permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    std::fs::set_permissions(&tmp, perm)?;
    std::fs::rename(&tmp, to)
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

//! The `Node` trait: how the engine sees a node kind, and what a running node can use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cedm_cache::{Digest, Record};
use serde::de::DeserializeOwned;

pub use crate::resources::{BatchDefaults, Resources};

/// One input slot of a node kind (`inputs: {features: feats}` in the YAML).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    /// Slot name.
    pub name: &'static str,
    /// Whether the slot must be connected.
    pub required: bool,
    /// A gather slot: it receives every instance of the connected node across the sweep points
    /// that agree with the consumer on the variables the consumer itself uses (a reduce over the
    /// sweep). Artifacts arrive as `slot#0000`, `slot#0001`, … in sweep order.
    pub many: bool,
    /// What the slot expects (for docs and messages).
    pub about: &'static str,
}

impl Slot {
    /// A required one-to-one input.
    pub const fn one(name: &'static str, about: &'static str) -> Slot {
        Slot {
            name,
            required: true,
            many: false,
            about,
        }
    }
    /// An optional one-to-one input.
    pub const fn optional(name: &'static str, about: &'static str) -> Slot {
        Slot {
            name,
            required: false,
            many: false,
            about,
        }
    }
    /// A required gather input (see [`Slot::many`]).
    pub const fn gather(name: &'static str, about: &'static str) -> Slot {
        Slot {
            name,
            required: true,
            many: true,
            about,
        }
    }
    /// An optional gather input.
    pub const fn gather_optional(name: &'static str, about: &'static str) -> Slot {
        Slot {
            name,
            required: false,
            many: true,
            about,
        }
    }
}

/// A parameter that names a file or directory outside the cache. The engine hashes it (the key
/// uses its content, not its path) and hands the node an absolute path.
#[derive(Clone, Debug, PartialEq)]
pub struct FileParam {
    /// Top-level param name holding the path.
    pub param: String,
    /// The path as written (relative paths are resolved against the experiment's folder).
    pub path: PathBuf,
    /// What the path must name; anything else (a FIFO, a device, a socket, a directory where
    /// a file is expected) is refused before it is hashed or read.
    pub kind: FileKind,
}

/// What a [`FileParam`] must name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    #[default]
    File,
    /// A directory.
    Dir,
    /// A regular file or a directory (a folder or a zip of images).
    FileOrDir,
}

impl FileKind {
    /// Why `path` does not fit, if it does not (`Ok` when it is missing: hashing says so).
    ///
    /// # Errors
    /// A description naming what the path is and what was expected.
    pub fn check(self, path: &std::path::Path) -> Result<(), String> {
        let Ok(m) = std::fs::metadata(path) else {
            return Ok(());
        };
        let t = m.file_type();
        let is = cedm_cache::describe_file_type(t);
        let (ok, want) = match self {
            FileKind::File => (t.is_file(), "a regular file"),
            FileKind::Dir => (t.is_dir(), "a directory"),
            FileKind::FileOrDir => (t.is_file() || t.is_dir(), "a regular file or a directory"),
        };
        if ok {
            Ok(())
        } else {
            Err(format!("{}: is {is}; expected {want}", path.display()))
        }
    }
}

impl FileParam {
    /// The top-level param `param` naming the regular file `path`.
    pub fn new(param: &str, path: impl Into<PathBuf>) -> FileParam {
        FileParam {
            param: param.to_string(),
            path: path.into(),
            kind: FileKind::File,
        }
    }

    /// The top-level param `param` naming the directory `path`.
    pub fn dir(param: &str, path: impl Into<PathBuf>) -> FileParam {
        FileParam {
            kind: FileKind::Dir,
            ..FileParam::new(param, path)
        }
    }

    /// The top-level param `param` naming a regular file or a directory.
    pub fn file_or_dir(param: &str, path: impl Into<PathBuf>) -> FileParam {
        FileParam {
            kind: FileKind::FileOrDir,
            ..FileParam::new(param, path)
        }
    }
}

/// The result of checking a node's params.
#[derive(Clone, Debug)]
pub struct Checked {
    /// Canonical params: every field, defaults filled in.
    pub params: serde_json::Value,
    /// Params that are external files.
    pub files: Vec<FileParam>,
    /// What the node needs to run.
    pub resources: Resources,
}

/// One step of a path inside the params mapping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathSeg {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// What is wrong with a param.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParamErrorKind {
    /// A field the kind does not have.
    Unknown {
        /// The field name.
        field: String,
        /// Names the kind accepts.
        expected: Vec<String>,
    },
    /// A required field is absent.
    Missing {
        /// The field name.
        field: String,
    },
    /// The value has the wrong type or an invalid value.
    Invalid,
}

/// A param that does not fit a kind, with where it is inside `params`.
#[derive(Clone, Debug)]
pub struct ParamError {
    /// Path to the value (or to the mapping holding an unknown/missing field).
    pub path: Vec<PathSeg>,
    /// What is wrong.
    pub kind: ParamErrorKind,
    /// Human message (serde's, or the kind's own check).
    pub message: String,
}

impl ParamError {
    /// An invalid value at a top-level field.
    pub fn invalid(field: &str, message: impl Into<String>) -> ParamError {
        ParamError {
            path: vec![PathSeg::Key(field.to_string())],
            kind: ParamErrorKind::Invalid,
            message: message.into(),
        }
    }
}

/// Deserialize `params` into the kind's typed `P` (serde `deny_unknown_fields`, defaults),
/// and return `P` with the canonical JSON of it (defaults filled in).
///
/// # Errors
/// The first mismatch, with its path inside the params.
pub fn check_typed<P>(params: &serde_json::Value) -> Result<(P, serde_json::Value), ParamError>
where
    P: DeserializeOwned + serde::Serialize,
{
    let de = params.clone();
    let typed: P = serde_path_to_error::deserialize(de).map_err(|e| {
        let path: Vec<PathSeg> = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                _ => None,
            })
            .collect();
        let message = e.inner().to_string();
        let kind = classify(&message);
        ParamError {
            path,
            kind,
            message,
        }
    })?;
    let canonical = serde_json::to_value(&typed).map_err(|e| ParamError {
        path: vec![],
        kind: ParamErrorKind::Invalid,
        message: e.to_string(),
    })?;
    Ok((typed, canonical))
}

/// As [`check_typed`], but every mismatch at once: after each error the offending value (or
/// unknown field) is taken out and the params checked again, so a user sees all of a node's
/// problems in one run. A required field that is missing because an invalid value was taken
/// out is not reported twice.
///
/// # Errors
/// Every mismatch found (at most 64).
pub fn check_typed_all<P>(
    params: &serde_json::Value,
) -> Result<(P, serde_json::Value), Vec<ParamError>>
where
    P: DeserializeOwned + serde::Serialize,
{
    let mut cur = params.clone();
    let mut errors: Vec<ParamError> = Vec::new();
    let mut removed: Vec<Vec<PathSeg>> = Vec::new();
    for _ in 0..64 {
        match check_typed::<P>(&cur) {
            Ok(ok) if errors.is_empty() => return Ok(ok),
            Ok(_) => return Err(errors),
            Err(e) => {
                // The location of the value to take out: the value's path, or the unknown or
                // missing field inside the mapping at the path.
                let mut at = e.path.clone();
                match &e.kind {
                    ParamErrorKind::Unknown { field, .. } | ParamErrorKind::Missing { field } => {
                        at.push(PathSeg::Key(field.clone()));
                    }
                    ParamErrorKind::Invalid => {}
                }
                let consequence =
                    matches!(e.kind, ParamErrorKind::Missing { .. }) && removed.contains(&at);
                if !consequence {
                    errors.push(e.clone());
                }
                if matches!(e.kind, ParamErrorKind::Missing { .. })
                    || at.is_empty()
                    || !take_out(&mut cur, &at)
                {
                    // Nothing more can be learned by removing (a missing field stays missing).
                    return Err(errors);
                }
                removed.push(at);
            }
        }
    }
    Err(errors)
}

/// Remove the value at `path` from `v`; whether something was removed.
fn take_out(v: &mut serde_json::Value, path: &[PathSeg]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut cur = v;
    for seg in parents {
        let next = match (seg, cur) {
            (PathSeg::Key(k), serde_json::Value::Object(m)) => m.get_mut(k),
            (PathSeg::Index(i), serde_json::Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return false,
        }
    }
    match (last, cur) {
        (PathSeg::Key(k), serde_json::Value::Object(m)) => m.remove(k).is_some(),
        (PathSeg::Index(i), serde_json::Value::Array(a)) if *i < a.len() => {
            a.remove(*i);
            true
        }
        _ => false,
    }
}

fn between_backticks(s: &str) -> Option<(String, &str)> {
    let a = s.find('`')?;
    let rest = &s[a + 1..];
    let b = rest.find('`')?;
    Some((rest[..b].to_string(), &rest[b + 1..]))
}

fn classify(message: &str) -> ParamErrorKind {
    if let Some(rest) = message.strip_prefix("unknown field ")
        && let Some((field, tail)) = between_backticks(rest)
    {
        let mut expected = Vec::new();
        let mut t = tail;
        while let Some((name, more)) = between_backticks(t) {
            expected.push(name);
            t = more;
        }
        return ParamErrorKind::Unknown { field, expected };
    }
    if let Some(rest) = message.strip_prefix("missing field ")
        && let Some((field, _)) = between_backticks(rest)
    {
        return ParamErrorKind::Missing { field };
    }
    ParamErrorKind::Invalid
}

/// An error raised by a running node.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An upstream artifact lacks an output this node needs.
    #[error("input `{slot}` has no output `{name}` (it holds: {have})")]
    MissingOutput {
        /// The slot.
        slot: String,
        /// The output wanted.
        name: String,
        /// What it has.
        have: String,
    },
    /// The run was stopped (Ctrl-C, or a scheduler's warning signal); checkpoints are kept.
    #[error("interrupted")]
    Interrupted,
    /// Anything else, with context.
    #[error("{0}")]
    Other(String),
}

impl NodeError {
    /// An error from a message.
    pub fn msg(m: impl Into<String>) -> NodeError {
        NodeError::Other(m.into())
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NodeError {
        let path = path.to_path_buf();
        move |source| NodeError::Io { op, path, source }
    }
}

/// A node kind as the planner and scheduler see it (object safe). Kinds implement the typed
/// [`crate::kind::Kind`] instead; a blanket impl provides this.
pub trait Node: Send + Sync {
    /// The kind name used in YAML, e.g. `cluster/temi`.
    fn kind(&self) -> &'static str;
    /// Implementation version; bump it whenever the output bytes change. Part of the key.
    fn version(&self) -> u32;
    /// One line saying what the node does.
    fn about(&self) -> &'static str;
    /// Input slots.
    fn inputs(&self) -> &'static [Slot];
    /// JSON schema of the params (documentation: field docs and defaults).
    fn params_schema(&self) -> serde_json::Value;
    /// Check params and canonicalise them (defaults filled in). Must not touch files.
    ///
    /// # Errors
    /// Every param that does not fit, each with its path.
    fn check(&self, params: &serde_json::Value) -> Result<Checked, Vec<ParamError>>;
    /// Compute the outputs into `ctx.out_dir()`.
    ///
    /// # Errors
    /// Anything that stops the node; nothing is published then.
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError>;
    /// Params that say *how* to compute, not *what* (e.g. the devices of a data-parallel
    /// training): the node sees them, the key leaves them out, so changing them reuses the cache.
    fn unkeyed_params(&self) -> &'static [&'static str] {
        &[]
    }
    /// Whether runs that differ only in a length param form one resumable trajectory.
    fn trajectory(&self) -> Option<crate::kind::Trajectory> {
        None
    }
    /// What a batch job of this kind reserves by default (CPU cores, memory, wall time);
    /// `resources:` in the YAML overrides it per node.
    fn batch_defaults(&self) -> BatchDefaults {
        BatchDefaults::default()
    }
}

/// The list of known node kinds.
#[derive(Default, Clone)]
pub struct Registry {
    kinds: Vec<&'static dyn Node>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Add a kind (later additions with the same name replace earlier ones).
    pub fn register(&mut self, node: &'static dyn Node) -> &mut Registry {
        self.kinds.retain(|k| k.kind() != node.kind());
        self.kinds.push(node);
        self
    }

    /// Look a kind up.
    pub fn get(&self, kind: &str) -> Option<&'static dyn Node> {
        self.kinds.iter().copied().find(|k| k.kind() == kind)
    }

    /// All kinds, in registration order.
    pub fn kinds(&self) -> &[&'static dyn Node] {
        &self.kinds
    }
}

/// An upstream node's outputs, as a running node sees them.
#[derive(Clone, Debug)]
pub struct Artifact {
    /// The slot it is connected to.
    pub slot: String,
    /// Its record (kind, params, outputs, provenance).
    pub record: Record,
    /// Absolute paths of its output files (read-only objects in the cache), by name.
    pub files: BTreeMap<String, PathBuf>,
}

impl Artifact {
    /// Path of one output file.
    ///
    /// # Errors
    /// When the upstream node has no such output.
    pub fn path(&self, name: &str) -> Result<&Path, NodeError> {
        self.files
            .get(name)
            .map(PathBuf::as_path)
            .ok_or_else(|| NodeError::MissingOutput {
                slot: self.slot.clone(),
                name: name.to_string(),
                have: self.files.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// The upstream node's key.
    pub fn key(&self) -> Digest {
        self.record.key
    }
}

/// Progress reported by a running node.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    pub total: Option<u64>,
    /// What a unit is (`img`, `step`, `epoch`).
    pub unit: String,
    /// Optional short status (e.g. the current loss).
    pub message: Option<String>,
    /// Training scalars reported since the last progress event ([`RunContext::scalars`]):
    /// `loss`, `lr`, `img_per_s`, `loss_scale`, … as numbers (a `--json` event's fields).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub scalars: BTreeMap<String, f64>,
}

/// The name of a running node's live scalar stream in its work directory
/// (`work/<key>/scalars.jsonl` in the cache).
pub const SCALARS_FILE: &str = "scalars.jsonl";

/// One line of a live scalar stream.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ScalarLine {
    /// Where in the run (`img`, `step`, `epoch` — see `unit`).
    pub step: f64,
    /// What `step` counts.
    pub unit: String,
    /// Seconds since the Unix epoch when it was written.
    pub t: f64,
    /// The values (non-finite ones as null).
    #[serde(flatten)]
    pub values: BTreeMap<String, Option<f64>>,
}

/// What a node sees while it runs.
pub struct RunContext<'a> {
    pub(crate) params: serde_json::Value,
    pub(crate) inputs: BTreeMap<String, Artifact>,
    pub(crate) out_dir: PathBuf,
    pub(crate) work_dir: PathBuf,
    pub(crate) device: crate::device::DeviceSpec,
    pub(crate) instance: String,
    pub(crate) stop: &'a AtomicBool,
    pub(crate) on_progress: &'a (dyn Fn(Progress) + Sync),
    pub(crate) on_log: &'a (dyn Fn(&str) + Sync),
    pub(crate) log: Mutex<String>,
    pub(crate) stats: BTreeMap<String, f64>,
    pub(crate) last_progress: Option<Instant>,
    pub(crate) snapshots: Option<&'a SnapshotSink<'a>>,
    /// The live scalar stream (engine runs only) and when a line was last written.
    pub(crate) scalar_stream: Option<PathBuf>,
    pub(crate) last_scalars: Option<Instant>,
    pub(crate) pending_scalars: BTreeMap<String, f64>,
    /// Reads the device memory the node's accelerator holds now (bytes), sampled with progress.
    pub(crate) memory_probe: Option<MemoryProbe<'a>>,
    pub(crate) last_memory: Option<Instant>,
}

/// Reads an accelerator's memory in use, in bytes (`None` when it cannot say).
pub type MemoryProbe<'a> = Box<dyn Fn() -> Option<u64> + Send + Sync + 'a>;

/// The record stat with the peak device memory a node's run measured, in MiB: the local
/// executor sizes the node's next request from it ([`crate::gpu`]).
pub const GPU_PEAK_STAT: &str = "gpu_peak_mb";

/// Publishes a snapshot of a trajectory: its length, a writer of its outputs, its state file.
pub(crate) type SnapshotSink<'a> = dyn Fn(f64, &dyn Fn(&Path) -> Result<(), NodeError>, Option<&Path>) -> Result<(), NodeError>
    + Sync
    + 'a;

impl<'a> RunContext<'a> {
    /// A context for running a node outside the engine (tests, benchmarks, standalone commands).
    #[allow(clippy::too_many_arguments)]
    pub fn standalone(
        params: serde_json::Value,
        inputs: BTreeMap<String, Artifact>,
        out_dir: PathBuf,
        work_dir: PathBuf,
        device: crate::device::DeviceSpec,
        stop: &'a AtomicBool,
        on_progress: &'a (dyn Fn(Progress) + Sync),
        on_log: &'a (dyn Fn(&str) + Sync),
    ) -> RunContext<'a> {
        RunContext {
            params,
            inputs,
            out_dir,
            work_dir,
            device,
            instance: "standalone".into(),
            stop,
            on_progress,
            on_log,
            log: Mutex::new(String::new()),
            stats: BTreeMap::new(),
            last_progress: None,
            snapshots: None,
            scalar_stream: None,
            last_scalars: None,
            pending_scalars: BTreeMap::new(),
            memory_probe: None,
            last_memory: None,
        }
    }

    /// The params as JSON (canonical, file params as absolute paths).
    pub fn params_json(&self) -> &serde_json::Value {
        &self.params
    }

    /// The params as the kind's typed struct.
    ///
    /// # Errors
    /// Only if the params changed shape since `check` (a bug).
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, NodeError> {
        serde_json::from_value(self.params.clone())
            .map_err(|e| NodeError::msg(format!("params do not fit the kind: {e}")))
    }

    /// The artifact connected to `slot`, if any.
    pub fn input(&self, slot: &str) -> Option<&Artifact> {
        self.inputs.get(slot)
    }

    /// Every artifact of a gather slot, in sweep order.
    pub fn inputs_many(&self, slot: &str) -> Vec<&Artifact> {
        let prefix = format!("{slot}#");
        self.inputs
            .iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .map(|(_, a)| a)
            .collect()
    }

    /// The artifact connected to a required slot.
    ///
    /// # Errors
    /// When it is not connected (the engine checks required slots first, so only optional
    /// slots a node insists on reach this).
    pub fn require(&self, slot: &str) -> Result<&Artifact, NodeError> {
        self.inputs
            .get(slot)
            .ok_or_else(|| NodeError::msg(format!("input `{slot}` is not connected")))
    }

    /// Where outputs go. Every regular file written here becomes an output, named by its
    /// path relative to this directory.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Scratch space that survives a crash of this key (checkpoints); removed once the node's
    /// result is published. Created on first call.
    ///
    /// # Errors
    /// When it cannot be created.
    pub fn work_dir(&self) -> Result<&Path, NodeError> {
        std::fs::create_dir_all(&self.work_dir)
            .map_err(NodeError::io("creating", &self.work_dir))?;
        Ok(&self.work_dir)
    }

    /// The device requested for this run (`cpu`, `wgpu:0`, `cuda:1`).
    pub fn device(&self) -> crate::device::DeviceSpec {
        self.device
    }

    /// Whether the run has been asked to stop (Ctrl-C, Slurm's warning signal). Long nodes
    /// check this between steps, checkpoint, and return [`NodeError::Interrupted`].
    pub fn should_stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Watch the node's accelerator memory: `probe` reads what the device holds now (bytes);
    /// it is sampled now, with progress (at most once a second) and when the node ends, and the
    /// peak goes to the record's stats as [`GPU_PEAK_STAT`] (MiB), from which the local executor
    /// sizes the node's next request.
    pub fn watch_device_memory(&mut self, probe: impl Fn() -> Option<u64> + Send + Sync + 'a) {
        self.memory_probe = Some(Box::new(probe));
        self.sample_device_memory();
    }

    /// Sample the watched device memory into the peak stat.
    pub(crate) fn sample_device_memory(&mut self) {
        let Some(probe) = &self.memory_probe else {
            return;
        };
        self.last_memory = Some(Instant::now());
        if let Some(bytes) = probe() {
            let mb = bytes as f64 / (1024.0 * 1024.0);
            let peak = self.stats.entry(GPU_PEAK_STAT.to_string()).or_insert(0.0);
            *peak = peak.max(mb);
        }
    }

    /// Report progress (rate-limited to a few events per second, except the last).
    pub fn progress(&mut self, done: u64, total: Option<u64>, unit: &str, message: Option<String>) {
        let now = Instant::now();
        if self.memory_probe.is_some()
            && self
                .last_memory
                .is_none_or(|t| now.duration_since(t).as_millis() >= 1000)
        {
            self.sample_device_memory();
        }
        let last = total.is_some_and(|t| done >= t);
        if !last
            && self
                .last_progress
                .is_some_and(|t| now.duration_since(t).as_millis() < 200)
        {
            return;
        }
        self.last_progress = Some(now);
        (self.on_progress)(Progress {
            done,
            total,
            unit: unit.to_string(),
            message,
            scalars: std::mem::take(&mut self.pending_scalars),
        });
    }

    /// Report training scalars at `step` (counted in `unit`): they ride on the next progress
    /// event as fields, and, in an engine run, are appended as one JSON line ([`ScalarLine`]) to
    /// the node's live stream `work/<key>/scalars.jsonl` in the cache — on the shared
    /// filesystem under Slurm too — which `cedm watch` draws. At most one line a second (the
    /// last `last` call always writes), so a stream stays small; a write that fails is skipped
    /// (the stream is for watching, never an output).
    pub fn scalars(&mut self, step: f64, unit: &str, values: &[(&str, f64)], last: bool) {
        for (k, v) in values {
            self.pending_scalars.insert((*k).to_string(), *v);
        }
        let Some(path) = &self.scalar_stream else {
            return;
        };
        let now = Instant::now();
        if !last
            && self
                .last_scalars
                .is_some_and(|t| now.duration_since(t).as_millis() < 1000)
        {
            return;
        }
        self.last_scalars = Some(now);
        let line = ScalarLine {
            step,
            unit: unit.to_string(),
            t: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
            values: values
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.is_finite().then_some(*v)))
                .collect(),
        };
        let Ok(mut text) = serde_json::to_string(&line) else {
            return;
        };
        text.push('\n');
        let _ = std::fs::create_dir_all(&self.work_dir).and_then(|()| {
            use std::io::Write;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
                .write_all(text.as_bytes())
        });
    }

    /// Write a line to the node's log (stored with its record; shown by `cedm cache show`).
    pub fn log(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if let Ok(mut l) = self.log.lock() {
            l.push_str(line);
            l.push('\n');
        }
        (self.on_log)(line);
    }

    /// Record a number about this run (a timing, a throughput) in the record's metadata.
    pub fn stat(&mut self, name: &str, value: f64) {
        self.stats.insert(name.to_string(), value);
    }

    /// Publish a snapshot of this run (a kind with a [`crate::kind::Trajectory`]): the result a
    /// run to `length` gives, which `write` writes into the directory it is handed exactly as the
    /// kind writes its outputs, with `state` (the kind's checkpoint at this point, copied) for a
    /// longer run to resume from. It is published under the key of the run to `length`; if that
    /// key is cached, or being computed elsewhere, or is this run's own, nothing is written.
    /// Outside the engine (standalone contexts) this does nothing.
    ///
    /// # Errors
    /// `write`'s errors, and the cache's.
    pub fn snapshot(
        &self,
        length: f64,
        write: &dyn Fn(&Path) -> Result<(), NodeError>,
        state: Option<&Path>,
    ) -> Result<(), NodeError> {
        match self.snapshots {
            Some(sink) => sink(length, write, state),
            None => Ok(()),
        }
    }

    /// The node instance label (e.g. `temi[C=10]`).
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct P {
        clusters: u32,
        #[serde(default = "default_gamma")]
        gamma: f64,
        nested: Option<Inner>,
    }
    #[derive(serde::Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        depth: u32,
    }
    fn default_gamma() -> f64 {
        0.6
    }

    #[test]
    fn defaults_are_filled_in() {
        let (_, c) = check_typed::<P>(&serde_json::json!({"clusters": 10})).unwrap();
        assert_eq!(
            c,
            serde_json::json!({"clusters": 10, "gamma": 0.6, "nested": null})
        );
    }

    #[test]
    fn errors_carry_paths_and_kinds() {
        let e = check_typed::<P>(&serde_json::json!({"clusters": 10, "gama": 1}))
            .err()
            .unwrap();
        assert!(
            matches!(&e.kind, ParamErrorKind::Unknown { field, expected } if field == "gama" && expected.contains(&"gamma".to_string()))
        );
        let e = check_typed::<P>(&serde_json::json!({})).err().unwrap();
        assert_eq!(
            e.kind,
            ParamErrorKind::Missing {
                field: "clusters".into()
            }
        );
        let e = check_typed::<P>(&serde_json::json!({"clusters": "ten"}))
            .err()
            .unwrap();
        assert_eq!(e.path, vec![PathSeg::Key("clusters".into())]);
        assert_eq!(e.kind, ParamErrorKind::Invalid);
        let e = check_typed::<P>(&serde_json::json!({"clusters": 1, "nested": {"depth": -1}}))
            .err()
            .unwrap();
        assert_eq!(
            e.path,
            vec![PathSeg::Key("nested".into()), PathSeg::Key("depth".into())]
        );
    }
}

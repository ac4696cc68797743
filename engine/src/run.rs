//! Planning against the cache (`status`) and running (`run`): keys, cache hits, early cutoff,
//! parallel scheduling with resource tokens, failure propagation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use cedm_cache::{Cache, Digest, FileRef, HitCheck, InputRef, Record};

pub use crate::device::{DeviceSpec, parse_device};
use crate::diag::{Problem, SpecError};
use crate::event::{Event, EventKind, Reason, Reporter, Status};
pub use crate::exec::{Engine, Executor, LocalExecutor};
use crate::gpu::{GpuNeed, GpuPool, Placement};
use crate::key::{KeyInput, node_key};
use crate::plan::{Instance, Plan};
use crate::task::{Task, TaskError, TaskOutcome};

/// Options of a run.
#[derive(Clone)]
pub struct RunOptions {
    /// Nodes (ids or instance labels) to run, with what they need; empty = all.
    pub only: Vec<String>,
    /// Nodes to recompute even when cached.
    pub force: Vec<String>,
    /// Most nodes running at once.
    pub jobs: usize,
    /// Device override (else the experiment's `device:`, else cpu).
    pub device: Option<DeviceSpec>,
    /// GPU slots of this machine for local runs on a GPU device: device indices (`--gpus
    /// 0,1,2,3`), each node placed on one by [`crate::gpu::GpuPool::place`]. Empty: the run's
    /// device alone.
    pub gpus: Vec<usize>,
    /// Memory of each GPU in MiB (`--gpu-mem`): with it, nodes whose device memory is known
    /// share a GPU while their needs fit.
    pub gpu_mem_mb: Option<u64>,
    /// Set to stop: no new node starts; running nodes see `should_stop`.
    pub stop: Arc<AtomicBool>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            only: Vec::new(),
            force: Vec::new(),
            jobs: 2,
            device: None,
            gpus: Vec::new(),
            gpu_mem_mb: None,
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

/// How one instance ended.
#[derive(Clone, Debug)]
pub enum Outcome {
    /// Found in the cache.
    Cached(Record),
    /// Computed in this run.
    Ran(Record),
    /// Failed.
    Failed(String),
    /// Not run because an upstream instance failed.
    Blocked(String),
    /// Not selected, or not started because the run was stopped.
    NotRun,
}

impl Outcome {
    /// The record, if the instance has a result.
    pub fn record(&self) -> Option<&Record> {
        match self {
            Outcome::Cached(r) | Outcome::Ran(r) => Some(r),
            _ => None,
        }
    }
}

/// The result of [`run`].
#[derive(Debug)]
pub struct RunSummary {
    /// Outcome per instance (indexed like `plan.instances`).
    pub outcomes: Vec<Outcome>,
    /// Wall seconds.
    pub seconds: f64,
    /// Whether the run was stopped early.
    pub interrupted: bool,
}

impl RunSummary {
    /// Count of outcomes matching a predicate.
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.outcomes.iter().filter(|o| f(o)).count()
    }

    /// Whether a failure was the disk (or quota) being full: the filesystem failed, not the
    /// node (exit code 3). Failures are carried as their error chains, which end in the OS
    /// error (`… (os error 28)`: ENOSPC, `(os error 122)`: EDQUOT).
    pub fn storage_full(&self) -> bool {
        self.outcomes.iter().any(|o| {
            matches!(o, Outcome::Failed(m) if m.contains("(os error 28)") || m.contains("(os error 122)"))
        })
    }

    /// Whether every selected instance has a result.
    pub fn ok(&self) -> bool {
        !self.interrupted
            && self
                .outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Cached(_) | Outcome::Ran(_) | Outcome::NotRun))
    }
}

/// Digests of every instance's external files. Missing files are `Err(path)`.
pub fn hash_files(plan: &Plan, cache: &Cache) -> Vec<BTreeMap<String, Result<FileRef, String>>> {
    plan.instances
        .iter()
        .map(|inst| {
            inst.files
                .iter()
                .map(|f| {
                    if let Err(e) = f.kind.check(&f.path) {
                        return (f.param.clone(), Err(e));
                    }
                    let r = cache.hash_path(&f.path).map_err(|e| match e {
                        cedm_cache::CacheError::Io { source, .. } => {
                            format!("{}: {source}", f.path.display())
                        }
                        other => other.to_string(),
                    });
                    (f.param.clone(), r)
                })
                .collect()
        })
        .collect()
}

/// Every missing or unreadable input file as a diagnostic pointing at its param.
pub fn file_problems(
    plan: &Plan,
    files: &[BTreeMap<String, Result<FileRef, String>>],
) -> Option<SpecError> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for (inst, fs) in plan.instances.iter().zip(files) {
        for (param, r) in fs {
            if let Err(msg) = r {
                let span = inst.file_spans.get(param).copied().unwrap_or(inst.span);
                if seen.insert((span.offset, msg.clone())) {
                    let path = inst
                        .files
                        .iter()
                        .find(|f| &f.param == param)
                        .map(|f| f.path.display().to_string());
                    problems.push(
                        Problem::new(
                            "cedm::run::missing_file",
                            format!(
                                "node `{}` ({}): cannot read `{param}`: {msg}",
                                inst.node,
                                inst.kind.kind()
                            ),
                            span,
                            "this file",
                        )
                        .with_help(format!(
                            "expected at {}; relative paths are resolved against {}",
                            path.unwrap_or_default(),
                            plan.experiment.dir.display()
                        )),
                    );
                }
            }
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(SpecError::new(
            &plan.experiment.shown,
            &plan.experiment.src,
            problems,
        ))
    }
}

/// For each instance of a trajectory kind, the next shorter instance of the same trajectory in
/// the plan (same node's kind, params other than the length, inputs and files), which it runs
/// after so that it resumes from it instead of both training from scratch side by side.
fn trajectory_order(plan: &Plan) -> Vec<Option<usize>> {
    let mut groups: BTreeMap<String, Vec<(f64, usize)>> = BTreeMap::new();
    for inst in &plan.instances {
        let Some(tr) = inst.kind.trajectory() else {
            continue;
        };
        let Some(length) = inst
            .key_params
            .get(tr.length)
            .and_then(serde_json::Value::as_f64)
        else {
            continue;
        };
        let mut rest = inst.params.clone();
        if let Some(m) = rest.as_object_mut() {
            m.remove(tr.length);
            for u in inst.kind.unkeyed_params() {
                m.remove(*u);
            }
        }
        let id = format!(
            "{}\0{}\0{:?}",
            inst.kind.kind(),
            crate::key::canonical_json(&rest),
            inst.inputs
        );
        groups.entry(id).or_default().push((length, inst.index));
    }
    let mut after = vec![None; plan.instances.len()];
    for g in groups.values_mut() {
        g.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for w in g.windows(2) {
            if w[0].0 < w[1].0 {
                after[w[1].1] = Some(w[0].1);
            }
        }
    }
    after
}

fn key_of(
    inst: &Instance,
    inputs: &BTreeMap<String, Digest>,
    files: &BTreeMap<String, Result<FileRef, String>>,
) -> Option<Digest> {
    let mut fd = BTreeMap::new();
    for (p, r) in files {
        fd.insert(p.clone(), r.as_ref().ok()?.digest);
    }
    Some(node_key(&KeyInput {
        kind: inst.kind.kind(),
        version: inst.kind.version(),
        params: &inst.key_params,
        inputs,
        files: &fd,
    }))
}

fn param_changes(old: &serde_json::Value, new: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let keys: BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for k in keys {
        match (o.get(k), n.get(k)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(a), Some(b)) => out.push(format!("{k}: {a} → {b}")),
            (None, Some(b)) => out.push(format!("{k}: (none) → {b}")),
            (Some(a), None) => out.push(format!("{k}: {a} → (none)")),
            (None, None) => {}
        }
    }
    out
}

/// Why `inst` (whose key is `key`, not cached) will run, compared with its last run.
/// `inputs`/`files` are the current digests when known.
fn explain(
    cache: &Cache,
    plan: &Plan,
    inst: &Instance,
    key: Option<&Digest>,
    inputs: Option<&BTreeMap<String, Digest>>,
    files: &BTreeMap<String, Result<FileRef, String>>,
) -> Option<Reason> {
    let Some(prev_key) = cache.get_ref(&plan.experiment.name, &inst.label) else {
        return Some(Reason::New);
    };
    if key == Some(&prev_key) {
        if cache.failure(&prev_key).ok().flatten().is_some() {
            return Some(Reason::Failed);
        }
        return Some(Reason::Damaged {
            problems: vec!["record missing".into()],
        });
    }
    let Some(prev) = cache.record(&prev_key).ok().flatten() else {
        return Some(Reason::Changed);
    };
    if prev.kind_version != inst.kind.version() {
        return Some(Reason::VersionBumped {
            from: prev.kind_version,
            to: inst.kind.version(),
        });
    }
    let changes = param_changes(&prev.params, &inst.key_params);
    if !changes.is_empty() {
        return Some(Reason::ParamsChanged { changes });
    }
    let changed_files: Vec<String> = files
        .iter()
        .filter(|(p, r)| match (r, prev.files.get(*p)) {
            (Ok(now), Some(then)) => now.digest != then.digest,
            _ => true,
        })
        .map(|(p, _)| p.clone())
        .collect();
    if !changed_files.is_empty() {
        return Some(Reason::FileChanged {
            params: changed_files,
        });
    }
    let inputs = inputs?;
    let slots: Vec<String> = inputs
        .iter()
        .filter(|(s, d)| prev.inputs.get(*s).is_none_or(|r| &r.digest != *d))
        .map(|(s, _)| s.clone())
        .collect();
    if slots.is_empty() {
        Some(Reason::Changed)
    } else {
        Some(Reason::InputChanged { slots })
    }
}

/// What to do with one instance: the one decision both [`status`] and the scheduler take.
#[derive(Clone, Debug)]
pub enum Decision {
    /// A valid record exists for its key.
    Cached {
        /// The key.
        key: Digest,
        /// The record.
        record: Record,
    },
    /// It has to run.
    Run {
        /// The key.
        key: Digest,
        /// Why.
        reason: Reason,
    },
    /// Its key needs outputs of upstream instances that are not known yet.
    Wait {
        /// Those upstream instances.
        on: Vec<String>,
        /// A reason that holds whatever their outputs turn out to be (new, own params changed,
        /// version bumped, file changed, forced).
        own: Option<Reason>,
    },
    /// A file it reads cannot be hashed (missing or unreadable).
    MissingFile {
        /// The param naming it.
        param: String,
        /// The path.
        path: String,
    },
}

impl Decision {
    /// As the planned [`Status`] of the instance.
    pub fn status(&self) -> Status {
        match self {
            Decision::Cached { key, .. } => Status::Cached { key: *key },
            Decision::Run { key, reason } => Status::WillRun {
                key: *key,
                reason: reason.clone(),
            },
            Decision::Wait { on, own } => Status::Waits {
                on: on.clone(),
                own: own.clone(),
            },
            Decision::MissingFile { param, path } => Status::MissingFile {
                param: param.clone(),
                path: path.clone(),
            },
        }
    }
}

/// Decide what to do with `inst`, given its external files' digests and what is known of its
/// inputs: `Ok(output digest per slot)` once every upstream instance has a result, else
/// `Err(the upstream instances still to run)`.
///
/// The key (see [`crate::key`]) is the blake3 of kind, version, key params, external file
/// digests and the inputs' **output digests** — not their keys. That is the early-cutoff rule:
/// when an upstream node re-runs and publishes the same bytes, this key is unchanged and the
/// node is a cache hit, so recomputation stops at the first node whose inputs did not change.
/// A `forced` instance runs whatever the cache holds; a record whose objects are damaged
/// runs again; otherwise a valid record for the key is a hit.
pub fn decide(
    cache: &Cache,
    plan: &Plan,
    inst: &Instance,
    files: &BTreeMap<String, Result<FileRef, String>>,
    inputs: Result<BTreeMap<String, Digest>, Vec<String>>,
    forced: bool,
) -> Decision {
    if let Some((param, Err(_))) = files.iter().find(|(_, r)| r.is_err()) {
        let path = inst
            .files
            .iter()
            .find(|f| &f.param == param)
            .map(|f| f.path.display().to_string());
        return Decision::MissingFile {
            param: param.clone(),
            path: path.unwrap_or_default(),
        };
    }
    let inputs = match inputs {
        Ok(i) => i,
        Err(on) => {
            let own = if forced {
                Some(Reason::Forced)
            } else {
                explain(cache, plan, inst, None, None, files).filter(|r| {
                    matches!(
                        r,
                        Reason::New
                            | Reason::ParamsChanged { .. }
                            | Reason::VersionBumped { .. }
                            | Reason::FileChanged { .. }
                    )
                })
            };
            return Decision::Wait { on, own };
        }
    };
    let Some(key) = key_of(inst, &inputs, files) else {
        // Unreachable: every file hashed (checked above).
        return Decision::Wait {
            on: vec![],
            own: None,
        };
    };
    if forced {
        return Decision::Run {
            key,
            reason: Reason::Forced,
        };
    }
    match cache.check(&key) {
        Ok(HitCheck::Hit(record)) => Decision::Cached { key, record },
        Ok(HitCheck::Damaged { problems, .. }) => Decision::Run {
            key,
            reason: Reason::Damaged {
                problems: problems.iter().map(|(n, p)| format!("{n}: {p}")).collect(),
            },
        },
        _ => {
            let why = explain(cache, plan, inst, Some(&key), Some(&inputs), files)
                .unwrap_or(Reason::Changed);
            let reason = match resumes_from(cache, inst, &inputs, files, &key) {
                Some((param, from)) => Reason::Extends {
                    param,
                    from,
                    why: why.to_string(),
                },
                None => why,
            };
            Decision::Run { key, reason }
        }
    }
}

/// For a trajectory kind: the longest cached run of its trajectory shorter than this one, which
/// it will continue from (as `task.rs` chooses it, short of checking the state's bytes).
fn resumes_from(
    cache: &Cache,
    inst: &Instance,
    inputs: &BTreeMap<String, Digest>,
    files: &BTreeMap<String, Result<FileRef, String>>,
    key: &Digest,
) -> Option<(String, f64)> {
    let tr = inst.kind.trajectory()?;
    let length = inst.key_params.get(tr.length)?.as_f64()?;
    let mut fd = BTreeMap::new();
    for (p, r) in files {
        fd.insert(p.clone(), r.as_ref().ok()?.digest);
    }
    let id = crate::key::trajectory_key(
        &KeyInput {
            kind: inst.kind.kind(),
            version: inst.kind.version(),
            params: &inst.key_params,
            inputs,
            files: &fd,
        },
        tr.length,
    );
    cache
        .snapshots(&id)
        .into_iter()
        .rev()
        .filter(|s| s.length <= length && s.key != *key)
        .find(|s| match cache.check(&s.key) {
            Ok(HitCheck::Hit(r)) => r.meta.resume.is_some(),
            _ => false,
        })
        .map(|s| (tr.length.to_string(), s.length))
}

/// The status of every instance: cached, will run (and why), waits on upstream, missing file.
///
/// Read-only: damaged objects are reported (the instance will run), not quarantined, and no
/// file-digest memo is written ([`Cache::read_only`]).
pub fn status(plan: &Plan, cache: &Cache, force: &[String]) -> Vec<Status> {
    let cache = &cache.read_only();
    let files = hash_files(plan, cache);
    let forced: BTreeSet<usize> = force.iter().flat_map(|f| plan.find(f)).collect();
    let mut out: Vec<Status> = Vec::with_capacity(plan.instances.len());
    let mut digests: Vec<Option<Digest>> = vec![None; plan.instances.len()];
    for inst in &plan.instances {
        let mut inputs = BTreeMap::new();
        let mut waits = Vec::new();
        for (slot, &up) in &inst.inputs {
            match digests[up] {
                Some(d) => {
                    inputs.insert(slot.clone(), d);
                }
                None => waits.push(plan.instances[up].label.clone()),
            }
        }
        let known = if waits.is_empty() {
            Ok(inputs)
        } else {
            Err(waits)
        };
        let d = decide(
            cache,
            plan,
            inst,
            &files[inst.index],
            known,
            forced.contains(&inst.index),
        );
        if let Decision::Cached { record, .. } = &d {
            digests[inst.index] = Some(record.output_digest);
        }
        out.push(d.status());
    }
    out
}

#[derive(Clone, Debug)]
enum State {
    Pending,
    Running,
    Done(Record, bool),
    Failed(String),
    Blocked(String),
    NotRun,
}

fn emit(reporter: &dyn Reporter, inst: &Instance, kind: EventKind) {
    reporter.event(&Event {
        instance: inst.label.clone(),
        node: inst.node.clone(),
        kind,
    });
}

/// Run a plan: every selected instance ends cached, ran, failed, or blocked.
///
/// # Errors
/// Missing input files (before anything runs).
pub fn run(plan: &Plan, engine: &Engine<'_>, opts: &RunOptions) -> Result<RunSummary, SpecError> {
    run_with(plan, engine, opts, &LocalExecutor)
}

/// [`run`] with a chosen executor.
///
/// # Errors
/// Missing input files (before anything runs).
pub fn run_with(
    plan: &Plan,
    engine: &Engine<'_>,
    opts: &RunOptions,
    executor: &dyn Executor,
) -> Result<RunSummary, SpecError> {
    let t0 = Instant::now();
    let cache = engine.cache;
    let reporter = engine.reporter;
    let files = hash_files(plan, cache);
    if let Some(e) = file_problems(plan, &files) {
        return Err(e);
    }
    let device = opts.device.or(plan.device).unwrap_or_default();
    let n = plan.instances.len();
    let selected: BTreeSet<usize> = if opts.only.is_empty() {
        (0..n).collect()
    } else {
        let roots: Vec<usize> = opts.only.iter().flat_map(|o| plan.find(o)).collect();
        plan.ancestors(&roots)
    };
    let forced: BTreeSet<usize> = opts.force.iter().flat_map(|f| plan.find(f)).collect();
    let statuses = status(plan, cache, &opts.force);
    for (inst, st) in plan.instances.iter().zip(&statuses) {
        let st = if selected.contains(&inst.index) {
            st.clone()
        } else {
            Status::Skipped
        };
        emit(reporter, inst, EventKind::Planned { status: st });
    }
    let mut state: Vec<State> = (0..n)
        .map(|i| {
            if selected.contains(&i) {
                State::Pending
            } else {
                State::NotRun
            }
        })
        .collect();
    let after = trajectory_order(plan);
    let jobs = opts.jobs.max(1);
    // Local runs share this machine's accelerators through a pool of slots; a batch executor
    // leaves GPUs to the batch system.
    let mut pool = (device.is_gpu() && executor.shares_host_gpu()).then(|| {
        let devices = if opts.gpus.is_empty() {
            vec![device.index()]
        } else {
            opts.gpus.clone()
        };
        GpuPool::new(devices, opts.gpu_mem_mb)
    });
    let mut placements: Vec<Option<Placement>> = vec![None; n];
    // Each instance's GPU memory need, read (from its last record) once, not on every pass.
    let mut needs: Vec<Option<Option<u64>>> = vec![None; n];
    let shared_tokens = SharedTokens::default();
    let mut running = 0usize;
    let (tx, rx) = mpsc::channel::<(usize, Result<TaskOutcome, TaskError>)>();
    let mut interrupted = false;
    let mut keys: Vec<Option<Digest>> = vec![None; n];
    std::thread::scope(|scope| {
        loop {
            // Promote pending instances whose inputs are done; dispatch while there is room.
            let mut progressed = true;
            while progressed {
                progressed = false;
                for i in 0..n {
                    if !matches!(state[i], State::Pending) {
                        continue;
                    }
                    let inst = &plan.instances[i];
                    if let Some((_, &up)) = inst
                        .inputs
                        .iter()
                        .find(|(_, u)| matches!(state[**u], State::Failed(_) | State::Blocked(_)))
                    {
                        state[i] = State::Blocked(plan.instances[up].label.clone());
                        emit(
                            reporter,
                            inst,
                            EventKind::Blocked {
                                on: plan.instances[up].label.clone(),
                            },
                        );
                        progressed = true;
                        continue;
                    }
                    if inst
                        .inputs
                        .values()
                        .any(|&u| !matches!(state[u], State::Done(..)))
                    {
                        continue;
                    }
                    // A longer run of a trajectory waits for the next shorter one, to resume
                    // from it (whatever its outcome).
                    if after[i].is_some_and(|a| matches!(state[a], State::Pending | State::Running))
                    {
                        continue;
                    }
                    let mut inputs = BTreeMap::new();
                    let mut input_refs = BTreeMap::new();
                    for (slot, &u) in &inst.inputs {
                        if let State::Done(r, _) = &state[u] {
                            inputs.insert(slot.clone(), r.output_digest);
                            input_refs.insert(
                                slot.clone(),
                                InputRef {
                                    key: r.key,
                                    digest: r.output_digest,
                                },
                            );
                        }
                    }
                    let (key, reason) = match decide(
                        cache,
                        plan,
                        inst,
                        &files[i],
                        Ok(inputs),
                        forced.contains(&i),
                    ) {
                        Decision::Cached { key, record: r } => {
                            let _ = cache.set_ref(&plan.experiment.name, &inst.label, &key);
                            emit(
                                reporter,
                                inst,
                                EventKind::CacheHit {
                                    key,
                                    digest: r.output_digest,
                                    by_other: false,
                                },
                            );
                            state[i] = State::Done(r, false);
                            progressed = true;
                            continue;
                        }
                        Decision::Run { key, reason } => (key, reason),
                        // Files were checked before anything ran, and every input is done.
                        Decision::Wait { .. } | Decision::MissingFile { .. } => continue,
                    };
                    if opts.stop.load(Ordering::Relaxed) {
                        interrupted = true;
                        continue;
                    }
                    if running >= jobs {
                        continue;
                    }
                    let placement = match &pool {
                        Some(pool) if inst.resources.gpus > 0 => {
                            let need = GpuNeed {
                                gpus: inst.resources.gpus,
                                mem_mb: *needs[i]
                                    .get_or_insert_with(|| gpu_need_mb(cache, plan, inst)),
                            };
                            match pool.place(need) {
                                Some(p) => Some(p),
                                None => continue,
                            }
                        }
                        _ => None,
                    };
                    let task_device = match (&pool, &placement) {
                        (Some(pool), Some(p)) if !p.slots.is_empty() => {
                            device.with_index(pool.device(p.slots[0]))
                        }
                        _ => device,
                    };
                    let task = Task {
                        key,
                        experiment: plan.experiment.name.clone(),
                        node: inst.node.clone(),
                        instance: inst.label.clone(),
                        kind: inst.kind.kind().to_string(),
                        version: inst.kind.version(),
                        params: inst.params.clone(),
                        key_params: inst.key_params.clone(),
                        inputs: input_refs,
                        files: files[i]
                            .iter()
                            .filter_map(|(p, r)| r.as_ref().ok().map(|f| (p.clone(), f.clone())))
                            .collect(),
                        device: task_device,
                        reason,
                        resources: crate::task::BatchResources::resolve(
                            inst.kind,
                            inst.resources.gpus,
                            &inst.resource_spec,
                        ),
                    };
                    state[i] = State::Running;
                    keys[i] = Some(key);
                    running += 1;
                    // The devices the node holds, for the token locks below.
                    let held: Vec<(DeviceSpec, bool)> = match (&mut pool, &placement) {
                        (Some(pool), Some(p)) => {
                            pool.take(p);
                            p.slots
                                .iter()
                                .map(|&s| {
                                    (device.with_index(pool.device(s)), p.shared_mb.is_some())
                                })
                                .collect()
                        }
                        _ => Vec::new(),
                    };
                    placements[i] = placement;
                    let tx = tx.clone();
                    let stop = opts.stop.clone();
                    let shared_tokens = &shared_tokens;
                    scope.spawn(move || {
                        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            // A GPU is shared by every cedm process on this cache: a token lock
                            // per device keeps two trainings off it. Nodes sharing a device in
                            // this run hold its token together.
                            let mut _tokens = Vec::new();
                            for (d, shared) in &held {
                                _tokens.push(if *shared {
                                    TokenHold::Shared(
                                        shared_tokens.acquire(cache, d, &task, reporter, &stop)?,
                                    )
                                } else {
                                    TokenHold::Alone(wait_token(cache, d, &task, reporter, &stop)?)
                                });
                            }
                            executor.execute(&task, engine, &stop)
                        }))
                        .unwrap_or_else(|p| {
                            Err(TaskError::Node(format!(
                                "executor panicked: {:?}",
                                p.downcast_ref::<String>()
                            )))
                        });
                        let _ = tx.send((i, out));
                    });
                    progressed = true;
                }
            }
            if running == 0 {
                break;
            }
            let Ok((i, out)) = rx.recv() else { break };
            running -= 1;
            let inst = &plan.instances[i];
            if let (Some(pool), Some(p)) = (&mut pool, placements[i].take()) {
                pool.release(&p);
            }
            match out {
                Ok(o) => {
                    let r = o.record().clone();
                    let _ = cache.set_ref(&plan.experiment.name, &inst.label, &r.key);
                    let ran = matches!(o, TaskOutcome::Ran(_));
                    match o {
                        TaskOutcome::Hit(_) => emit(
                            reporter,
                            inst,
                            EventKind::CacheHit {
                                key: r.key,
                                digest: r.output_digest,
                                by_other: true,
                            },
                        ),
                        TaskOutcome::Ran(_) => emit(
                            reporter,
                            inst,
                            EventKind::Finished {
                                key: r.key,
                                digest: r.output_digest,
                                seconds: r.meta.seconds,
                                outputs: r.outputs.len(),
                                bytes: r.output_bytes(),
                            },
                        ),
                    }
                    state[i] = State::Done(r, ran);
                }
                Err(TaskError::Interrupted) => {
                    interrupted = true;
                    state[i] = State::NotRun;
                }
                Err(e) => {
                    interrupted |= matches!(e, TaskError::NodeInterrupted);
                    let error = crate::task::error_chain(&e);
                    if let Some(k) = keys[i] {
                        let _ = cache.set_ref(&plan.experiment.name, &inst.label, &k);
                    }
                    emit(
                        reporter,
                        inst,
                        EventKind::Failed {
                            key: keys[i],
                            error: error.clone(),
                        },
                    );
                    state[i] = State::Failed(error);
                }
            }
        }
    });
    if opts.stop.load(Ordering::Relaxed) {
        interrupted = true;
    }
    let outcomes = state
        .into_iter()
        .map(|s| match s {
            State::Done(r, true) => Outcome::Ran(r),
            State::Done(r, false) => Outcome::Cached(r),
            State::Failed(e) => Outcome::Failed(e),
            State::Blocked(on) => Outcome::Blocked(on),
            State::Pending | State::Running | State::NotRun => Outcome::NotRun,
        })
        .collect();
    Ok(RunSummary {
        outcomes,
        seconds: t0.elapsed().as_secs_f64(),
        interrupted,
    })
}

/// The device memory (MiB) a node asks for, when known: the YAML's `gpu_mem`; else, for a
/// kind that declares an estimate, the peak its last run of this instance measured
/// (right-sized), else the estimate. A kind without an estimate (a training) holds its device
/// alone unless the YAML says otherwise.
fn gpu_need_mb(cache: &Cache, plan: &Plan, inst: &Instance) -> Option<u64> {
    if inst.resource_spec.gpu_mem.is_some() {
        return inst.resources.gpu_mem_mb;
    }
    let estimate = inst.resources.gpu_mem_mb?;
    let measured = cache
        .get_ref(&plan.experiment.name, &inst.label)
        .and_then(|k| cache.record(&k).ok().flatten())
        .and_then(|r| r.meta.stats.get(crate::node::GPU_PEAK_STAT).copied())
        .filter(|p| p.is_finite() && *p > 0.0);
    Some(measured.map_or(estimate, crate::gpu::right_sized_mb))
}

/// A device token held by one node alone, or together with the other nodes of this run that
/// share the device.
enum TokenHold<'a> {
    Alone(#[allow(dead_code)] cedm_cache::LockGuard),
    Shared(#[allow(dead_code)] SharedToken<'a>),
}

/// The device tokens that nodes sharing a device in this run hold together: the first sharer
/// takes the device's token, the last one gives it back.
#[derive(Default)]
struct SharedTokens {
    held: std::sync::Mutex<BTreeMap<DeviceSpec, (usize, Option<cedm_cache::LockGuard>)>>,
}

/// One sharer's hold on a device token.
struct SharedToken<'a> {
    tokens: &'a SharedTokens,
    device: DeviceSpec,
}

impl Drop for SharedToken<'_> {
    fn drop(&mut self) {
        let mut held = self
            .tokens
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = held.get_mut(&self.device) {
            e.0 = e.0.saturating_sub(1);
            if e.0 == 0 {
                held.remove(&self.device);
            }
        }
    }
}

impl SharedTokens {
    fn acquire<'a>(
        &'a self,
        cache: &Cache,
        device: &DeviceSpec,
        task: &Task,
        reporter: &dyn Reporter,
        stop: &AtomicBool,
    ) -> Result<SharedToken<'a>, TaskError> {
        let name = format!("device-{}-{device}", cedm_cache::hostname());
        let mut announced = false;
        loop {
            {
                let mut held = self
                    .held
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(e) = held.get_mut(device) {
                    e.0 += 1;
                    return Ok(SharedToken {
                        tokens: self,
                        device: *device,
                    });
                }
                match cache.try_lock_named(&name, &format!("{} (shared)", task.instance))? {
                    Ok(g) => {
                        held.insert(*device, (1, Some(g)));
                        return Ok(SharedToken {
                            tokens: self,
                            device: *device,
                        });
                    }
                    Err(owner) if !announced => {
                        announce_waiting(reporter, task, device, &owner);
                        announced = true;
                    }
                    Err(_) => {}
                }
            }
            if stop.load(Ordering::Relaxed) {
                return Err(TaskError::Interrupted);
            }
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }
}

/// Say once that a node waits for a device another holder has.
fn announce_waiting(
    reporter: &dyn Reporter,
    task: &Task,
    device: &DeviceSpec,
    owner: &cedm_cache::LockOwner,
) {
    reporter.event(&Event {
        instance: task.instance.clone(),
        node: task.node.clone(),
        kind: EventKind::Waiting {
            holder: format!(
                "{device} held by {} ({}:{})",
                owner.purpose, owner.host, owner.pid
            ),
        },
    });
}

fn wait_token(
    cache: &Cache,
    device: &DeviceSpec,
    task: &Task,
    reporter: &dyn Reporter,
    stop: &AtomicBool,
) -> Result<cedm_cache::LockGuard, TaskError> {
    let name = format!("device-{}-{device}", cedm_cache::hostname());
    let mut announced = false;
    loop {
        match cache.try_lock_named(&name, &task.instance)? {
            Ok(g) => return Ok(g),
            Err(owner) => {
                if !announced {
                    announce_waiting(reporter, task, device, &owner);
                    announced = true;
                }
                if stop.load(Ordering::Relaxed) {
                    return Err(TaskError::Interrupted);
                }
                std::thread::sleep(std::time::Duration::from_millis(250));
            }
        }
    }
}

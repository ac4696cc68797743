//! Events the engine emits while planning and running; the CLI renders them.

use cedm_cache::Digest;
use serde::{Deserialize, Serialize};

use crate::node::Progress;

/// Why a node will run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reason {
    /// Never computed for this experiment's node instance.
    New,
    /// Params differ from the last run of this instance (the changed fields).
    ParamsChanged {
        /// `field: old → new` per changed field.
        changes: Vec<String>,
    },
    /// An upstream node's output changed.
    InputChanged {
        /// The slots whose artifacts differ.
        slots: Vec<String>,
    },
    /// An external file (dataset, weights) changed content.
    FileChanged {
        /// The params naming changed files.
        params: Vec<String>,
    },
    /// The kind's implementation version changed.
    VersionBumped {
        /// Version of the last run.
        from: u32,
        /// Current version.
        to: u32,
    },
    /// The record exists but an object is missing or corrupt.
    Damaged {
        /// `output: problem` per damaged output.
        problems: Vec<String>,
    },
    /// `--force` asked for it.
    Forced,
    /// The last run of this key failed.
    Failed,
    /// Computed before for a different key; why it differs could not be determined.
    Changed,
    /// A longer run of a trajectory: it continues from a cached shorter one.
    Extends {
        /// The length param.
        param: String,
        /// The length it continues from.
        from: f64,
        /// Why it runs at all (the reason it would have otherwise).
        why: String,
    },
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::New => write!(f, "new"),
            Reason::ParamsChanged { changes } => {
                write!(f, "params changed: {}", changes.join(", "))
            }
            Reason::InputChanged { slots } => write!(f, "input changed: {}", slots.join(", ")),
            Reason::FileChanged { params } => write!(f, "file changed: {}", params.join(", ")),
            Reason::VersionBumped { from, to } => write!(f, "kind version bumped {from} → {to}"),
            Reason::Damaged { problems } => {
                write!(f, "cached output damaged: {}", problems.join("; "))
            }
            Reason::Forced => write!(f, "forced"),
            Reason::Failed => write!(f, "last run failed"),
            Reason::Changed => write!(f, "changed"),
            Reason::Extends { param, from, why } => {
                write!(f, "{why}; continues the cached {param} = {from}")
            }
        }
    }
}

/// The planned state of a node instance before running.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// A valid record exists for its key.
    Cached {
        /// The key.
        key: Digest,
    },
    /// It will run.
    WillRun {
        /// The key.
        key: Digest,
        /// Why.
        #[serde(flatten)]
        reason: Reason,
    },
    /// Its key depends on upstream nodes that have to run first.
    Waits {
        /// The upstream instances that will run.
        on: Vec<String>,
        /// A reason that applies whatever the upstream outputs turn out to be (own params
        /// changed, version bumped, new).
        own: Option<Reason>,
    },
    /// A file it reads does not exist.
    MissingFile {
        /// The param.
        param: String,
        /// The path.
        path: String,
    },
    /// Not selected (`--only`).
    Skipped,
}

/// What happened to a node instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The plan for this instance (emitted once per instance before anything runs).
    Planned {
        /// Its status.
        status: Status,
    },
    /// Its result was found in the cache.
    CacheHit {
        /// Key.
        key: Digest,
        /// Combined output digest.
        digest: Digest,
        /// Whether another process computed it while we waited.
        by_other: bool,
    },
    /// Another process holds the lock of this key; we wait for its result.
    Waiting {
        /// Who holds it (`host:pid`).
        holder: String,
    },
    /// It started computing.
    Started {
        /// Key.
        key: Digest,
        /// Why it runs.
        reason: Reason,
    },
    /// It reported progress.
    Progress(Progress),
    /// It logged a line.
    Log {
        /// The line.
        line: String,
    },
    /// It finished and its result is published.
    Finished {
        /// Key.
        key: Digest,
        /// Combined output digest.
        digest: Digest,
        /// Wall seconds.
        seconds: f64,
        /// Output files.
        outputs: usize,
        /// Output bytes.
        bytes: u64,
    },
    /// It failed; nothing was published.
    Failed {
        /// Key, when known.
        key: Option<Digest>,
        /// The error.
        error: String,
    },
    /// It cannot run because an upstream instance failed.
    Blocked {
        /// The failed upstream instance.
        on: String,
    },
}

/// An event about one node instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The instance label.
    pub instance: String,
    /// The node id.
    pub node: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Receives events. Implementations must be cheap and must not block for long.
pub trait Reporter: Send + Sync {
    /// One event.
    fn event(&self, e: &Event);
}

/// A reporter that drops everything.
pub struct Silent;

impl Reporter for Silent {
    fn event(&self, _e: &Event) {}
}

/// A reporter that keeps every event (tests).
#[derive(Default)]
pub struct Collect(pub std::sync::Mutex<Vec<Event>>);

impl Reporter for Collect {
    fn event(&self, e: &Event) {
        if let Ok(mut v) = self.0.lock() {
            v.push(e.clone());
        }
    }
}

impl Collect {
    /// Labels of instances that had this kind of event.
    pub fn labels(&self, pred: impl Fn(&EventKind) -> bool) -> Vec<String> {
        let v = self.0.lock().map(|v| v.clone()).unwrap_or_default();
        let mut out: Vec<String> = v
            .iter()
            .filter(|e| pred(&e.kind))
            .map(|e| e.instance.clone())
            .collect();
        out.sort();
        out
    }
}

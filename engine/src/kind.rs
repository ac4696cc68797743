//! The typed face of a node kind. A kind declares its name, version, slots and a `Params` type
//! once, as constants and an associated type; the engine deserialises the params (serde, with
//! `deny_unknown_fields` and defaults), checks them with [`Kind::validate`], and hands the typed
//! value to [`Kind::run`]. A blanket impl turns every [`Kind`] into the object-safe [`Node`] the
//! planner and the scheduler work with, so no kind parses its params by hand or repeats the
//! `Node` boilerplate.
//!
//! ```ignore
//! pub struct Knn;
//! impl Kind for Knn {
//!     const KIND: &'static str = "features/knn";
//!     const VERSION: u32 = 1;
//!     const ABOUT: &'static str = "exact top-k cosine neighbours";
//!     const INPUTS: &'static [Slot] = &[Slot::one("features", "a feature artifact")];
//!     type Params = Params;
//!     fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> { … }
//! }
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::node::{
    Checked, FileParam, Node, NodeError, ParamError, RunContext, Slot, check_typed_all,
};
use crate::resources::{BatchDefaults, Resources};

/// A node kind with typed params. See the module docs.
pub trait Kind: Send + Sync + 'static {
    /// The kind name used in YAML, e.g. `cluster/temi`.
    const KIND: &'static str;
    /// Implementation version; bump it whenever the output bytes change. Part of the key.
    const VERSION: u32;
    /// One line saying what the node does.
    const ABOUT: &'static str;
    /// Input slots.
    const INPUTS: &'static [Slot];
    /// Params that say *how* to compute, not *what* (e.g. the devices of a data-parallel
    /// training): the node sees them, the key leaves them out, so changing them reuses the cache.
    const UNKEYED: &'static [&'static str] = &[];
    /// For a computation that a longer run continues (a training): how its length is named and
    /// where it keeps its resumable state. See [`Trajectory`].
    const TRAJECTORY: Option<Trajectory> = None;

    /// The params (each field documented with its default and source: `cedm kinds` and
    /// `docs/nodes.md` are generated from the schema).
    type Params: DeserializeOwned + Serialize + schemars::JsonSchema;

    /// Checks beyond what the types say, returning every problem found (not only the first).
    /// Must not touch files.
    fn validate(_p: &Self::Params) -> Vec<ParamError> {
        Vec::new()
    }

    /// The params that name files outside the cache (hashed by content into the key).
    fn files(_p: &Self::Params) -> Vec<FileParam> {
        Vec::new()
    }

    /// What a run needs from the machine.
    fn resources(_p: &Self::Params) -> Resources {
        Resources::default()
    }

    /// What a batch job of this kind reserves by default; `resources:` in the YAML overrides it.
    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::default()
    }

    /// Compute the outputs into `ctx.out_dir()`.
    ///
    /// # Errors
    /// Anything that stops the node; nothing is published then.
    fn run(&self, p: Self::Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError>;
}

/// A kind whose result at length L is a prefix of its result at any longer length: a training
/// whose every step depends only on the steps before it (not on how long the run will be).
///
/// The engine then treats the runs that differ only in `length` as one trajectory: a run
/// publishes its snapshots ([`RunContext::snapshot`]) under the keys of the shorter runs they
/// equal, so asking for one of those is a cache hit; a run of a longer length starts from the
/// longest snapshot cached, by placing its state in the work directory as `state` before the
/// kind runs (the kind resumes from it as from its own checkpoint). Keys are unchanged: a
/// snapshot's key is the key the shorter run has. The kind promises that its outputs at length
/// L are the same bytes whether it ran to L fresh, resumed from a snapshot, or published L as a
/// snapshot of a longer run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Trajectory {
    /// The param that says how far to run (a number, e.g. `duration_kimg`).
    pub length: &'static str,
    /// The file in the work directory that holds the resumable state (the kind's checkpoint).
    pub state: &'static str,
}

/// JSON schema of a params type (field docs and defaults), for `cedm kinds` and the docs.
pub fn schema<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T))
        .unwrap_or_else(|e| serde_json::json!({"description": format!("schema unavailable: {e}")}))
}

impl<K: Kind> Node for K {
    fn kind(&self) -> &'static str {
        K::KIND
    }
    fn version(&self) -> u32 {
        K::VERSION
    }
    fn about(&self) -> &'static str {
        K::ABOUT
    }
    fn inputs(&self) -> &'static [Slot] {
        K::INPUTS
    }
    fn params_schema(&self) -> serde_json::Value {
        schema::<K::Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, Vec<ParamError>> {
        let (p, canonical) = check_typed_all::<K::Params>(params)?;
        let problems = K::validate(&p);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Checked {
            params: canonical,
            files: K::files(&p),
            resources: K::resources(&p),
        })
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: K::Params = ctx.params()?;
        Kind::run(self, p, ctx)
    }
    fn unkeyed_params(&self) -> &'static [&'static str] {
        K::UNKEYED
    }
    fn trajectory(&self) -> Option<Trajectory> {
        K::TRAJECTORY
    }
    fn batch_defaults(&self) -> BatchDefaults {
        K::batch_defaults()
    }
}

/// Validation helpers for [`Kind::validate`]: each returns the problem it finds, if any, so a
/// kind lists its checks and collects every failure.
pub mod rules {
    use crate::node::ParamError;

    /// `value` must be at least `min`.
    pub fn at_least(field: &str, value: usize, min: usize) -> Option<ParamError> {
        (value < min).then(|| ParamError::invalid(field, format!("must be at least {min}")))
    }

    /// `value` must lie in `[lo, hi]` (NaN never does).
    pub fn within(field: &str, value: f64, lo: f64, hi: f64) -> Option<ParamError> {
        (!(lo..=hi).contains(&value))
            .then(|| ParamError::invalid(field, format!("must be in [{lo}, {hi}]")))
    }

    /// `value` must be positive and finite.
    pub fn positive(field: &str, value: f64) -> Option<ParamError> {
        (!(value > 0.0 && value.is_finite()))
            .then(|| ParamError::invalid(field, "must be positive"))
    }

    /// `value` must be at most `max` (sizes from params, against cedm's caps:
    /// [`crate::limits`]).
    pub fn at_most(field: &str, value: usize, max: usize) -> Option<ParamError> {
        (value > max).then(|| ParamError::invalid(field, format!("must be at most {max}")))
    }

    /// An image side from a param: at most [`crate::limits::MAX_SIDE`] pixels.
    pub fn side(field: &str, value: usize) -> Option<ParamError> {
        at_most(field, value, crate::limits::MAX_SIDE)
    }

    /// The product of several params (an allocation they size together) must stay within
    /// `max`; the problem is reported at the first of them.
    pub fn product_at_most(fields: &[(&str, usize)], max: usize) -> Option<ParamError> {
        let dims: Vec<usize> = fields.iter().map(|f| f.1).collect();
        if crate::limits::product(&dims, max).is_some() {
            return None;
        }
        let names: Vec<String> = fields.iter().map(|(f, v)| format!("{f} ({v})")).collect();
        Some(ParamError::invalid(
            fields.first().map_or("", |f| f.0),
            format!("{} is more than {max}", names.join(" × ")),
        ))
    }
}

//! Toy node kinds for testing the engine (and demonstrating it) without any machine learning.
//!
//! The `cedm` binary registers them only when `CEDM_TOY_KINDS=1`, so its end-to-end tests (crash
//! safety, concurrent runs, sweeps) can drive the real CLI on nodes that take milliseconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kind::Kind;
use crate::node::{FileParam, NodeError, Registry, RunContext, Slot};
use crate::resources::Resources;

/// How many times any toy node ran its `run` in this process (tests count executions).
pub static RUNS: AtomicUsize = AtomicUsize::new(0);

fn read_value(ctx: &RunContext<'_>, slot: &str) -> Result<Option<i64>, NodeError> {
    let Some(a) = ctx.input(slot) else {
        return Ok(None);
    };
    let p = a.path("value.txt")?;
    let s = std::fs::read_to_string(p).map_err(NodeError::io("reading", p))?;
    s.trim()
        .parse()
        .map(Some)
        .map_err(|e| NodeError::msg(format!("input `{slot}`: bad value: {e}")))
}

fn write_value(ctx: &RunContext<'_>, v: i64) -> Result<(), NodeError> {
    let p = ctx.out_dir().join("value.txt");
    std::fs::write(&p, format!("{v}\n")).map_err(NodeError::io("writing", &p))
}

/// Params of `toy/value`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ValueParams {
    /// The number written out.
    pub value: i64,
    /// Free text that does not change the output (to test early cutoff).
    #[serde(default)]
    pub note: String,
}

/// `toy/value`: writes a number.
pub struct Value;

impl Kind for Value {
    const KIND: &'static str = "toy/value";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Writes `value` to value.txt (toy kind for engine tests).";
    const INPUTS: &'static [Slot] = &[];
    type Params = ValueParams;
    fn run(&self, p: ValueParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        ctx.log(format!("value {}", p.value));
        write_value(ctx, p.value)
    }
}

/// Params of `toy/add`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddParams {
    /// Added to the inputs' sum.
    #[serde(default)]
    pub k: i64,
    /// Milliseconds to sleep (in steps of 10 ms, stopping early when asked).
    #[serde(default)]
    pub sleep_ms: u64,
    /// Fail instead of writing a result.
    #[serde(default)]
    pub fail: bool,
    /// Panic instead of writing a result (tests that a panic is a one-line node failure).
    #[serde(default)]
    pub panic: bool,
    /// Pretend to need an accelerator.
    #[serde(default)]
    pub gpus: u32,
}

/// `toy/add`: a + b + k.
pub struct Add;

impl Kind for Add {
    const KIND: &'static str = "toy/add";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Writes a + b + k (toy kind for engine tests).";
    const INPUTS: &'static [Slot] = &[
        Slot::one("a", "a toy value"),
        Slot::optional("b", "a toy value"),
    ];
    type Params = AddParams;
    fn resources(p: &AddParams) -> Resources {
        Resources { gpus: p.gpus }
    }
    fn run(&self, p: AddParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let steps = p.sleep_ms / 10;
        for s in 0..steps {
            if ctx.should_stop() {
                return Err(NodeError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(10));
            ctx.progress(s + 1, Some(steps), "step", None);
        }
        if p.fail {
            return Err(NodeError::msg("asked to fail"));
        }
        if p.panic {
            panic!("asked to panic\nsecond line of the message");
        }
        let a = read_value(ctx, "a")?.unwrap_or(0);
        let b = read_value(ctx, "b")?.unwrap_or(0);
        ctx.log(format!("{a} + {b} + {}", p.k));
        write_value(ctx, a + b + p.k)
    }
}

/// Params of `toy/file`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    /// A file whose length in bytes is written out.
    pub path: String,
}

/// `toy/file`: the length of an external file (tests file params).
pub struct FileLen;

impl Kind for FileLen {
    const KIND: &'static str = "toy/file";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Writes the byte length of `path` (toy kind for engine tests).";
    const INPUTS: &'static [Slot] = &[];
    type Params = FileParams;
    fn files(p: &FileParams) -> Vec<FileParam> {
        vec![FileParam::new("path", &p.path)]
    }
    fn run(&self, p: FileParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let len = std::fs::metadata(&p.path)
            .map_err(NodeError::io("reading", p.path.as_ref()))?
            .len();
        write_value(ctx, len as i64)
    }
}

/// Params of `toy/sum`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SumParams {
    /// A tag (lets a test make the consumer depend on a swept variable).
    #[serde(default)]
    pub tag: String,
}

/// `toy/sum`: the sum of every gathered value (tests gather slots).
pub struct Sum;

impl Kind for Sum {
    const KIND: &'static str = "toy/sum";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Writes the sum of all gathered values (toy kind for engine tests).";
    const INPUTS: &'static [Slot] = &[Slot::gather(
        "values",
        "toy values, gathered across the sweep",
    )];
    type Params = SumParams;
    fn run(&self, _p: SumParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let mut total = 0;
        let n = ctx.inputs_many("values").len();
        for a in ctx.inputs_many("values") {
            let p = a.path("value.txt")?;
            let s = std::fs::read_to_string(p).map_err(NodeError::io("reading", p))?;
            total += s
                .trim()
                .parse::<i64>()
                .map_err(|e| NodeError::msg(e.to_string()))?;
        }
        ctx.log(format!("{n} values"));
        write_value(ctx, total)
    }
}

/// Register the toy kinds.
pub fn register(r: &mut Registry) {
    r.register(&Value)
        .register(&Add)
        .register(&FileLen)
        .register(&Sum);
}

/// A registry holding only the toy kinds.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}

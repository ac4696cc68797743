//! Toy node kinds for testing the engine (and demonstrating it) without any machine learning.
//!
//! The `cedm` binary registers them only when `CEDM_TOY_KINDS=1`, so its end-to-end tests (crash
//! safety, concurrent runs, sweeps) can drive the real CLI on nodes that take milliseconds.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::node::{
    Checked, Node, NodeError, ParamError, Registry, Resources, RunContext, Slot, check_typed,
};

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
#[derive(Debug, Serialize, Deserialize)]
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

impl Node for Value {
    fn kind(&self) -> &'static str {
        "toy/value"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Writes `value` to value.txt (toy kind for engine tests)."
    }
    fn inputs(&self) -> &'static [Slot] {
        &[]
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::json!({"properties": {"value": {"type": "integer"}, "note": {"type": "string", "default": ""}}, "required": ["value"]})
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (_, params) = check_typed::<ValueParams>(params)?;
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources::default(),
        })
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let p: ValueParams = ctx.params()?;
        ctx.log(format!("value {}", p.value));
        write_value(ctx, p.value)
    }
}

/// Params of `toy/add`.
#[derive(Debug, Serialize, Deserialize)]
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
    /// Pretend to need an accelerator.
    #[serde(default)]
    pub gpus: u32,
}

/// `toy/add`: a + b + k.
pub struct Add;

impl Node for Add {
    fn kind(&self) -> &'static str {
        "toy/add"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Writes a + b + k (toy kind for engine tests)."
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[
            Slot::one("a", "a toy value"),
            Slot::optional("b", "a toy value"),
        ];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::json!({"properties": {"k": {"type": "integer", "default": 0}, "sleep_ms": {"type": "integer", "default": 0}, "fail": {"type": "boolean", "default": false}}})
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<AddParams>(params)?;
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources { gpus: p.gpus },
        })
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let p: AddParams = ctx.params()?;
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
        let a = read_value(ctx, "a")?.unwrap_or(0);
        let b = read_value(ctx, "b")?.unwrap_or(0);
        ctx.log(format!("{a} + {b} + {}", p.k));
        write_value(ctx, a + b + p.k)
    }
}

/// Params of `toy/file`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileParams {
    /// A file whose length in bytes is written out.
    pub path: String,
}

/// `toy/file`: the length of an external file (tests file params).
pub struct FileLen;

impl Node for FileLen {
    fn kind(&self) -> &'static str {
        "toy/file"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Writes the byte length of `path` (toy kind for engine tests)."
    }
    fn inputs(&self) -> &'static [Slot] {
        &[]
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::json!({"properties": {"path": {"type": "string"}}, "required": ["path"]})
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<FileParams>(params)?;
        Ok(Checked {
            params,
            files: vec![crate::node::FileParam {
                param: "path".into(),
                path: p.path.into(),
            }],
            resources: Resources::default(),
        })
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let p: FileParams = ctx.params()?;
        let len = std::fs::metadata(&p.path)
            .map_err(NodeError::io("reading", p.path.as_ref()))?
            .len();
        write_value(ctx, len as i64)
    }
}

/// Params of `toy/sum`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SumParams {
    /// A tag (lets a test make the consumer depend on a swept variable).
    #[serde(default)]
    pub tag: String,
}

/// `toy/sum`: the sum of every gathered value (tests gather slots).
pub struct Sum;

impl Node for Sum {
    fn kind(&self) -> &'static str {
        "toy/sum"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Writes the sum of all gathered values (toy kind for engine tests)."
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::gather(
            "values",
            "toy values, gathered across the sweep",
        )];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        serde_json::json!({"properties": {"tag": {"type": "string", "default": ""}}})
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (_, params) = check_typed::<SumParams>(params)?;
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources::default(),
        })
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
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

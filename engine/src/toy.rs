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
    /// Pretend to need this much device memory (MiB), so the node may share a GPU slot.
    #[serde(default)]
    pub gpu_mem_mb: Option<u64>,
    /// Pretend the device held this much memory (MiB) while the node ran (its measured peak).
    #[serde(default)]
    pub gpu_peak_mb: Option<u64>,
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
        Resources {
            gpus: p.gpus,
            gpu_mem_mb: p.gpu_mem_mb,
        }
    }
    fn run(&self, p: AddParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        if let Some(mb) = p.gpu_peak_mb {
            ctx.watch_device_memory(move || Some(mb * 1024 * 1024));
        }
        if p.gpus > 0 {
            ctx.log(format!("on {}", ctx.device()));
        }
        let steps = p.sleep_ms / 10;
        for s in 0..steps {
            if ctx.should_stop() {
                return Err(NodeError::Interrupted);
            }
            std::thread::sleep(Duration::from_millis(10));
            // A live scalar per step (what training kinds report), for the watch tests.
            ctx.scalars(
                (s + 1) as f64,
                "step",
                &[("k", p.k as f64), ("square", ((s + 1) * (s + 1)) as f64)],
                s + 1 == steps,
            );
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

/// Steps any `toy/walk` took in this process (tests count work done, not runs).
pub static WALK_STEPS: AtomicUsize = AtomicUsize::new(0);

/// Params of `toy/walk`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WalkParams {
    /// How many steps to walk (the trajectory's length).
    pub steps: u64,
    /// Start value.
    #[serde(default)]
    pub start: i64,
    /// Publish a snapshot every this many steps (0: none; not part of the key).
    #[serde(default)]
    pub snapshot_every: u64,
    /// Stop (interrupted) after this many steps of this run (0: never; not part of the key).
    #[serde(default)]
    pub stop_after: u64,
}

#[derive(Serialize, Deserialize)]
struct WalkState {
    step: u64,
    value: i64,
}

/// `toy/walk`: a toy training — a value updated step by step, checkpointed in its work
/// directory, whose runs of different lengths form one trajectory.
pub struct Walk;

impl Walk {
    fn outputs(dir: &std::path::Path, st: &WalkState) -> Result<(), NodeError> {
        let p = dir.join("value.txt");
        std::fs::write(&p, format!("{}\n", st.value)).map_err(NodeError::io("writing", &p))?;
        let p = dir.join("steps.txt");
        std::fs::write(&p, format!("{}\n", st.step)).map_err(NodeError::io("writing", &p))
    }
}

impl Kind for Walk {
    const KIND: &'static str = "toy/walk";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Walks a value `steps` steps with checkpoints and snapshots (toy trajectory for engine tests).";
    const INPUTS: &'static [Slot] = &[];
    const UNKEYED: &'static [&'static str] = &["snapshot_every", "stop_after"];
    const TRAJECTORY: Option<crate::kind::Trajectory> = Some(crate::kind::Trajectory {
        length: "steps",
        state: "state.json",
    });
    type Params = WalkParams;
    fn run(&self, p: WalkParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let state = ctx.work_dir()?.join("state.json");
        let mut st = match std::fs::read(&state) {
            Ok(b) => {
                serde_json::from_slice(&b).map_err(|e| NodeError::msg(format!("state: {e}")))?
            }
            Err(_) => WalkState {
                step: 0,
                value: p.start,
            },
        };
        if st.step > p.steps {
            return Err(NodeError::msg(format!(
                "state at step {} is past {}",
                st.step, p.steps
            )));
        }
        ctx.log(format!("from step {}", st.step));
        let save = |st: &WalkState| -> Result<(), NodeError> {
            let b = serde_json::to_vec(st).map_err(|e| NodeError::msg(e.to_string()))?;
            std::fs::write(&state, b).map_err(NodeError::io("writing", &state))
        };
        let mut this_run = 0;
        while st.step < p.steps {
            if p.stop_after > 0 && this_run == p.stop_after {
                save(&st)?;
                return Err(NodeError::Interrupted);
            }
            st.value = st.value.wrapping_mul(31).wrapping_add(st.step as i64 + 7) % 1_000_003;
            st.step += 1;
            this_run += 1;
            WALK_STEPS.fetch_add(1, Ordering::SeqCst);
            if p.snapshot_every > 0 && st.step % p.snapshot_every == 0 && st.step < p.steps {
                save(&st)?;
                ctx.snapshot(st.step as f64, &|d| Walk::outputs(d, &st), Some(&state))?;
            }
        }
        ctx.stat("steps_run", this_run as f64);
        save(&st)?;
        Walk::outputs(ctx.out_dir(), &st)
    }
}

/// Params of `toy/score`.
#[derive(Debug, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreParams {}

/// `toy/score`: a metric of its input's value — `metrics.json` with `mean` = value mod 1000
/// (tests `search:`).
pub struct Score;

impl Kind for Score {
    const KIND: &'static str = "toy/score";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "Writes metrics.json with mean = input value mod 1000 (toy metric for engine tests).";
    const INPUTS: &'static [Slot] = &[Slot::one("a", "a toy value")];
    type Params = ScoreParams;
    fn run(&self, _p: ScoreParams, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        RUNS.fetch_add(1, Ordering::SeqCst);
        let v = read_value(ctx, "a")?.unwrap_or(0);
        let p = ctx.out_dir().join("metrics.json");
        std::fs::write(&p, format!("{{\"mean\": {}}}\n", v.rem_euclid(1000)))
            .map_err(NodeError::io("writing", &p))
    }
}

/// Register the toy kinds.
pub fn register(r: &mut Registry) {
    r.register(&Value)
        .register(&Add)
        .register(&FileLen)
        .register(&Sum)
        .register(&Walk)
        .register(&Score);
}

/// A registry holding only the toy kinds.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    register(&mut r);
    r
}

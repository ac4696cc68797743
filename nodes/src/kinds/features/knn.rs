//! `features/knn`: exact top-k cosine neighbours of every item (TEMI's `knn.pt`, paper §b),
//! by [`cedm_kernels::knn`]. Outputs `knn.safetensors` ([`crate::artifacts::knn`]).

use std::num::NonZeroUsize;

use cedm_engine::{BatchDefaults, Kind, NodeError, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use cedm_kernels::knn::{KnnError, knn};

use crate::artifacts::features::Features;
use crate::artifacts::knn::Knn;

/// Params of `features/knn`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Neighbours per item (TEMI draws positives among the first 50). Default: 50.
    #[serde(default = "k50")]
    pub k: NonZeroUsize,
    /// L2-normalise features first, so similarity = cosine (the paper's choice). Default: true.
    #[serde(default = "yes")]
    pub normalize: bool,
    /// Query rows per block (memory: block × N floats). Default: 1024.
    #[serde(default = "b1024")]
    pub block_size: NonZeroUsize,
}

fn k50() -> NonZeroUsize {
    NonZeroUsize::new(50).unwrap_or(NonZeroUsize::MIN)
}
fn yes() -> bool {
    true
}
fn b1024() -> NonZeroUsize {
    NonZeroUsize::new(1024).unwrap_or(NonZeroUsize::MIN)
}

/// The `features/knn` kind.
pub struct FeaturesKnn;

impl Kind for FeaturesKnn {
    const KIND: &'static str = "features/knn";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Exact top-k cosine neighbours (L2-normalised features, self excluded), by blocked matrix products";
    const INPUTS: &'static [Slot] = &[Slot::one("features", "a feature artifact (features/*)")];
    type Params = Params;

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 64, 120)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let f = Features::read(ctx.require("features")?)?;
        let t0 = std::time::Instant::now();
        let n = f.n;
        let nb = knn(
            &f.data,
            f.n,
            f.d,
            p.k.get(),
            p.normalize,
            // A block never needs more rows than there are items (the param is input).
            p.block_size.get().min(n.max(1)),
            |done| {
                ctx.progress(done as u64, Some(n as u64), "rows", None);
                !ctx.should_stop()
            },
        )
        .map_err(|e| match e {
            KnnError::Stopped => NodeError::Interrupted,
            KnnError::BadK(m) => NodeError::msg(m),
        })?;
        let result = Knn {
            n,
            k: nb.k,
            indices: nb.indices,
            sims: nb.sims,
        };
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("seconds", secs);
        ctx.log(format!(
            "{}×{} features: top-{} in {secs:.1} s",
            f.n, f.d, p.k
        ));
        result.write(ctx.out_dir(), p.normalize)
    }
}

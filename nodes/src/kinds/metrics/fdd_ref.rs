//! `metrics/fdd_ref`: FDD reference statistics — the mean and covariance (float64) of DINOv2
//! CLS features (dgm-eval's FD_DINOv2, [`crate::protocol::Dino`]) of a dataset.

use std::num::NonZeroUsize;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot, rules,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::artifacts::write_json;
use crate::encoders::vit::Arch;
use crate::params::nz;
use crate::protocol::{Dino, check_dino};

/// Params of `metrics/fdd_ref`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The DINOv2 checkpoint (`dinov2_vitl14_pretrain.pth`; not downloadable here, bring your
    /// own). Required.
    pub weights: String,
    /// ViT preset. Default: `dinov2_vitl14` (dgm-eval's); `custom` with `arch` for others.
    #[serde(default = "vitl14")]
    pub model: String,
    /// Architecture for `model: custom`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Input side. Default: 224.
    #[serde(default = "r224")]
    pub resolution: usize,
    /// At most this many images: larger sets are subsampled without replacement (seeded, file
    /// order kept). Default: 50000 (dgm-eval's `nsample`).
    #[serde(default = "n50k")]
    pub max_images: usize,
    /// Seed of that subsample. Default: 13579 (dgm-eval's; the stream is cedm's, not numpy's).
    #[serde(default = "seed")]
    pub seed: u64,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn vitl14() -> String {
    "dinov2_vitl14".into()
}
fn r224() -> usize {
    224
}
fn n50k() -> usize {
    50_000
}
fn seed() -> u64 {
    13579
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `metrics/fdd_ref` kind.
pub struct FddRef;

impl Kind for FddRef {
    const KIND: &'static str = "metrics/fdd_ref";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "FDD reference statistics of a dataset: DINOv2 ViT-L/14 CLS mean and covariance in float64";
    const INPUTS: &'static [Slot] = &[Slot::one("images", "the reference images")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems = check_dino(&p.model, p.arch.as_ref(), p.resolution);
        problems.extend(rules::at_least("max_images", p.max_images, 2));
        problems
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a ViT-B at 224 px); the measured peak replaces it on the next run.
        Resources::gpu_shared(3072)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let dino = Dino {
            weights: &p.weights,
            model: &p.model,
            arch: p.arch.as_ref(),
            resolution: p.resolution,
            batch_size: p.batch_size.get(),
        };
        let stats = dino.stats(ctx, set, p.max_images, p.seed)?;
        stats.write(&ctx.out_dir().join("stats.safetensors"), "fdd")?;
        write_json(
            &ctx.out_dir().join("info.json"),
            &serde_json::json!({"metric": "fdd", "images": stats.n, "dim": stats.d, "model": p.model}),
        )
    }
}

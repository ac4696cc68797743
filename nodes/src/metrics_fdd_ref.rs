//! `metrics/fdd_ref`: FDD reference statistics — the mean and covariance (float64) of DINOv2
//! CLS features (dgm-eval's FD_DINOv2: ViT-L/14, resize 224 bicubic, ImageNet mean/std, CLS
//! after the final norm, not normalised) of a dataset.

use std::path::Path;

use cedm_engine::{
    Checked, FileParam, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::features::extract;
use crate::features_vit::{Arch, config};
use crate::fid::{Stats, dinov2_embedder};
use crate::images::ImageSet;
use crate::io::write_json;

/// The encoder part of the FDD params (shared by `metrics/fdd_ref` and `metrics/fdd`).
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
    pub batch_size: usize,
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
fn b32() -> usize {
    32
}

/// Validate encoder params; returns the feature dimension.
///
/// # Errors
/// Bad model, resolution, batch size or sample count.
pub fn check_encoder(p: &Params) -> Result<usize, ParamError> {
    let cfg = config(&p.model, p.arch.as_ref()).map_err(|m| ParamError::invalid("model", m))?;
    if p.resolution == 0 || p.resolution % cfg.patch != 0 {
        return Err(ParamError::invalid(
            "resolution",
            format!(
                "must be a positive multiple of the patch size {}",
                cfg.patch
            ),
        ));
    }
    if p.batch_size == 0 {
        return Err(ParamError::invalid("batch_size", "must be at least 1"));
    }
    if p.max_images < 2 {
        return Err(ParamError::invalid("max_images", "must be at least 2"));
    }
    Ok(cfg.dim)
}

/// Features → statistics of an image set with the FDD encoder.
///
/// # Errors
/// Unreadable weights, stop requests.
pub fn fdd_stats(ctx: &mut RunContext<'_>, p: &Params, set: ImageSet) -> Result<Stats, NodeError> {
    let set = set.subset(Some(p.max_images), Some(p.seed));
    let (mut embed, d, desc) = dinov2_embedder(
        &p.model,
        p.arch.as_ref(),
        Path::new(&p.weights),
        ctx.device(),
        p.resolution,
        set.c,
        set.h,
        set.w,
    )?;
    ctx.log(format!(
        "{} on {desc}: {} images → {} px, {d}-d CLS",
        p.model, set.n, p.resolution
    ));
    let feats = extract(ctx, &set, p.batch_size, d, |px, b| embed(px, b))?;
    Stats::from_features(&feats.data, feats.n, feats.d)
}

/// The `metrics/fdd_ref` kind.
pub struct FddRef;

impl Node for FddRef {
    fn kind(&self) -> &'static str {
        "metrics/fdd_ref"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "FDD reference statistics of a dataset: DINOv2 ViT-L/14 CLS mean and covariance in float64"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::one("images", "the reference images")];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        check_encoder(&p)?;
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
        let stats = fdd_stats(ctx, &p, set)?;
        stats.write(&ctx.out_dir().join("stats.safetensors"), "fdd")?;
        write_json(
            &ctx.out_dir().join("info.json"),
            &serde_json::json!({"metric": "fdd", "images": stats.n, "dim": stats.d, "model": p.model}),
        )
    }
}

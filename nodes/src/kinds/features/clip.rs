//! `features/clip`: CLIP image embeddings of OpenCLIP ViTs ([`crate::encoders::clip`]) — the
//! projected image embedding `encode_image` returns, not normalised, after OpenCLIP's eval
//! preprocessing (bicubic resize to the model's side, OpenAI's mean/std). The features of
//! FD_CLIP (Kynkäänniemi et al. 2023, "The Role of ImageNet Classes in Fréchet Inception
//! Distance"; dgm-eval's `clip` encoder) through `metrics/fd`, and of KID / PRDC on CLIP.
//! The models and checkpoints are `labels/clip`'s.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::device::compute_for;
use crate::encoders::clip::{Arch, ClipImage, clip_config};
use crate::encoders::extract;
use crate::models::clip::Clip;
use crate::models::weights::Weights;
use crate::params::nz;

/// Params of `features/clip`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// OpenCLIP model name: `ViT-B-32`, `ViT-B-16`, `ViT-L-14`, `ViT-H-14`, `ViT-g-14`,
    /// `ViT-bigG-14` (each also `-quickgelu`), or `custom` with `arch`. Required.
    pub model: String,
    /// The OpenCLIP checkpoint (`open_clip_pytorch_model.bin`, `.pt` or `.safetensors`).
    /// Required.
    pub weights: String,
    /// Architecture for `model: custom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<Arch>,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `features/clip` kind.
pub struct FeaturesClip;

impl Kind for FeaturesClip {
    const KIND: &'static str = "features/clip";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "CLIP image embeddings (OpenCLIP ViTs, encode_image, not normalised): features for FD_CLIP, KID, PRDC";
    const INPUTS: &'static [Slot] = &[Slot::one("images", "an image artifact (data/*)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        match clip_config(&p.model, p.arch.as_ref()) {
            Ok(_) => vec![],
            Err(m) => vec![ParamError::invalid("model", m)],
        }
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a CLIP ViT-B image tower, batch 64); the measured peak replaces it on the next run.
        Resources::gpu_shared(3072)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let cfg = clip_config(&p.model, p.arch.as_ref()).map_err(NodeError::msg)?;
        let set = ImageSet::read(ctx.require("images")?)?;
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let mut w = Weights::load(Path::new(&p.weights))?;
        let model = Clip::load(&cfg, &mut w, &dev)?;
        ctx.log(format!(
            "{} on {}: {} images {}×{} → {} px, {}-d",
            p.model,
            comp.describe(),
            set.n,
            set.h,
            set.w,
            cfg.image_size,
            cfg.embed_dim
        ));
        let enc = ClipImage {
            model: &model,
            device: dev,
            desc: comp.describe(),
        };
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
        let meta: BTreeMap<String, String> = [
            ("model".to_string(), format!("{} (OpenCLIP)", p.model)),
            ("resolution".to_string(), cfg.image_size.to_string()),
        ]
        .into();
        feats.write(&ctx.out_dir().join("features.safetensors"), &meta)
    }
}

//! `features/vit`: the CLS token (after the final norm) of a DINO, DINOv2, iBOT or MoCo-v3 Vision
//! Transformer ([`crate::encoders::vit`]) — the paper's clustering features (DINO ViT-B/16,
//! resize 224 bicubic, ImageNet mean/std) and its other backbones (Table 2).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot,
};
use cedm_kernels::imageops::Filter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::device::compute_for;
use crate::encoders::vit::{Arch, Vit, config};
use crate::encoders::{Encoder, extract};
use crate::params::nz;

/// Params of `features/vit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Preset: `dino_vits16`, `dino_vitb16` (the paper's), `dino_vits8`, `dino_vitb8`,
    /// `dinov2_vits14`, `dinov2_vitb14`, `dinov2_vitl14` (FDD), `dinov2_vitg14`, or a DINOv2 one
    /// with `_reg`; `ibot_vitb16`, `ibot_vitl16`, `mocov3_vits16`, `mocov3_vitb16` (the paper's
    /// Table 2); or `custom` with `arch`. Required.
    pub model: String,
    /// The official checkpoint (`.pth`, `.pth.tar` or `.safetensors`, e.g.
    /// `dino_vitbase16_pretrain.pth`, `dinov2_vitl14_pretrain.pth`, iBOT's
    /// `vitl_16/checkpoint_teacher.pth`, MoCo-v3's `vit-b-300ep.pth.tar`). Required.
    pub weights: String,
    /// Keys under this prefix (after the `state_dict.`/`module.` wrappers) are the backbone.
    /// Default: `momentum_encoder.` for `mocov3_*` (TEMI's choice, model_builders.py:128-129;
    /// `base_encoder.` is MoCo-v3's linear-probe encoder), none otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_prefix: Option<String>,
    /// Architecture for `model: custom`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Input side after resizing (a multiple of the patch size). Default: 224 (the paper).
    #[serde(default = "r224")]
    pub resolution: usize,
    /// Resize filter, antialiased: `bicubic` (DINO's `Resize(224, BICUBIC)`) or `bilinear`.
    /// Default: `bicubic`.
    #[serde(default = "bicubic")]
    pub filter: Filter,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn r224() -> usize {
    224
}
fn bicubic() -> Filter {
    Filter::Bicubic
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `features/vit` kind.
pub struct FeaturesVit;

impl Kind for FeaturesVit {
    const KIND: &'static str = "features/vit";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "CLS token after the final norm of a DINO / DINOv2 / iBOT / MoCo-v3 ViT (official checkpoints; resize 224 bicubic, ImageNet mean/std)";
    const INPUTS: &'static [Slot] = &[Slot::one("images", "an image artifact (data/*)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        match config(&p.model, p.arch.as_ref()) {
            Err(m) => vec![ParamError::invalid("model", m)],
            Ok(cfg) if p.resolution == 0 || !p.resolution.is_multiple_of(cfg.patch) => {
                vec![ParamError::invalid(
                    "resolution",
                    format!(
                        "must be a positive multiple of the patch size {}",
                        cfg.patch
                    ),
                )]
            }
            Ok(_) => vec![],
        }
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a ViT-B at 224 px, batch 64); the measured peak replaces it on the next run.
        Resources::gpu_shared(3072)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let comp = compute_for(ctx)?;
        let enc = Vit::load(
            &p.model,
            p.arch.as_ref(),
            Path::new(&p.weights),
            p.checkpoint_prefix.as_deref(),
            &comp,
            p.resolution,
            p.filter,
        )?;
        ctx.log(format!(
            "{} on {}: {} images → {} px, {}-d CLS",
            p.model,
            enc.describe(),
            set.n,
            p.resolution,
            enc.dim()
        ));
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
        let meta: BTreeMap<String, String> = [
            ("model".to_string(), p.model.clone()),
            ("resolution".to_string(), p.resolution.to_string()),
        ]
        .into();
        feats.write(&ctx.out_dir().join("features.safetensors"), &meta)
    }
}

//! `features/vit`: the CLS token (after the final norm) of a DINO or DINOv2 Vision Transformer
//! — the paper's clustering features (DINO ViT-B/16, resize 224 bicubic, ImageNet mean/std) and
//! the FDD encoder (DINOv2 ViT-L/14).

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{
    Checked, FileParam, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::device::compute;
use crate::features::extract;
use crate::imageops::{Filter, Resample, imagenet_norm, preprocess};
use crate::images::ImageSet;
use crate::models::vit::{Ffn, Vit, VitConfig};
use crate::models::weights::{Weights, tensor};

/// An explicit architecture, for checkpoints that are not one of the presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Patch size.
    pub patch: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// Side of the checkpoint's position-embedding grid.
    pub grid: usize,
    /// MLP ratio. Default: 4.
    #[serde(default = "four")]
    pub mlp_ratio: f64,
    /// LayerScale (DINOv2). Default: false.
    #[serde(default)]
    pub layer_scale: bool,
    /// Register tokens. Default: 0.
    #[serde(default)]
    pub registers: usize,
    /// SwiGLU feed-forward (DINOv2 ViT-g). Default: false.
    #[serde(default)]
    pub swiglu: bool,
}

fn four() -> f64 {
    4.0
}

/// Params of `features/vit`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Preset: `dino_vits16`, `dino_vitb16` (the paper's), `dino_vits8`, `dino_vitb8`,
    /// `dinov2_vits14`, `dinov2_vitb14`, `dinov2_vitl14` (FDD), `dinov2_vitg14`, or a DINOv2 one
    /// with `_reg`; or `custom` with `arch`. Required.
    pub model: String,
    /// The official checkpoint (`.pth` or `.safetensors`, e.g. `dino_vitbase16_pretrain.pth`,
    /// `dinov2_vitl14_pretrain.pth`). Required.
    pub weights: String,
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
    pub batch_size: usize,
}

fn r224() -> usize {
    224
}
fn bicubic() -> Filter {
    Filter::Bicubic
}
fn b32() -> usize {
    32
}

/// The architecture a params set names.
///
/// # Errors
/// An unknown preset, or `custom` without `arch`.
pub fn config(model: &str, arch: Option<&Arch>) -> Result<VitConfig, String> {
    match (model, arch) {
        ("custom", Some(a)) => Ok(VitConfig {
            patch: a.patch,
            dim: a.dim,
            depth: a.depth,
            heads: a.heads,
            mlp_ratio: a.mlp_ratio,
            grid: a.grid,
            layer_scale: a.layer_scale,
            registers: a.registers,
            ffn: if a.swiglu { Ffn::SwiGlu } else { Ffn::Mlp },
            image_size: a.grid * a.patch,
        }),
        ("custom", None) => Err("`model: custom` needs `arch`".into()),
        (m, None) => VitConfig::preset(m).ok_or_else(|| {
            format!(
                "unknown model `{m}`; presets: {}, or custom",
                VitConfig::PRESETS.join(", ")
            )
        }),
        (_, Some(_)) => Err("`arch` is only used with `model: custom`".into()),
    }
}

/// A batch function over uint8 NCHW pixels for a ViT.
///
/// # Errors
/// Unreadable weights, unknown device or model.
pub fn embedder(
    model: &str,
    arch: Option<&Arch>,
    weights: &Path,
    device: &str,
    resolution: usize,
    filter: Filter,
    c: usize,
    h: usize,
    w: usize,
) -> Result<
    (
        Box<dyn FnMut(&[u8], usize) -> Result<Vec<f32>, NodeError>>,
        usize,
        String,
    ),
    NodeError,
> {
    let cfg = config(model, arch).map_err(NodeError::msg)?;
    let mut wts = Weights::load(weights)?;
    let comp = compute(device)?;
    let dev = comp.device().clone();
    let vit = Vit::load(&cfg, &mut wts, &dev)?;
    let (scale, offset) = imagenet_norm();
    let d = cfg.dim;
    let f = move |px: &[u8], b: usize| -> Result<Vec<f32>, NodeError> {
        let x = preprocess(
            px,
            b,
            c,
            h,
            w,
            resolution,
            Resample::Filter(filter),
            scale,
            offset,
        );
        vit.forward_features(tensor(x, [b, 3, resolution, resolution], &dev))
            .into_data()
            .try_into_vec::<f32>()
            .map_err(|e| NodeError::msg(format!("{e:?}")))
    };
    Ok((Box::new(f), d, comp.describe()))
}

/// The `features/vit` kind.
pub struct FeaturesVit;

impl Node for FeaturesVit {
    fn kind(&self) -> &'static str {
        "features/vit"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "CLS token after the final norm of a DINO / DINOv2 ViT (official checkpoints; resize 224 bicubic, ImageNet mean/std)"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::one("images", "an image artifact (data/*)")];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
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
        let (mut embed, d, desc) = embedder(
            &p.model,
            p.arch.as_ref(),
            Path::new(&p.weights),
            ctx.device(),
            p.resolution,
            p.filter,
            set.c,
            set.h,
            set.w,
        )?;
        ctx.log(format!(
            "{} on {desc}: {} images → {} px, {d}-d CLS",
            p.model, set.n, p.resolution
        ));
        let feats = extract(ctx, &set, p.batch_size, d, |px, b| embed(px, b))?;
        let meta: BTreeMap<String, String> = [
            ("model".to_string(), p.model.clone()),
            ("resolution".to_string(), p.resolution.to_string()),
        ]
        .into();
        feats.write(&ctx.out_dir().join("features.safetensors"), &meta)
    }
}

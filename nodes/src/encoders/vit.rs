//! The CLS token (after the final norm) of a DINO, DINOv2, iBOT or MoCo-v3 Vision Transformer:
//! the paper's clustering features (DINO ViT-B/16, resize 224 bicubic, ImageNet mean/std; the
//! other backbones of its Table 2) and the FDD encoder (DINOv2 ViT-L/14, dgm-eval's
//! preprocessing). burn on every device.

use std::path::Path;

use burn::tensor::Device;
use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, Resample, imagenet_norm, preprocess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Encoder;
use crate::device::{Compute, to_host};
use crate::models::vit::{Ffn, Vit as Model, VitConfig};
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

/// The architecture a params set names.
///
/// # Errors
/// An unknown preset, or `custom` without `arch`.
pub fn config(model: &str, arch: Option<&Arch>) -> Result<VitConfig, String> {
    match (model, arch) {
        ("custom", Some(a))
            if a.patch == 0
                || a.dim == 0
                || a.depth == 0
                || a.heads == 0
                || a.grid == 0
                || a.dim % a.heads != 0 =>
        {
            Err(format!(
                "`arch` needs patch, dim, depth, heads and grid ≥ 1 and dim divisible by heads (got patch {}, dim {}, depth {}, heads {}, grid {})",
                a.patch, a.dim, a.depth, a.heads, a.grid
            ))
        }
        ("custom", Some(a))
            if a.patch > 64
                || a.dim > 1 << 14
                || a.depth > 256
                || a.grid > 1024
                || a.registers > 1024
                || !(a.mlp_ratio > 0.0 && a.mlp_ratio <= 64.0) =>
        {
            Err(format!(
                "`arch` is beyond any ViT (patch ≤ 64, dim ≤ 16384, depth ≤ 256, grid ≤ 1024, registers ≤ 1024, 0 < mlp_ratio ≤ 64; got patch {}, dim {}, depth {}, grid {}, registers {}, mlp_ratio {})",
                a.patch, a.dim, a.depth, a.grid, a.registers, a.mlp_ratio
            ))
        }
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

/// A ViT as an [`Encoder`].
pub struct Vit {
    model: Model,
    device: Device,
    resolution: usize,
    filter: Filter,
    dim: usize,
    desc: String,
}

impl Vit {
    /// A preset with random weights: the same architecture and arithmetic as its checkpoint,
    /// for throughput benchmarks (`cedm bench encoder`) where the official weights cannot be
    /// had; its features mean nothing.
    ///
    /// # Errors
    /// An unknown preset.
    pub fn random(
        model: &str,
        comp: &Compute,
        resolution: usize,
        filter: Filter,
    ) -> Result<Vit, NodeError> {
        let cfg = config(model, None).map_err(NodeError::msg)?;
        let device = comp.device().clone();
        Ok(Vit {
            model: cfg.init(&device),
            device,
            resolution,
            filter,
            dim: cfg.dim,
            desc: comp.describe(),
        })
    }

    /// Load an official checkpoint (`.pth` or `.safetensors`) for the architecture `model`
    /// names (a preset, or `custom` with `arch`), with input side `resolution`; `prefix` picks
    /// the backbone inside a checkpoint with several (default: the preset's, see
    /// [`VitConfig::checkpoint_prefix`]).
    ///
    /// # Errors
    /// Unreadable weights, an unknown model.
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        model: &str,
        arch: Option<&Arch>,
        weights: &Path,
        prefix: Option<&str>,
        comp: &Compute,
        resolution: usize,
        filter: Filter,
    ) -> Result<Vit, NodeError> {
        let cfg = config(model, arch).map_err(NodeError::msg)?;
        let mut wts = Weights::load(weights)?;
        Model::select(&mut wts, prefix.or(VitConfig::checkpoint_prefix(model)));
        let device = comp.device().clone();
        let m = Model::load(&cfg, &mut wts, &device)?;
        Ok(Vit {
            model: m,
            device,
            resolution,
            filter,
            dim: cfg.dim,
            desc: comp.describe(),
        })
    }
}

impl Encoder for Vit {
    fn dim(&self) -> usize {
        self.dim
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn preprocess(&self, pixels: &[u8], b: usize, [c, h, w]: [usize; 3]) -> Vec<f32> {
        let (scale, offset) = imagenet_norm();
        preprocess(
            pixels,
            b,
            c,
            h,
            w,
            self.resolution,
            Resample::Filter(self.filter),
            scale,
            offset,
        )
    }
    fn forward(&self, x: Vec<f32>, b: usize) -> Result<Vec<f32>, NodeError> {
        let r = self.resolution;
        to_host(
            self.model
                .forward_features(tensor(x, [b, 3, r, r], &self.device))?,
        )
    }
}

//! CLIP's image tower ([`crate::models::clip`]) as an [`Encoder`]: OpenCLIP's eval
//! preprocessing (resize to the model's side, bicubic, antialiased — the images here are
//! square, so `Resize(224)` + `CenterCrop(224)` is one resize — and OpenAI's mean/std), the
//! projected image embedding (not normalised). burn on every device.

use burn::tensor::Device;
use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, Resample, preprocess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Encoder;
use crate::device::to_host;
use crate::models::clip::{Clip, ClipConfig, TowerConfig, clip_norm};
use crate::models::weights::tensor;

/// One tower of a custom architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Tower {
    /// Width.
    pub width: usize,
    /// Blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width.
    pub mlp: usize,
}

/// An explicit architecture, for checkpoints that are not one of the presets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Joint embedding dimension.
    pub embed_dim: usize,
    /// Input side.
    pub image_size: usize,
    /// Patch size.
    pub patch: usize,
    /// The image tower.
    pub vision: Tower,
    /// The text tower.
    pub text: Tower,
    /// Context length. Default: 77.
    #[serde(default = "d_context")]
    pub context: usize,
    /// Vocabulary size. Default: 49408.
    #[serde(default = "d_vocab")]
    pub vocab: usize,
    /// QuickGELU (OpenAI's weights). Default: false.
    #[serde(default)]
    pub quick_gelu: bool,
}

fn d_context() -> usize {
    77
}
fn d_vocab() -> usize {
    49408
}

/// The architecture an OpenCLIP model name (or `custom` with `arch`) names: what
/// `labels/clip` and `features/clip` take as `model` and `arch`.
///
/// # Errors
/// An unknown name, `custom` without `arch` or `arch` without `custom`, or an `arch` out of
/// bounds (the message says which).
pub fn clip_config(model: &str, arch: Option<&Arch>) -> Result<ClipConfig, String> {
    let tower = |t: &Tower| TowerConfig {
        width: t.width,
        layers: t.layers,
        heads: t.heads,
        mlp: t.mlp,
    };
    match (model, arch) {
        ("custom", Some(a)) => {
            let ok = |t: &Tower| {
                t.width > 0
                    && t.heads > 0
                    && t.width.is_multiple_of(t.heads)
                    && t.width <= 1 << 14
                    && t.layers <= 256
                    && t.mlp <= 1 << 16
            };
            if !(ok(&a.vision) && ok(&a.text))
                || a.patch == 0
                || a.image_size % a.patch != 0
                || a.image_size > 4096
                || a.embed_dim == 0
                || a.embed_dim > 1 << 14
                || !(2..=4096).contains(&a.context)
                || a.vocab == 0
                || a.vocab > 1 << 20
            {
                return Err("`arch` needs widths divisible by their heads (≤ 16384), ≤ 256 layers, image_size a multiple of patch (≤ 4096), 1 ≤ embed_dim ≤ 16384, 2 ≤ context ≤ 4096, 1 ≤ vocab ≤ 2²⁰".into());
            }
            Ok(ClipConfig {
                embed_dim: a.embed_dim,
                image_size: a.image_size,
                patch: a.patch,
                vision: tower(&a.vision),
                text: tower(&a.text),
                context: a.context,
                vocab: a.vocab,
                quick_gelu: a.quick_gelu,
            })
        }
        ("custom", None) => Err("`model: custom` needs `arch`".into()),
        (m, None) => ClipConfig::preset(m).ok_or_else(|| {
            format!(
                "unknown model `{m}`; presets: {} (each also -quickgelu), or custom",
                ClipConfig::PRESETS.join(", ")
            )
        }),
        (_, Some(_)) => Err("`arch` is only used with `model: custom`".into()),
    }
}

/// CLIP's image tower as an encoder.
pub struct ClipImage<'a> {
    /// The model (both towers; the text tower embeds the prompts).
    pub model: &'a Clip,
    /// Its device.
    pub device: Device,
    /// How it runs, for logs.
    pub desc: String,
}

impl Encoder for ClipImage<'_> {
    fn dim(&self) -> usize {
        self.model.config().embed_dim
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn preprocess(&self, pixels: &[u8], b: usize, [c, h, w]: [usize; 3]) -> Vec<f32> {
        let (scale, offset) = clip_norm();
        preprocess(
            pixels,
            b,
            c,
            h,
            w,
            self.model.config().image_size,
            Resample::Filter(Filter::Bicubic),
            scale,
            offset,
        )
    }
    fn forward(&self, x: Vec<f32>, b: usize) -> Result<Vec<f32>, NodeError> {
        let r = self.model.config().image_size;
        to_host(
            self.model
                .encode_image(tensor(x, [b, 3, r, r], &self.device)),
        )
    }
}

/// CLIP's image tower owning its model (what `cedm eval` and `cedm bench encoder` load).
pub struct ClipImageOwned {
    model: Clip,
    device: Device,
    desc: String,
}

impl ClipImageOwned {
    /// Load an OpenCLIP checkpoint for the architecture `model` names (a preset, or `custom`
    /// with `arch`).
    ///
    /// # Errors
    /// An unknown model, unreadable or mismatched weights.
    pub fn load(
        model: &str,
        arch: Option<&Arch>,
        weights: &std::path::Path,
        comp: &crate::device::Compute,
    ) -> Result<ClipImageOwned, NodeError> {
        let cfg = clip_config(model, arch).map_err(NodeError::msg)?;
        let mut w = crate::models::weights::Weights::load(weights)?;
        let device = comp.device().clone();
        let m = Clip::load(&cfg, &mut w, &device)?;
        Ok(ClipImageOwned {
            model: m,
            device,
            desc: format!("{model} (OpenCLIP) on {}", comp.describe()),
        })
    }

    fn image(&self) -> ClipImage<'_> {
        ClipImage {
            model: &self.model,
            device: self.device.clone(),
            desc: self.desc.clone(),
        }
    }
}

impl Encoder for ClipImageOwned {
    fn dim(&self) -> usize {
        self.image().dim()
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn preprocess(&self, pixels: &[u8], b: usize, chw: [usize; 3]) -> Vec<f32> {
        self.image().preprocess(pixels, b, chw)
    }
    fn forward(&self, x: Vec<f32>, b: usize) -> Result<Vec<f32>, NodeError> {
        self.image().forward(x, b)
    }
}

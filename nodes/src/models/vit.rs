//! Vision Transformer as DINO and DINOv2 use it (Dosovitskiy et al. 2021; Caron et al. 2021,
//! "Emerging Properties in Self-Supervised Vision Transformers"; Oquab et al. 2023, "DINOv2").
//! Reference code: facebookresearch/dino `vision_transformer.py` and facebookresearch/dinov2
//! `dinov2/models/vision_transformer.py`. The paper's feature is the CLS token after the final
//! LayerNorm (`forward_features`).
//!
//! Field names are the official checkpoints' key prefixes (`patch_embed.proj`, `blocks.N.attn.qkv`,
//! `ls1.gamma`, `mlp.w12`, `norm`, …), so `load` maps keys one to one; PyTorch's `Linear` weights
//! are transposed on load because burn stores `[in, out]`.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{gelu, silu, softmax};
use burn::tensor::{Device, Tensor, TensorData};

use super::weights::{Weights, WeightsError, tensor};
use cedm_engine::NodeError;

use crate::device::to_host;
use crate::ops;

/// Feed-forward block type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ffn {
    /// `fc1 → GELU → fc2` (ViT-S/B/L).
    Mlp,
    /// `w12 → SiLU(x1)·x2 → w3` (DINOv2 ViT-g/14, "swiglufused").
    SwiGlu,
}

/// ViT configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct VitConfig {
    /// Patch size.
    pub patch: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden size ratio.
    pub mlp_ratio: f64,
    /// Side of the position-embedding grid the checkpoint was trained with.
    pub grid: usize,
    /// LayerScale (DINOv2).
    pub layer_scale: bool,
    /// Register tokens (DINOv2 `_reg` models: 4).
    pub registers: usize,
    /// Feed-forward type.
    pub ffn: Ffn,
    /// Input side the model expects by default (224 for every preset here, as the paper's
    /// preprocessing resizes to 224).
    pub image_size: usize,
}

impl VitConfig {
    fn base(
        patch: usize,
        dim: usize,
        depth: usize,
        heads: usize,
        grid: usize,
        dinov2: bool,
    ) -> VitConfig {
        VitConfig {
            patch,
            dim,
            depth,
            heads,
            mlp_ratio: 4.0,
            grid,
            layer_scale: dinov2,
            registers: 0,
            ffn: Ffn::Mlp,
            image_size: 224,
        }
    }
    /// DINO ViT-S/16 (`dino_vits16`).
    pub fn dino_vits16() -> VitConfig {
        Self::base(16, 384, 12, 6, 14, false)
    }
    /// DINO ViT-B/16 (`dino_vitb16`), the paper's clustering backbone.
    pub fn dino_vitb16() -> VitConfig {
        Self::base(16, 768, 12, 12, 14, false)
    }
    /// DINO ViT-S/8.
    pub fn dino_vits8() -> VitConfig {
        Self::base(8, 384, 12, 6, 28, false)
    }
    /// DINO ViT-B/8.
    pub fn dino_vitb8() -> VitConfig {
        Self::base(8, 768, 12, 12, 28, false)
    }
    /// DINOv2 ViT-S/14 (position grid 37 = 518/14).
    pub fn dinov2_vits14() -> VitConfig {
        Self::base(14, 384, 12, 6, 37, true)
    }
    /// DINOv2 ViT-B/14.
    pub fn dinov2_vitb14() -> VitConfig {
        Self::base(14, 768, 12, 12, 37, true)
    }
    /// DINOv2 ViT-L/14 (the FDD encoder).
    pub fn dinov2_vitl14() -> VitConfig {
        Self::base(14, 1024, 24, 16, 37, true)
    }
    /// DINOv2 ViT-g/14 (SwiGLU FFN).
    pub fn dinov2_vitg14() -> VitConfig {
        VitConfig {
            ffn: Ffn::SwiGlu,
            ..Self::base(14, 1536, 40, 24, 37, true)
        }
    }
    /// iBOT ViT-L/16 (bytedance/ibot models/vision_transformer.py:289-293: 1024-d, 24 blocks,
    /// 16 heads, no LayerScale as `init_values = 0`, :139), `checkpoint_teacher.pth`.
    pub fn ibot_vitl16() -> VitConfig {
        Self::base(16, 1024, 24, 16, 14, false)
    }
    /// iBOT ViT-B/16 (the same repository's base model).
    pub fn ibot_vitb16() -> VitConfig {
        Self::base(16, 768, 12, 12, 14, false)
    }
    /// MoCo-v3 ViT-B/16 (facebookresearch/moco-v3 vits.py:121-127: 768-d, 12 blocks, 12 heads;
    /// its fixed sin-cos position embedding is stored in the checkpoint), `vit-b-300ep.pth.tar`.
    pub fn mocov3_vitb16() -> VitConfig {
        Self::base(16, 768, 12, 12, 14, false)
    }
    /// MoCo-v3 ViT-S/16 (vits.py:115-120: 384-d, **12** heads).
    pub fn mocov3_vits16() -> VitConfig {
        Self::base(16, 384, 12, 12, 14, false)
    }
    /// The part of a preset's official checkpoint that is the backbone, after the `state_dict.`
    /// and `module.` wrappers: MoCo-v3 holds two encoders, and TEMI (whose features the paper
    /// clusters) loads the momentum encoder (TEMI-official-BMVC2023
    /// model_builders/model_builders.py:128-129); MoCo-v3's own linear probe the base encoder
    /// (main_lincls.py:177-185), which `checkpoint_prefix: base_encoder.` selects.
    pub fn checkpoint_prefix(name: &str) -> Option<&'static str> {
        name.starts_with("mocov3_").then_some("momentum_encoder.")
    }
    /// A preset by name (`dino_vitb16`, `dinov2_vitl14`, …; `_reg` suffix adds 4 registers).
    pub fn preset(name: &str) -> Option<VitConfig> {
        let (base, reg) = match name.strip_suffix("_reg") {
            Some(b) => (b, 4),
            None => (name, 0),
        };
        let mut c = match base {
            "dino_vits16" => Self::dino_vits16(),
            "dino_vitb16" => Self::dino_vitb16(),
            "dino_vits8" => Self::dino_vits8(),
            "dino_vitb8" => Self::dino_vitb8(),
            "dinov2_vits14" => Self::dinov2_vits14(),
            "dinov2_vitb14" => Self::dinov2_vitb14(),
            "dinov2_vitl14" => Self::dinov2_vitl14(),
            "dinov2_vitg14" => Self::dinov2_vitg14(),
            "ibot_vitb16" => Self::ibot_vitb16(),
            "ibot_vitl16" => Self::ibot_vitl16(),
            "mocov3_vits16" => Self::mocov3_vits16(),
            "mocov3_vitb16" => Self::mocov3_vitb16(),
            _ => return None,
        };
        if reg > 0 && !c.layer_scale {
            return None;
        }
        c.registers = reg;
        Some(c)
    }
    /// Names accepted by [`VitConfig::preset`].
    pub const PRESETS: [&'static str; 16] = [
        "dino_vits16",
        "dino_vitb16",
        "dino_vits8",
        "dino_vitb8",
        "dinov2_vits14",
        "dinov2_vitb14",
        "dinov2_vitl14",
        "dinov2_vitg14",
        "dinov2_vits14_reg",
        "dinov2_vitb14_reg",
        "dinov2_vitl14_reg",
        "dinov2_vitg14_reg",
        "ibot_vitb16",
        "ibot_vitl16",
        "mocov3_vits16",
        "mocov3_vitb16",
    ];

    fn hidden(&self) -> usize {
        let h = (self.dim as f64 * self.mlp_ratio) as usize;
        match self.ffn {
            Ffn::Mlp => h,
            // DINOv2's SwiGLUFFNFused: hidden = (int(h * 2 / 3) + 7) // 8 * 8.
            Ffn::SwiGlu => (h * 2 / 3).div_ceil(8) * 8,
        }
    }

    /// Random-weight model (tests); [`Vit::load`] for checkpoints.
    pub fn init(&self, device: &Device) -> Vit {
        let d = self.dim;
        let ln = || LayerNormConfig::new(d).with_epsilon(1e-6).init(device);
        let blocks = (0..self.depth)
            .map(|_| Block {
                norm1: ln(),
                attn: Attention {
                    qkv: LinearConfig::new(d, 3 * d).init(device),
                    proj: LinearConfig::new(d, d).init(device),
                    heads: self.heads,
                    causal: false,
                },
                ls1: self
                    .layer_scale
                    .then(|| Param::from_tensor(Tensor::ones([d], device))),
                norm2: ln(),
                mlp: match self.ffn {
                    Ffn::Mlp => FeedForward::Mlp(Mlp {
                        fc1: LinearConfig::new(d, self.hidden()).init(device),
                        fc2: LinearConfig::new(self.hidden(), d).init(device),
                    }),
                    Ffn::SwiGlu => FeedForward::SwiGlu(SwiGlu {
                        w12: LinearConfig::new(d, 2 * self.hidden()).init(device),
                        w3: LinearConfig::new(self.hidden(), d).init(device),
                    }),
                },
                ls2: self
                    .layer_scale
                    .then(|| Param::from_tensor(Tensor::ones([d], device))),
            })
            .collect();
        Vit {
            patch_embed: Conv2dConfig::new([3, d], [self.patch, self.patch])
                .with_stride([self.patch, self.patch])
                .init(device),
            cls_token: Param::from_tensor(Tensor::zeros([1, 1, d], device)),
            pos_embed: Param::from_tensor(Tensor::zeros([1, 1 + self.grid * self.grid, d], device)),
            register_tokens: (self.registers > 0)
                .then(|| Param::from_tensor(Tensor::zeros([1, self.registers, d], device))),
            blocks,
            norm: ln(),
            patch: self.patch,
            grid: self.grid,
        }
    }
}

/// Multi-head self-attention with a fused qkv projection.
#[derive(Module, Debug)]
pub struct Attention {
    qkv: Linear,
    proj: Linear,
    heads: usize,
    /// Each token attends only to itself and earlier ones (CLIP's text tower).
    causal: bool,
}

impl Attention {
    /// # Shapes
    /// `[b, n, d]` → `[b, n, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let x_dev = x.device();
        let hd = d / self.heads;
        let qkv = ops::linear(&self.qkv, x)
            .reshape([b, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]); // [3, b, h, n, hd]
        let q = qkv.clone().narrow(0, 0, 1).reshape([b, self.heads, n, hd]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b, self.heads, n, hd]);
        let v = qkv.narrow(0, 2, 1).reshape([b, self.heads, n, hd]);
        let mut logits = (q * (hd as f64).powf(-0.5)).matmul(k.swap_dims(2, 3)); // [b, h, n, n]
        if self.causal {
            // OpenCLIP's attn_mask: −inf above the diagonal.
            let mask: Vec<f32> = (0..n * n)
                .map(|i| {
                    if i % n > i / n {
                        f32::NEG_INFINITY
                    } else {
                        0.0
                    }
                })
                .collect();
            logits = logits + Tensor::<4>::from_data(TensorData::new(mask, [1, 1, n, n]), &x_dev);
        }
        let a = softmax(logits, 3);
        let y = a.matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        ops::linear(&self.proj, y)
    }
}

/// `fc1 → GELU → fc2`.
#[derive(Module, Debug)]
pub struct Mlp {
    fc1: Linear,
    fc2: Linear,
}

/// `w12 → SiLU(x1) · x2 → w3`.
#[derive(Module, Debug)]
pub struct SwiGlu {
    w12: Linear,
    w3: Linear,
}

/// The feed-forward part of a block (`mlp.*` in checkpoints).
#[derive(Module, Debug)]
pub enum FeedForward {
    /// GELU MLP.
    Mlp(Mlp),
    /// QuickGELU MLP, x·σ(1.702x) (OpenAI's CLIP weights).
    QuickGelu(Mlp),
    /// SwiGLU.
    SwiGlu(SwiGlu),
}

impl FeedForward {
    /// # Shapes
    /// `[b, n, d]` → `[b, n, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        match self {
            FeedForward::Mlp(m) => ops::linear(&m.fc2, gelu(ops::linear(&m.fc1, x))),
            FeedForward::QuickGelu(m) => {
                let h = ops::linear(&m.fc1, x);
                ops::linear(
                    &m.fc2,
                    h.clone() * burn::tensor::activation::sigmoid(h * 1.702),
                )
            }
            FeedForward::SwiGlu(m) => {
                let h = ops::linear(&m.w12, x);
                let two = h.dims()[2];
                let x1 = h.clone().narrow(2, 0, two / 2);
                let x2 = h.narrow(2, two / 2, two / 2);
                ops::linear(&m.w3, silu(x1) * x2)
            }
        }
    }
}

/// A pre-norm transformer block (with LayerScale for DINOv2).
#[derive(Module, Debug)]
pub struct Block {
    norm1: LayerNorm,
    attn: Attention,
    ls1: Option<Param<Tensor<1>>>,
    norm2: LayerNorm,
    mlp: FeedForward,
    ls2: Option<Param<Tensor<1>>>,
}

impl Block {
    /// A pre-norm block from its parts, without LayerScale (CLIP's towers under OpenCLIP's key
    /// names: `ln_1`, `attn.in_proj_*`, `attn.out_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn from_parts(
        norm1: LayerNorm,
        qkv: Linear,
        proj: Linear,
        heads: usize,
        causal: bool,
        norm2: LayerNorm,
        fc1: Linear,
        fc2: Linear,
        quick_gelu: bool,
    ) -> Block {
        let mlp = Mlp { fc1, fc2 };
        Block {
            norm1,
            attn: Attention {
                qkv,
                proj,
                heads,
                causal,
            },
            ls1: None,
            norm2,
            mlp: if quick_gelu {
                FeedForward::QuickGelu(mlp)
            } else {
                FeedForward::Mlp(mlp)
            },
            ls2: None,
        }
    }

    /// # Shapes
    /// `[b, n, d]` → `[b, n, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let d = x.dims()[2];
        let mut y = self.attn.forward(self.norm1.forward(x.clone()));
        if let Some(g) = &self.ls1 {
            y = y * g.val().reshape([1, 1, d]);
        }
        let x = x + y;
        let mut y = self.mlp.forward(self.norm2.forward(x.clone()));
        if let Some(g) = &self.ls2 {
            y = y * g.val().reshape([1, 1, d]);
        }
        x + y
    }
}

/// DINO / DINOv2 Vision Transformer.
#[derive(Module, Debug)]
pub struct Vit {
    patch_embed: Conv2d,
    cls_token: Param<Tensor<3>>,
    pos_embed: Param<Tensor<3>>,
    register_tokens: Option<Param<Tensor<3>>>,
    blocks: Vec<Block>,
    norm: LayerNorm,
    patch: usize,
    grid: usize,
}

/// PyTorch's cubic convolution weights (A = −0.75) at fractional offset t.
fn cubic_weights(t: f64) -> [f64; 4] {
    let a = -0.75;
    let c1 = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    let c2 = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    [c2(t + 1.0), c1(t), c1(1.0 - t), c2(2.0 - t)]
}

/// `F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)` of a `[m, m, d]` grid
/// to `[oh, ow, d]`: source position `(o + 0.5) / s − 0.5`, neighbours clamped at the border.
pub fn bicubic_scale(
    src: &[f32],
    m: usize,
    d: usize,
    oh: usize,
    ow: usize,
    sh: f64,
    sw: f64,
) -> Vec<f32> {
    let taps = |o: usize, s: f64| -> ([usize; 4], [f64; 4]) {
        let real = (o as f64 + 0.5) / s - 0.5;
        let i0 = real.floor();
        let w = cubic_weights(real - i0);
        let idx = [-1i64, 0, 1, 2].map(|k| (i0 as i64 + k).clamp(0, m as i64 - 1) as usize);
        (idx, w)
    };
    let mut out = vec![0f32; oh * ow * d];
    for y in 0..oh {
        let (iy, wy) = taps(y, sh);
        for x in 0..ow {
            let (ix, wx) = taps(x, sw);
            let o = &mut out[(y * ow + x) * d..(y * ow + x + 1) * d];
            for (a, &yy) in iy.iter().enumerate() {
                for (b, &xx) in ix.iter().enumerate() {
                    let wt = (wy[a] * wx[b]) as f32;
                    let s = &src[(yy * m + xx) * d..(yy * m + xx + 1) * d];
                    o.iter_mut().zip(s).for_each(|(p, q)| *p += wt * q);
                }
            }
        }
    }
    out
}

impl Vit {
    /// Reduce an official checkpoint to its backbone's keys: unwrap `state_dict.` (iBOT's
    /// `checkpoint_teacher.pth`, MoCo-v3's `.pth.tar`) and `module.` (DDP), then, with `prefix`
    /// (e.g. MoCo-v3's `momentum_encoder.`), take the keys under it as the backbone; the keys of
    /// everything else (the other encoder, projector heads, predictor) are left unused.
    pub fn select(w: &mut Weights, prefix: Option<&str>) {
        w.unwrap_checkpoint();
        if let Some(p) = prefix {
            w.strip_prefix(p);
        }
    }

    /// Load an official checkpoint (DINO `*_pretrain.pth`, DINOv2 `*_pretrain.pth`, or their
    /// safetensors). Training checkpoints' prefixes (`teacher.backbone.`, `student.backbone.`,
    /// `module.`, `backbone.`) are stripped; `mask_token` and heads are ignored.
    ///
    /// # Errors
    /// A missing key or a shape mismatch, naming the file and key.
    pub fn load(config: &VitConfig, w: &mut Weights, device: &Device) -> Result<Vit, WeightsError> {
        for prefix in [
            "teacher.backbone.",
            "student.backbone.",
            "module.",
            "backbone.",
        ] {
            w.strip_prefix(prefix);
        }
        // DINOv2 checkpoints saved with block chunking name blocks `blocks.<chunk>.<i>.…`.
        if !w.has("blocks.0.norm1.weight") && w.has("blocks.0.0.norm1.weight") {
            flatten_chunks(w);
        }
        let d = config.dim;
        let m = config.init(device);
        let lin = |name: &str, din: usize, dout: usize| -> Result<Linear, WeightsError> {
            let wt = w.values(&format!("{name}.weight"), &[dout, din])?;
            // PyTorch [out, in] → burn [in, out].
            let mut t = vec![0f32; din * dout];
            for o in 0..dout {
                for i in 0..din {
                    t[i * dout + o] = wt[o * din + i];
                }
            }
            let mut l = LinearConfig::new(din, dout).init(device);
            l.weight = Param::from_tensor(tensor(t, [din, dout], device));
            l.bias = Some(Param::from_tensor(w.tensor(
                &format!("{name}.bias"),
                [dout],
                device,
            )?));
            Ok(l)
        };
        let ln = |name: &str| -> Result<LayerNorm, WeightsError> {
            let mut l = LayerNormConfig::new(d).with_epsilon(1e-6).init(device);
            l.gamma = Param::from_tensor(w.tensor(&format!("{name}.weight"), [d], device)?);
            l.beta = Some(Param::from_tensor(w.tensor(
                &format!("{name}.bias"),
                [d],
                device,
            )?));
            Ok(l)
        };
        let hidden = config.hidden();
        let mut blocks = Vec::new();
        for i in 0..config.depth {
            let p = format!("blocks.{i}");
            blocks.push(Block {
                norm1: ln(&format!("{p}.norm1"))?,
                attn: Attention {
                    qkv: lin(&format!("{p}.attn.qkv"), d, 3 * d)?,
                    proj: lin(&format!("{p}.attn.proj"), d, d)?,
                    heads: config.heads,
                    causal: false,
                },
                ls1: if config.layer_scale {
                    Some(Param::from_tensor(w.tensor(
                        &format!("{p}.ls1.gamma"),
                        [d],
                        device,
                    )?))
                } else {
                    None
                },
                norm2: ln(&format!("{p}.norm2"))?,
                mlp: match config.ffn {
                    Ffn::Mlp => FeedForward::Mlp(Mlp {
                        fc1: lin(&format!("{p}.mlp.fc1"), d, hidden)?,
                        fc2: lin(&format!("{p}.mlp.fc2"), hidden, d)?,
                    }),
                    Ffn::SwiGlu => FeedForward::SwiGlu(SwiGlu {
                        w12: lin(&format!("{p}.mlp.w12"), d, 2 * hidden)?,
                        w3: lin(&format!("{p}.mlp.w3"), hidden, d)?,
                    }),
                },
                ls2: if config.layer_scale {
                    Some(Param::from_tensor(w.tensor(
                        &format!("{p}.ls2.gamma"),
                        [d],
                        device,
                    )?))
                } else {
                    None
                },
            });
        }
        let mut patch_embed = m.patch_embed;
        patch_embed.weight = Param::from_tensor(w.tensor(
            "patch_embed.proj.weight",
            [d, 3, config.patch, config.patch],
            device,
        )?);
        patch_embed.bias = Some(Param::from_tensor(w.tensor(
            "patch_embed.proj.bias",
            [d],
            device,
        )?));
        Ok(Vit {
            patch_embed,
            cls_token: Param::from_tensor(w.tensor("cls_token", [1, 1, d], device)?),
            pos_embed: Param::from_tensor(w.tensor(
                "pos_embed",
                [1, 1 + config.grid * config.grid, d],
                device,
            )?),
            register_tokens: if config.registers > 0 {
                Some(Param::from_tensor(w.tensor(
                    "register_tokens",
                    [1, config.registers, d],
                    device,
                )?))
            } else {
                None
            },
            blocks,
            norm: ln("norm")?,
            patch: config.patch,
            grid: config.grid,
        })
    }

    /// The position embedding for a `gh × gw` patch grid: the stored one when it fits, else its
    /// patch part resized bicubically with `scale_factor = (g + 0.1) / grid` as DINO and DINOv2
    /// do (computed on the host: a few hundred kilobytes, once per forward).
    fn pos_embed_for(&self, gh: usize, gw: usize) -> Result<Tensor<3>, NodeError> {
        let pe = self.pos_embed.val();
        if gh == self.grid && gw == self.grid {
            return Ok(pe);
        }
        let [_, n1, d] = pe.dims();
        let device = pe.device();
        let data = to_host(pe)?;
        let m = self.grid;
        let patch = bicubic_scale(
            &data[d..n1 * d],
            m,
            d,
            gh,
            gw,
            (gh as f64 + 0.1) / m as f64,
            (gw as f64 + 0.1) / m as f64,
        );
        let mut all = data[..d].to_vec();
        all.extend(patch);
        Ok(Tensor::from_data(
            TensorData::new(all, [1, 1 + gh * gw, d]),
            &device,
        ))
    }

    /// The CLS token after the final norm, the paper's feature.
    ///
    /// # Shapes
    /// `[b, 3, h, w]` (ImageNet-normalised; h, w multiples of the patch size) → `[b, dim]`
    ///
    /// # Errors
    /// The device failed to hand back the position embedding (interpolated on the host).
    pub fn forward_features(&self, x: Tensor<4>) -> Result<Tensor<2>, NodeError> {
        let [b, _, _, _] = x.dims();
        let t = self.patch_embed.forward(x); // [b, d, gh, gw]
        let [_, d, gh, gw] = t.dims();
        let t = t.reshape([b, d, gh * gw]).swap_dims(1, 2); // [b, gh*gw, d]
        let cls = self.cls_token.val().expand([b, 1, d]);
        let mut t = Tensor::cat(vec![cls, t], 1) + self.pos_embed_for(gh, gw)?;
        if let Some(r) = &self.register_tokens {
            // DINOv2 inserts registers after the CLS token, after the position embedding.
            let nr = r.val().dims()[1];
            let n = t.dims()[1];
            t = Tensor::cat(
                vec![
                    t.clone().narrow(1, 0, 1),
                    r.val().expand([b, nr, d]),
                    t.narrow(1, 1, n - 1),
                ],
                1,
            );
        }
        for blk in &self.blocks {
            t = blk.forward(t);
        }
        Ok(self.norm.forward(t).narrow(1, 0, 1).reshape([b, d]))
    }

    /// Patch size.
    pub fn patch(&self) -> usize {
        self.patch
    }
}

/// Rename `blocks.<chunk>.<i>.…` to `blocks.<i>.…` (DINOv2 `block_chunks > 0`).
fn flatten_chunks(w: &mut Weights) {
    let keys: Vec<String> = w.keys().iter().map(|k| k.to_string()).collect();
    let mut renames = Vec::new();
    for k in keys {
        let parts: Vec<&str> = k.splitn(4, '.').collect();
        if parts.len() == 4
            && parts[0] == "blocks"
            && parts[1].parse::<usize>().is_ok()
            && parts[2].parse::<usize>().is_ok()
        {
            renames.push((k.clone(), format!("blocks.{}.{}", parts[2], parts[3])));
        }
    }
    w.rename(&renames);
}

//! SongUNet, the DDPM++ architecture as EDM uses it (Song et al. 2021, "Score-Based Generative
//! Modeling through Stochastic Differential Equations"; Karras et al. 2022, "Elucidating the
//! Design Space of Diffusion-Based Generative Models"; reference: NVlabs/edm
//! `training/networks.py`, class `SongUNet` with `embedding_type='positional'`,
//! `encoder_type=decoder_type='standard'`, `resample_filter=[1,1]`).
//!
//! Mapping: positional noise embedding (`endpoint=True`, sin/cos swapped) + label embedding of
//! `one_hot · √label_dim` + augment-label embedding (no bias) → SiLU(Linear) → SiLU(Linear).
//! UNet blocks: GroupNorm (≤32 groups of ≥4 channels, eps 1e-6) → SiLU → 3×3 conv (with 2×
//! nearest up / 2×2 average down) → + affine(emb) → GroupNorm → SiLU → dropout → 3×3 conv; skip
//! (1×1 conv when channels or resolution change) added, times √0.5; single-head attention
//! (qkv interleaved per channel as EDM's reshape implies), times √0.5 again.
//!
//! Field paths and `load`/`save` use EDM's parameter names (`map_noise`, `map_label.weight`,
//! `enc.32x32_block0.conv0.weight`, …) in PyTorch layout; burn's `[in, out]` Linear weights are
//! transposed on the way. Init follows EDM: xavier-uniform, final convs of blocks, attention
//! projections and the output conv scaled by 1e-5, qkv by √0.2.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{GroupNorm, GroupNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Device, Distribution, FloatDType, Tensor, TensorData};

use cedm_engine::NodeError;
use cedm_kernels::rng::Rng;

use crate::device::to_host;
use crate::ops;

/// SongUNet hyper-parameters (EDM's constructor arguments).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SongUNetConfig {
    /// Image side.
    pub img_resolution: usize,
    /// Image channels (1 grey, 3 RGB).
    pub in_channels: usize,
    /// Label dimension (number of used clusters or classes; 0 = unconditional).
    pub label_dim: usize,
    /// Augment label dimension (9 with EDM's augment pipe, 0 without).
    pub augment_dim: usize,
    /// Base channel count.
    pub model_channels: usize,
    /// Channel multipliers per resolution.
    pub channel_mult: Vec<usize>,
    /// Embedding width multiplier.
    pub channel_mult_emb: usize,
    /// Blocks per resolution.
    pub num_blocks: usize,
    /// Resolutions with self-attention.
    pub attn_resolutions: Vec<usize>,
    /// Dropout of the blocks' second conv input.
    pub dropout: f64,
}

impl SongUNetConfig {
    /// EDM's CIFAR-10 DDPM++ (32 px, 128 ch, [2, 2, 2], 4 blocks, attention at 16; C-EDM dropout 0.13).
    pub fn cifar(label_dim: usize) -> SongUNetConfig {
        SongUNetConfig {
            img_resolution: 32,
            in_channels: 3,
            label_dim,
            augment_dim: 9,
            model_channels: 128,
            channel_mult: vec![2, 2, 2],
            channel_mult_emb: 4,
            num_blocks: 4,
            attn_resolutions: vec![16],
            dropout: 0.13,
        }
    }
    /// EDM's FFHQ-64 DDPM++ ([1, 2, 2, 2], dropout 0.05).
    pub fn ffhq64(label_dim: usize) -> SongUNetConfig {
        SongUNetConfig {
            img_resolution: 64,
            channel_mult: vec![1, 2, 2, 2],
            dropout: 0.05,
            ..Self::cifar(label_dim)
        }
    }
    /// A small configuration that trains on a CPU (32 ch, [1, 2, 2], 1 block, attention at 8).
    pub fn small(img_resolution: usize, in_channels: usize, label_dim: usize) -> SongUNetConfig {
        SongUNetConfig {
            img_resolution,
            in_channels,
            label_dim,
            augment_dim: 9,
            model_channels: 32,
            channel_mult: vec![1, 2, 2],
            channel_mult_emb: 4,
            num_blocks: 1,
            attn_resolutions: vec![8],
            dropout: 0.1,
        }
    }

    /// Build with EDM's initialisation from `seed`.
    pub fn init(&self, seed: u64, device: &Device) -> SongUNet {
        let mut rng = Rng::new(seed);
        let mut b = Builder {
            rng: &mut rng,
            device,
        };
        let noise_ch = self.model_channels;
        let emb_ch = self.model_channels * self.channel_mult_emb;
        let block = |b: &mut Builder<'_>,
                     cin: usize,
                     cout: usize,
                     up: bool,
                     down: bool,
                     attention: bool|
         -> UNetBlock {
            b.block(cin, cout, emb_ch, up, down, attention, self.dropout)
        };
        let map_label = (self.label_dim > 0).then(|| b.linear(self.label_dim, noise_ch, true, 1.0));
        let map_augment =
            (self.augment_dim > 0).then(|| b.linear(self.augment_dim, noise_ch, false, 1.0));
        let map_layer0 = b.linear(noise_ch, emb_ch, true, 1.0);
        let map_layer1 = b.linear(emb_ch, emb_ch, true, 1.0);
        let mut enc = Vec::new();
        let mut cout = self.in_channels;
        let mut skips = Vec::new();
        for (level, &mult) in self.channel_mult.iter().enumerate() {
            let res = self.img_resolution >> level;
            if level == 0 {
                let cin = cout;
                cout = self.model_channels;
                enc.push((
                    format!("{res}x{res}_conv"),
                    EncLayer::Conv(b.conv(cin, cout, 3, 1.0)),
                ));
            } else {
                enc.push((
                    format!("{res}x{res}_down"),
                    EncLayer::Block(block(&mut b, cout, cout, false, true, false)),
                ));
            }
            skips.push(cout);
            for idx in 0..self.num_blocks {
                let cin = cout;
                cout = self.model_channels * mult;
                let attn = self.attn_resolutions.contains(&res);
                enc.push((
                    format!("{res}x{res}_block{idx}"),
                    EncLayer::Block(block(&mut b, cin, cout, false, false, attn)),
                ));
                skips.push(cout);
            }
        }
        let mut dec = Vec::new();
        let levels = self.channel_mult.len();
        for (level, &mult) in self.channel_mult.iter().enumerate().rev() {
            let res = self.img_resolution >> level;
            if level == levels - 1 {
                dec.push((
                    format!("{res}x{res}_in0"),
                    block(&mut b, cout, cout, false, false, true),
                ));
                dec.push((
                    format!("{res}x{res}_in1"),
                    block(&mut b, cout, cout, false, false, false),
                ));
            } else {
                dec.push((
                    format!("{res}x{res}_up"),
                    block(&mut b, cout, cout, true, false, false),
                ));
            }
            for idx in 0..=self.num_blocks {
                let cin = cout + skips.pop().unwrap_or(0);
                cout = self.model_channels * mult;
                let attn = idx == self.num_blocks && self.attn_resolutions.contains(&res);
                dec.push((
                    format!("{res}x{res}_block{idx}"),
                    block(&mut b, cin, cout, false, false, attn),
                ));
            }
        }
        let res0 = self.img_resolution;
        let out_norm = b.group_norm(cout);
        let out_conv = b.conv(cout, self.in_channels, 3, 1e-5);
        SongUNet {
            map_label,
            map_augment,
            map_layer0,
            map_layer1,
            enc: enc.iter().map(|(_, l)| l.clone()).collect(),
            dec: dec.iter().map(|(_, l)| l.clone()).collect(),
            out_norm,
            out_conv,
            enc_names: enc.into_iter().map(|(n, _)| n).collect(),
            dec_names: dec.into_iter().map(|(n, _)| n).collect(),
            out_prefix: format!("{res0}x{res0}"),
            noise_channels: noise_ch,
            label_dim: self.label_dim,
            dropout: self.dropout,
        }
    }

    /// Trainable parameters (for logs).
    pub fn parameter_count(&self) -> usize {
        self.init(0, &Device::flex()).num_params()
    }
}

struct Builder<'a> {
    rng: &'a mut Rng,
    device: &'a Device,
}

impl Builder<'_> {
    fn xavier(&mut self, n: usize, fan_in: usize, fan_out: usize, scale: f64) -> Vec<f32> {
        let bound = (6.0 / (fan_in + fan_out) as f64).sqrt();
        (0..n)
            .map(|_| ((self.rng.uniform() * 2.0 - 1.0) * bound * scale) as f32)
            .collect()
    }

    fn linear(&mut self, din: usize, dout: usize, bias: bool, scale: f64) -> Linear {
        // EDM stores [out, in]; burn [in, out]. Draw in EDM's order, then transpose.
        let w = self.xavier(din * dout, din, dout, scale);
        let mut t = vec![0f32; din * dout];
        for o in 0..dout {
            for i in 0..din {
                t[i * dout + o] = w[o * din + i];
            }
        }
        let mut l = LinearConfig::new(din, dout)
            .with_bias(bias)
            .init(self.device);
        l.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(t, [din, dout]),
            self.device,
        ));
        if bias {
            l.bias = Some(Param::from_tensor(Tensor::zeros([dout], self.device)));
        }
        l
    }

    fn conv(&mut self, cin: usize, cout: usize, k: usize, scale: f64) -> Conv2d {
        let w = self.xavier(cout * cin * k * k, cin * k * k, cout * k * k, scale);
        let mut c = Conv2dConfig::new([cin, cout], [k, k])
            .with_padding(PaddingConfig2d::Explicit(k / 2, k / 2, k / 2, k / 2))
            .init(self.device);
        c.weight = Param::from_tensor(Tensor::from_data(
            TensorData::new(w, [cout, cin, k, k]),
            self.device,
        ));
        c.bias = Some(Param::from_tensor(Tensor::zeros([cout], self.device)));
        c
    }

    fn group_norm(&mut self, c: usize) -> GroupNorm {
        GroupNormConfig::new(32.min(c / 4).max(1), c)
            .with_epsilon(1e-6)
            .init(self.device)
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &mut self,
        cin: usize,
        cout: usize,
        emb: usize,
        up: bool,
        down: bool,
        attention: bool,
        dropout: f64,
    ) -> UNetBlock {
        let norm0 = self.group_norm(cin);
        let conv0 = self.conv(cin, cout, 3, 1.0);
        let affine = self.linear(emb, cout, true, 1.0);
        let norm1 = self.group_norm(cout);
        let conv1 = self.conv(cout, cout, 3, 1e-5);
        let skip = (cout != cin || up || down).then(|| self.conv(cin, cout, 1, 1.0));
        let (norm2, qkv, proj) = if attention {
            (
                Some(self.group_norm(cout)),
                Some(self.conv(cout, cout * 3, 1, 0.2f64.sqrt())),
                Some(self.conv(cout, cout, 1, 1e-5)),
            )
        } else {
            (None, None, None)
        };
        UNetBlock {
            norm0,
            conv0,
            affine,
            norm1,
            conv1,
            skip,
            norm2,
            qkv,
            proj,
            up,
            down,
            dropout,
        }
    }
}

/// A UNet block (EDM's `UNetBlock` with `adaptive_scale=False`, one attention head).
#[derive(Module, Debug)]
pub struct UNetBlock {
    norm0: GroupNorm,
    conv0: Conv2d,
    affine: Linear,
    norm1: GroupNorm,
    conv1: Conv2d,
    skip: Option<Conv2d>,
    norm2: Option<GroupNorm>,
    qkv: Option<Conv2d>,
    proj: Option<Conv2d>,
    up: bool,
    down: bool,
    dropout: f64,
}

impl UNetBlock {
    fn resample(&self, x: Tensor<4>) -> Tensor<4> {
        if self.up {
            ops::up2(x)
        } else if self.down {
            ops::down2(x)
        } else {
            x
        }
    }

    /// # Shapes
    /// `x`: `[n, cin, h, w]`, `emb`: `[n, emb]` → `[n, cout, h', w']`
    pub fn forward(&self, x: Tensor<4>, emb: Tensor<2>, train: bool) -> Tensor<4> {
        let orig = x.clone();
        let h = ops::conv2d(
            &self.conv0,
            self.resample(ops::group_norm(&self.norm0, x, None, true)),
        );
        let params = self.affine.forward(emb);
        let mut h = ops::group_norm(&self.norm1, h, Some(params), true);
        if train && self.dropout > 0.0 {
            let keep = 1.0 - self.dropout;
            let mask = Tensor::<4>::random(h.dims(), Distribution::Bernoulli(keep), &h.device())
                .cast(h.dtype());
            h = h * mask / keep;
        }
        let h = ops::conv2d(&self.conv1, h);
        let skip = match &self.skip {
            Some(s) => ops::conv2d(s, self.resample(orig)),
            None => orig,
        };
        let scale = std::f64::consts::FRAC_1_SQRT_2;
        let mut x = ops::add_scale(h, skip, scale);
        if let (Some(norm2), Some(qkv), Some(proj)) = (&self.norm2, &self.qkv, &self.proj) {
            let [n, c, hh, ww] = x.dims();
            // EDM reshapes [n, 3c, h, w] to [n, c, 3, hw]: q, k, v interleave per channel.
            let t = ops::conv2d(qkv, ops::group_norm(norm2, x.clone(), None, false)).reshape([
                n,
                c,
                3,
                hh * ww,
            ]);
            let q = t.clone().narrow(2, 0, 1).reshape([n, c, hh * ww]);
            let k = t.clone().narrow(2, 1, 1).reshape([n, c, hh * ww]);
            let v = t.narrow(2, 2, 1).reshape([n, c, hh * ww]);
            let w = attention_weights(q, k); // [n, q, k]
            let a = v.matmul(w.swap_dims(1, 2)).reshape([n, c, hh, ww]); // [n, c, q]
            x = ops::add_scale(ops::conv2d(proj, a), x, scale);
        }
        x
    }
}

/// Attention weights softmax_k(qᵀk / √c) of `q`, `k` `[n, c, hw]` → `[n, q, k]`, as NVlabs/edm's
/// `AttentionOp` (training/networks.py:113-126): k is scaled in its own dtype, then the product
/// and the softmax are computed in f32 whatever the compute dtype, and the weights cast back to
/// it, so that f16/bf16 training cannot overflow the logits. (EDM's hand-written backward takes
/// the softmax's gradient from the weights rounded to the half type; autodiff here takes it from
/// the f32 softmax: the same formula, different last bits.)
pub fn attention_weights(q: Tensor<3>, k: Tensor<3>) -> Tensor<3> {
    let dt = q.dtype();
    let c = k.dims()[1];
    let k = (k / (c as f64).sqrt()).cast(FloatDType::F32);
    softmax(q.cast(FloatDType::F32).swap_dims(1, 2).matmul(k), 2).cast(dt)
}

/// An encoder entry: the first conv, or a block.
#[derive(Module, Debug)]
pub enum EncLayer {
    /// The input convolution.
    Conv(Conv2d),
    /// A UNet block.
    Block(UNetBlock),
}

/// SongUNet.
#[derive(Module, Debug)]
pub struct SongUNet {
    map_label: Option<Linear>,
    map_augment: Option<Linear>,
    map_layer0: Linear,
    map_layer1: Linear,
    enc: Vec<EncLayer>,
    dec: Vec<UNetBlock>,
    out_norm: GroupNorm,
    out_conv: Conv2d,
    enc_names: Vec<String>,
    dec_names: Vec<String>,
    out_prefix: String,
    noise_channels: usize,
    label_dim: usize,
    dropout: f64,
}

/// EDM's positional embedding with `endpoint=True`, swapped to `[sin, cos]`.
///
/// # Shapes
/// `noise`: `[n]` → `[n, channels]`
pub fn positional_embedding(noise: Tensor<1>, channels: usize) -> Tensor<2> {
    let half = channels / 2;
    let dev = noise.device();
    let freqs: Vec<f32> = (0..half)
        .map(|i| (1.0f64 / 10000.0).powf(i as f64 / (half - 1).max(1) as f64) as f32)
        .collect();
    let f = Tensor::<1>::from_data(TensorData::new(freqs, [half]), &dev);
    let n = noise.dims()[0];
    let x = noise.reshape([n, 1]) * f.reshape([1, half]);
    Tensor::cat(vec![x.clone().sin(), x.cos()], 1)
}

impl SongUNet {
    /// The raw network F.
    ///
    /// # Shapes
    /// - `x`: `[n, c, r, r]`, `noise_labels` (c_noise): `[n]`
    /// - `class_labels`: `[n, label_dim]` (one-hot; zeros = no condition), when label_dim > 0
    /// - `augment_labels`: `[n, augment_dim]`, optional
    /// - returns `[n, c, r, r]`
    pub fn forward(
        &self,
        x: Tensor<4>,
        noise_labels: Tensor<1>,
        class_labels: Option<Tensor<2>>,
        augment_labels: Option<Tensor<2>>,
        train: bool,
    ) -> Tensor<4> {
        // Mixed precision: the parameters' dtype (f16/bf16 copies of f32 master weights during
        // training) decides the compute dtype; inputs are cast to it, the output back.
        let pd = self.map_layer0.weight.val().dtype();
        let xd = x.dtype();
        let x = x.cast(pd);
        let mut emb = positional_embedding(noise_labels, self.noise_channels).cast(pd);
        if let (Some(ml), Some(cl)) = (&self.map_label, class_labels) {
            emb = emb + ml.forward(cl.cast(pd) * (self.label_dim as f64).sqrt());
        }
        if let (Some(ma), Some(al)) = (&self.map_augment, augment_labels) {
            emb = emb + ma.forward(al.cast(pd));
        }
        let emb = silu(self.map_layer1.forward(silu(self.map_layer0.forward(emb))));
        let mut skips = Vec::new();
        let mut x = x;
        for layer in &self.enc {
            x = match layer {
                EncLayer::Conv(c) => ops::conv2d(c, x),
                EncLayer::Block(b) => b.forward(x, emb.clone(), train),
            };
            skips.push(x.clone());
        }
        for b in &self.dec {
            let cin = b.norm0.num_channels;
            if x.dims()[1] != cin {
                let s = skips.pop().unwrap_or_else(|| x.clone());
                x = ops::cat_channels(x, s);
            }
            x = b.forward(x, emb.clone(), train);
        }
        ops::conv2d(
            &self.out_conv,
            ops::group_norm(&self.out_norm, x, None, true),
        )
        .cast(xd)
    }

    /// Parameters by EDM's names, PyTorch layout (for saving, and for parity fixtures).
    ///
    /// # Errors
    /// The device failed to hand back a parameter.
    pub fn named_params(&self) -> Result<BTreeMap<String, (Vec<usize>, Vec<f32>)>, NodeError> {
        type Named = BTreeMap<String, (Vec<usize>, Vec<f32>)>;
        let mut out = BTreeMap::new();
        let put_linear = |out: &mut Named, name: &str, l: &Linear| -> Result<(), NodeError> {
            let [din, dout] = l.weight.dims();
            let w = to_host(l.weight.val())?;
            let mut t = vec![0f32; din * dout];
            for i in 0..din {
                for o in 0..dout {
                    t[o * din + i] = w[i * dout + o];
                }
            }
            out.insert(format!("{name}.weight"), (vec![dout, din], t));
            if let Some(b) = &l.bias {
                out.insert(format!("{name}.bias"), (vec![dout], to_host(b.val())?));
            }
            Ok(())
        };
        let put_conv = |out: &mut Named, name: &str, c: &Conv2d| -> Result<(), NodeError> {
            out.insert(
                format!("{name}.weight"),
                (c.weight.dims().to_vec(), to_host(c.weight.val())?),
            );
            if let Some(b) = &c.bias {
                out.insert(
                    format!("{name}.bias"),
                    (b.dims().to_vec(), to_host(b.val())?),
                );
            }
            Ok(())
        };
        let put_gn = |out: &mut Named, name: &str, g: &GroupNorm| -> Result<(), NodeError> {
            if let (Some(w), Some(b)) = (&g.gamma, &g.beta) {
                out.insert(
                    format!("{name}.weight"),
                    (w.dims().to_vec(), to_host(w.val())?),
                );
                out.insert(
                    format!("{name}.bias"),
                    (b.dims().to_vec(), to_host(b.val())?),
                );
            }
            Ok(())
        };
        let put_block = |out: &mut Named, p: &str, b: &UNetBlock| -> Result<(), NodeError> {
            put_gn(out, &format!("{p}.norm0"), &b.norm0)?;
            put_conv(out, &format!("{p}.conv0"), &b.conv0)?;
            put_linear(out, &format!("{p}.affine"), &b.affine)?;
            put_gn(out, &format!("{p}.norm1"), &b.norm1)?;
            put_conv(out, &format!("{p}.conv1"), &b.conv1)?;
            if let Some(s) = &b.skip {
                put_conv(out, &format!("{p}.skip"), s)?;
            }
            if let (Some(n2), Some(q), Some(pr)) = (&b.norm2, &b.qkv, &b.proj) {
                put_gn(out, &format!("{p}.norm2"), n2)?;
                put_conv(out, &format!("{p}.qkv"), q)?;
                put_conv(out, &format!("{p}.proj"), pr)?;
            }
            Ok(())
        };
        if let Some(l) = &self.map_label {
            put_linear(&mut out, "map_label", l)?;
        }
        if let Some(l) = &self.map_augment {
            put_linear(&mut out, "map_augment", l)?;
        }
        put_linear(&mut out, "map_layer0", &self.map_layer0)?;
        put_linear(&mut out, "map_layer1", &self.map_layer1)?;
        for (name, layer) in self.enc_names.iter().zip(&self.enc) {
            match layer {
                EncLayer::Conv(c) => put_conv(&mut out, &format!("enc.{name}"), c)?,
                EncLayer::Block(b) => put_block(&mut out, &format!("enc.{name}"), b)?,
            }
        }
        for (name, b) in self.dec_names.iter().zip(&self.dec) {
            put_block(&mut out, &format!("dec.{name}"), b)?;
        }
        put_gn(
            &mut out,
            &format!("dec.{}_aux_norm", self.out_prefix),
            &self.out_norm,
        )?;
        put_conv(
            &mut out,
            &format!("dec.{}_aux_conv", self.out_prefix),
            &self.out_conv,
        )?;
        Ok(out)
    }

    /// Load parameters by EDM's names (as [`SongUNet::named_params`] writes them).
    ///
    /// # Errors
    /// A missing name or a shape mismatch.
    pub fn load_named(
        mut self,
        p: &BTreeMap<String, (Vec<usize>, Vec<f32>)>,
        device: &Device,
    ) -> Result<SongUNet, String> {
        let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>, String> {
            let (s, v) = p
                .get(name)
                .ok_or_else(|| format!("missing parameter `{name}`"))?;
            if s != shape {
                return Err(format!(
                    "parameter `{name}` has shape {s:?}, expected {shape:?}"
                ));
            }
            Ok(v.clone())
        };
        let t1 = |v: Vec<f32>, n: usize| {
            Param::from_tensor(Tensor::<1>::from_data(TensorData::new(v, [n]), device))
        };
        let load_linear = |name: &str, l: &mut Linear| -> Result<(), String> {
            let [din, dout] = l.weight.dims();
            let w = get(&format!("{name}.weight"), &[dout, din])?;
            let mut t = vec![0f32; din * dout];
            for o in 0..dout {
                for i in 0..din {
                    t[i * dout + o] = w[o * din + i];
                }
            }
            l.weight =
                Param::from_tensor(Tensor::from_data(TensorData::new(t, [din, dout]), device));
            if l.bias.is_some() {
                l.bias = Some(t1(get(&format!("{name}.bias"), &[dout])?, dout));
            }
            Ok(())
        };
        let load_conv = |name: &str, c: &mut Conv2d| -> Result<(), String> {
            let d = c.weight.dims();
            c.weight = Param::from_tensor(Tensor::from_data(
                TensorData::new(get(&format!("{name}.weight"), &d)?, d),
                device,
            ));
            c.bias = Some(t1(get(&format!("{name}.bias"), &[d[0]])?, d[0]));
            Ok(())
        };
        let load_gn = |name: &str, g: &mut GroupNorm| -> Result<(), String> {
            let n = g.num_channels;
            g.gamma = Some(t1(get(&format!("{name}.weight"), &[n])?, n));
            g.beta = Some(t1(get(&format!("{name}.bias"), &[n])?, n));
            Ok(())
        };
        let load_block = |pfx: &str, b: &mut UNetBlock| -> Result<(), String> {
            load_gn(&format!("{pfx}.norm0"), &mut b.norm0)?;
            load_conv(&format!("{pfx}.conv0"), &mut b.conv0)?;
            load_linear(&format!("{pfx}.affine"), &mut b.affine)?;
            load_gn(&format!("{pfx}.norm1"), &mut b.norm1)?;
            load_conv(&format!("{pfx}.conv1"), &mut b.conv1)?;
            if let Some(s) = &mut b.skip {
                load_conv(&format!("{pfx}.skip"), s)?;
            }
            if let (Some(n2), Some(q), Some(pr)) = (&mut b.norm2, &mut b.qkv, &mut b.proj) {
                load_gn(&format!("{pfx}.norm2"), n2)?;
                load_conv(&format!("{pfx}.qkv"), q)?;
                load_conv(&format!("{pfx}.proj"), pr)?;
            }
            Ok(())
        };
        if let Some(l) = &mut self.map_label {
            load_linear("map_label", l)?;
        }
        if let Some(l) = &mut self.map_augment {
            load_linear("map_augment", l)?;
        }
        load_linear("map_layer0", &mut self.map_layer0)?;
        load_linear("map_layer1", &mut self.map_layer1)?;
        let enc_names = self.enc_names.clone();
        for (name, layer) in enc_names.iter().zip(self.enc.iter_mut()) {
            match layer {
                EncLayer::Conv(c) => load_conv(&format!("enc.{name}"), c)?,
                EncLayer::Block(b) => load_block(&format!("enc.{name}"), b)?,
            }
        }
        let dec_names = self.dec_names.clone();
        for (name, b) in dec_names.iter().zip(self.dec.iter_mut()) {
            load_block(&format!("dec.{name}"), b)?;
        }
        let pfx = self.out_prefix.clone();
        load_gn(&format!("dec.{pfx}_aux_norm"), &mut self.out_norm)?;
        load_conv(&format!("dec.{pfx}_aux_conv"), &mut self.out_conv)?;
        Ok(self)
    }

    /// Label dimension.
    pub fn label_dim(&self) -> usize {
        self.label_dim
    }
}

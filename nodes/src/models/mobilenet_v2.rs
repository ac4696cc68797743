//! MobileNetV2 (Sandler et al. 2018, "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
//! <https://arxiv.org/abs/1801.04381>), as torchvision builds it
//! (`torchvision/models/mobilenetv2.py`), for inference: the clustering backbone that runs on a
//! CPU. Loads torchvision's ImageNet checkpoint `mobilenet_v2-b0353104.pth` by its key names.
//!
//! Port differences: BatchNorm (eval mode, eps 1e-5) is folded into the preceding convolution at
//! load time, so every conv has a bias and there is no separate norm layer; there is no
//! classifier (`forward_features` ends at the pooled 1280-d feature the paper's pipeline uses).

use burn::module::{Module, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{Device, Tensor};

use super::weights::{Weights, WeightsError, tensor};
use cedm_kernels::cpu;

/// torchvision's inverted-residual settings: (expansion t, channels c, repeats n, stride s).
const SETTINGS: [(usize, usize, usize, usize); 7] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
];

/// Conv with folded BatchNorm, optionally followed by ReLU6.
#[derive(Module, Debug)]
pub struct ConvBn {
    conv: Conv2d,
    relu6: bool,
}

impl ConvBn {
    fn new(
        cin: usize,
        cout: usize,
        k: usize,
        stride: usize,
        groups: usize,
        relu6: bool,
        device: &Device,
    ) -> ConvBn {
        let conv = Conv2dConfig::new([cin, cout], [k, k])
            .with_stride([stride, stride])
            .with_padding(PaddingConfig2d::Explicit(
                (k - 1) / 2,
                (k - 1) / 2,
                (k - 1) / 2,
                (k - 1) / 2,
            ))
            .with_groups(groups)
            .with_bias(true)
            .init(device);
        ConvBn { conv, relu6 }
    }

    /// Load `{conv}.weight` and fold the BatchNorm at `{bn}.{weight,bias,running_mean,running_var}`.
    fn load(
        mut self,
        w: &Weights,
        conv: &str,
        bn: &str,
        device: &Device,
    ) -> Result<ConvBn, WeightsError> {
        let [cout, cin_g, kh, kw] = self.conv.weight.dims();
        let weight = w.values(&format!("{conv}.weight"), &[cout, cin_g, kh, kw])?;
        let gamma = w.values(&format!("{bn}.weight"), &[cout])?;
        let beta = w.values(&format!("{bn}.bias"), &[cout])?;
        let mean = w.values(&format!("{bn}.running_mean"), &[cout])?;
        let var = w.values(&format!("{bn}.running_var"), &[cout])?;
        let per = cin_g * kh * kw;
        let mut fw = weight;
        let mut fb = vec![0f32; cout];
        for o in 0..cout {
            let s = gamma[o] / (var[o] + 1e-5).sqrt();
            for v in &mut fw[o * per..(o + 1) * per] {
                *v *= s;
            }
            fb[o] = beta[o] - mean[o] * s;
        }
        self.conv.weight = Param::from_tensor(tensor(fw, [cout, cin_g, kh, kw], device));
        self.conv.bias = Some(Param::from_tensor(tensor(fb, [cout], device)));
        Ok(self)
    }

    /// # Shapes
    /// `[n, cin, h, w]` → `[n, cout, h/stride, w/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let y = self.conv.forward(x);
        if self.relu6 { y.clamp(0.0, 6.0) } else { y }
    }
}

/// An inverted residual block: 1×1 expand (t > 1) → 3×3 depthwise → 1×1 linear projection,
/// with a skip when stride 1 and channels are kept.
#[derive(Module, Debug)]
pub struct InvertedResidual {
    expand: Option<ConvBn>,
    depthwise: ConvBn,
    project: ConvBn,
    residual: bool,
}

impl InvertedResidual {
    /// # Shapes
    /// `[n, cin, h, w]` → `[n, cout, h/stride, w/stride]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let h = match &self.expand {
            Some(e) => e.forward(x.clone()),
            None => x.clone(),
        };
        let h = self.project.forward(self.depthwise.forward(h));
        if self.residual { x + h } else { h }
    }
}

/// MobileNetV2 configuration.
#[derive(Clone, Debug)]
pub struct MobileNetV2Config {
    /// Width multiplier (torchvision's checkpoint: 1.0).
    pub width_mult: f64,
}

impl MobileNetV2Config {
    /// torchvision's `mobilenet_v2(weights=IMAGENET1K_V1)`.
    pub fn imagenet() -> MobileNetV2Config {
        MobileNetV2Config { width_mult: 1.0 }
    }

    fn ch(&self, c: usize) -> usize {
        // torchvision's _make_divisible(c * width_mult, 8).
        let v = c as f64 * self.width_mult;
        let mut new = ((v + 4.0) as usize / 8 * 8).max(8);
        if (new as f64) < 0.9 * v {
            new += 8;
        }
        new
    }

    /// Random-weight model (tests); use [`MobileNetV2::load`] for the checkpoint.
    pub fn init(&self, device: &Device) -> MobileNetV2 {
        let stem_c = self.ch(32);
        let stem = ConvBn::new(3, stem_c, 3, 2, 1, true, device);
        let mut blocks = Vec::new();
        let mut cin = stem_c;
        for (t, c, n, s) in SETTINGS {
            let cout = self.ch(c);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let hidden = cin * t;
                blocks.push(InvertedResidual {
                    expand: (t != 1).then(|| ConvBn::new(cin, hidden, 1, 1, 1, true, device)),
                    depthwise: ConvBn::new(hidden, hidden, 3, stride, hidden, true, device),
                    project: ConvBn::new(hidden, cout, 1, 1, 1, false, device),
                    residual: stride == 1 && cin == cout,
                });
                cin = cout;
            }
        }
        let last = if self.width_mult > 1.0 {
            self.ch(1280)
        } else {
            1280
        };
        MobileNetV2 {
            stem,
            blocks,
            head: ConvBn::new(cin, last, 1, 1, 1, true, device),
        }
    }
}

/// MobileNetV2 feature extractor.
#[derive(Module, Debug)]
pub struct MobileNetV2 {
    stem: ConvBn,
    blocks: Vec<InvertedResidual>,
    head: ConvBn,
}

impl MobileNetV2 {
    /// Load torchvision's checkpoint. Key remapping (torchvision → this port):
    ///
    /// # Errors
    /// A missing key or a shape mismatch, naming the file and key.
    pub fn load(
        config: &MobileNetV2Config,
        w: &Weights,
        device: &Device,
    ) -> Result<MobileNetV2, WeightsError> {
        let m = config.init(device);
        // features.0 = Conv2dNormActivation(3→32): .0 conv, .1 bn.
        let stem = m.stem.load(w, "features.0.0", "features.0.1", device)?;
        let mut blocks = Vec::new();
        for (i, b) in m.blocks.into_iter().enumerate() {
            let p = format!("features.{}.conv", i + 1);
            let (expand, depthwise, project) = match b.expand {
                // t = 1: conv.0 = depthwise (Conv2dNormActivation), conv.1 = project conv, conv.2 = bn.
                None => (
                    None,
                    b.depthwise
                        .load(w, &format!("{p}.0.0"), &format!("{p}.0.1"), device)?,
                    b.project
                        .load(w, &format!("{p}.1"), &format!("{p}.2"), device)?,
                ),
                // t > 1: conv.0 = expand, conv.1 = depthwise, conv.2 = project conv, conv.3 = bn.
                Some(e) => (
                    Some(e.load(w, &format!("{p}.0.0"), &format!("{p}.0.1"), device)?),
                    b.depthwise
                        .load(w, &format!("{p}.1.0"), &format!("{p}.1.1"), device)?,
                    b.project
                        .load(w, &format!("{p}.2"), &format!("{p}.3"), device)?,
                ),
            };
            blocks.push(InvertedResidual {
                expand,
                depthwise,
                project,
                residual: b.residual,
            });
        }
        // features.18 = Conv2dNormActivation(320→1280).
        let head = m.head.load(w, "features.18.0", "features.18.1", device)?;
        Ok(MobileNetV2 { stem, blocks, head })
    }

    /// The pooled feature (before the classifier's dropout and linear layer).
    ///
    /// # Shapes
    /// `[n, 3, h, w]` (ImageNet-normalised RGB) → `[n, 1280]`
    pub fn forward_features(&self, x: Tensor<4>) -> Tensor<2> {
        let mut h = self.stem.forward(x);
        for b in &self.blocks {
            h = b.forward(h);
        }
        let h = self.head.forward(h); // [n, 1280, h/32, w/32]
        let [n, c, _, _] = h.dims();
        h.mean_dim(3).mean_dim(2).reshape([n, c])
    }
}

/// The same network on the CPU kernels of [`cedm_kernels::cpu`] (NHWC), for fast inference on the CPU
/// backend. Loaded from the same checkpoint with the same BatchNorm folding; parity-tested
/// against torchvision like the burn module.
pub struct MobileNetV2Cpu {
    stem: cpu::Conv,
    blocks: Vec<(Option<cpu::Conv>, cpu::Depthwise, cpu::Conv, bool)>,
    head: cpu::Conv,
}

fn folded(
    w: &Weights,
    conv: &str,
    bn: &str,
    shape: [usize; 4],
) -> Result<(Vec<f32>, Vec<f32>), WeightsError> {
    let [cout, cin_g, kh, kw] = shape;
    let mut fw = w.values(&format!("{conv}.weight"), &shape)?;
    let gamma = w.values(&format!("{bn}.weight"), &[cout])?;
    let beta = w.values(&format!("{bn}.bias"), &[cout])?;
    let mean = w.values(&format!("{bn}.running_mean"), &[cout])?;
    let var = w.values(&format!("{bn}.running_var"), &[cout])?;
    let per = cin_g * kh * kw;
    let mut fb = vec![0f32; cout];
    for o in 0..cout {
        let s = gamma[o] / (var[o] + 1e-5).sqrt();
        fw[o * per..(o + 1) * per].iter_mut().for_each(|v| *v *= s);
        fb[o] = beta[o] - mean[o] * s;
    }
    Ok((fw, fb))
}

impl MobileNetV2Cpu {
    /// Load torchvision's checkpoint (same key mapping as [`MobileNetV2::load`]).
    ///
    /// # Errors
    /// A missing key or a shape mismatch.
    pub fn load(config: &MobileNetV2Config, w: &Weights) -> Result<MobileNetV2Cpu, WeightsError> {
        use cpu::{Act, Conv, Depthwise};
        let pw = |conv: &str,
                  bn: &str,
                  cin: usize,
                  cout: usize,
                  act: Act|
         -> Result<Conv, WeightsError> {
            let (fw, fb) = folded(w, conv, bn, [cout, cin, 1, 1])?;
            Ok(Conv::from_oihw(
                &fw,
                fb,
                cout,
                cin,
                1,
                1,
                (1, 1),
                (0, 0),
                act,
            ))
        };
        let stem_c = config.ch(32);
        let (fw, fb) = folded(w, "features.0.0", "features.0.1", [stem_c, 3, 3, 3])?;
        let stem = Conv::from_oihw(&fw, fb, stem_c, 3, 3, 3, (2, 2), (1, 1), Act::Relu6);
        let mut blocks = Vec::new();
        let mut cin = stem_c;
        let mut idx = 1;
        for (t, c, n, s) in SETTINGS {
            let cout = config.ch(c);
            for i in 0..n {
                let stride = if i == 0 { s } else { 1 };
                let hidden = cin * t;
                let p = format!("features.{idx}.conv");
                let (expand, dw_conv, dw_bn, proj_conv, proj_bn) = if t == 1 {
                    (
                        None,
                        format!("{p}.0.0"),
                        format!("{p}.0.1"),
                        format!("{p}.1"),
                        format!("{p}.2"),
                    )
                } else {
                    (
                        Some(pw(
                            &format!("{p}.0.0"),
                            &format!("{p}.0.1"),
                            cin,
                            hidden,
                            Act::Relu6,
                        )?),
                        format!("{p}.1.0"),
                        format!("{p}.1.1"),
                        format!("{p}.2"),
                        format!("{p}.3"),
                    )
                };
                let (dw, db) = folded(w, &dw_conv, &dw_bn, [hidden, 1, 3, 3])?;
                let depthwise = Depthwise::from_oihw(&dw, db, hidden, stride, Act::Relu6);
                let project = pw(&proj_conv, &proj_bn, hidden, cout, Act::None)?;
                blocks.push((expand, depthwise, project, stride == 1 && cin == cout));
                cin = cout;
                idx += 1;
            }
        }
        let last = if config.width_mult > 1.0 {
            config.ch(1280)
        } else {
            1280
        };
        let head = pw(
            &format!("features.{idx}.0"),
            &format!("features.{idx}.1"),
            cin,
            last,
            Act::Relu6,
        )?;
        Ok(MobileNetV2Cpu { stem, blocks, head })
    }

    /// The pooled 1280-d feature.
    ///
    /// # Shapes
    /// `x`: `[n, 3, h, w]` NCHW (ImageNet-normalised) → `[n, 1280]`
    pub fn forward_features(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        let x = cpu::nchw_to_nhwc(x, n, 3, h, w);
        let (mut x, mut h, mut w) = self.stem.forward(&x, n, h, w, None);
        for (expand, dw, project, residual) in &self.blocks {
            let e = match expand {
                Some(e) => e.forward(&x, n, h, w, None).0,
                None => x.clone(),
            };
            let (d, oh, ow) = dw.forward(&e, n, h, w);
            let res = if *residual { Some(x.as_slice()) } else { None };
            let (p, _, _) = project.forward(&d, n, oh, ow, res);
            x = p;
            h = oh;
            w = ow;
        }
        let (y, oh, ow) = self.head.forward(&x, n, h, w, None);
        cpu::global_avg(&y, n, oh * ow, self.head.cout)
    }
}

//! A small CNN image classifier — the probe of `metrics/cnn_probe`, trained on real labelled
//! images by `metrics/classifier`:
//!
//! conv3×3(c→w) → ReLU → conv3×3(w→w) → ReLU → max-pool 2 → conv3×3(w→2w) → ReLU → max-pool 2 →
//! flatten → Linear(2w·⌊h/4⌋·⌊w/4⌋ → hidden) → ReLU → dropout → Linear(hidden → classes).
//!
//! Convolutions pad by 1 ("same") and go through cedm's CPU kernels on the flex device
//! ([`crate::ops::conv2d`]). Parameters are initialised as PyTorch's `nn.Conv2d` / `nn.Linear`
//! (U(−1/√fan_in, 1/√fan_in) for weights and biases, kaiming-uniform with a = √5) from a seeded
//! stream, and stored under PyTorch's names and layouts (`c1.weight` `[w, c, 3, 3]`, `f1.weight`
//! `[hidden, in]`) so a checkpoint loads in `torch.nn` as written in `tests/parity/classifier.py`.

use std::collections::BTreeMap;

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Device, Tensor, TensorData};
use cedm_kernels::rng::Rng;

use crate::device::to_host;
use crate::ops;

/// The classifier's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Image channels.
    pub channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Channels of the first two convolutions (the third has twice as many).
    pub filters: usize,
    /// Units of the hidden linear layer.
    pub hidden: usize,
    /// Classes.
    pub classes: usize,
}

impl ClassifierConfig {
    /// Inputs of the first linear layer.
    pub fn flat(&self) -> usize {
        2 * self.filters * (self.height / 4) * (self.width / 4)
    }

    /// The parameters in visit order: PyTorch name and shape.
    pub fn params(&self) -> Vec<(&'static str, Vec<usize>)> {
        let (c, f, h, k) = (self.channels, self.filters, self.hidden, self.classes);
        vec![
            ("c1.weight", vec![f, c, 3, 3]),
            ("c1.bias", vec![f]),
            ("c2.weight", vec![f, f, 3, 3]),
            ("c2.bias", vec![f]),
            ("c3.weight", vec![2 * f, f, 3, 3]),
            ("c3.bias", vec![2 * f]),
            ("f1.weight", vec![h, self.flat()]),
            ("f1.bias", vec![h]),
            ("f2.weight", vec![k, h]),
            ("f2.bias", vec![k]),
        ]
    }

    /// PyTorch's default initialisation from `seed`, in [`Self::params`] order and layout.
    pub fn init_values(&self, seed: u64) -> BTreeMap<String, Vec<f32>> {
        let mut rng = Rng::new(seed);
        let mut out = BTreeMap::new();
        let mut bound = 0.0;
        for (name, shape) in self.params() {
            if name.ends_with(".weight") {
                bound = 1.0 / (shape[1..].iter().product::<usize>() as f64).sqrt();
            }
            let n: usize = shape.iter().product();
            let v = (0..n)
                .map(|_| ((2.0 * rng.uniform() - 1.0) * bound) as f32)
                .collect();
            out.insert(name.to_string(), v);
        }
        out
    }
}

/// The CNN (see the module docs).
#[derive(Module, Debug)]
pub struct Classifier {
    c1: Conv2d,
    c2: Conv2d,
    c3: Conv2d,
    f1: Linear,
    f2: Linear,
}

fn conv(cin: usize, cout: usize, w: &[f32], b: &[f32], device: &Device) -> Conv2d {
    let mut c = Conv2dConfig::new([cin, cout], [3, 3])
        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
        .init(device);
    c.weight = Param::from_tensor(Tensor::from_data(
        TensorData::new(w.to_vec(), [cout, cin, 3, 3]),
        device,
    ));
    c.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b.to_vec(), [cout]),
        device,
    )));
    c
}

/// A linear layer from PyTorch's `[out, in]` weight.
fn linear(din: usize, dout: usize, w: &[f32], b: &[f32], device: &Device) -> Linear {
    let mut l = LinearConfig::new(din, dout).init(device);
    let mut t = vec![0f32; din * dout];
    for o in 0..dout {
        for i in 0..din {
            t[i * dout + o] = w[o * din + i];
        }
    }
    l.weight = Param::from_tensor(Tensor::from_data(TensorData::new(t, [din, dout]), device));
    l.bias = Some(Param::from_tensor(Tensor::from_data(
        TensorData::new(b.to_vec(), [dout]),
        device,
    )));
    l
}

impl Classifier {
    /// Build from PyTorch-named, PyTorch-laid-out values ([`ClassifierConfig::params`]).
    ///
    /// # Errors
    /// A missing parameter or one of the wrong size (its name).
    pub fn from_torch(
        cfg: &ClassifierConfig,
        v: &BTreeMap<String, Vec<f32>>,
        device: &Device,
    ) -> Result<Classifier, String> {
        for (name, shape) in cfg.params() {
            let want: usize = shape.iter().product();
            match v.get(name) {
                Some(x) if x.len() == want => {}
                Some(x) => {
                    return Err(format!(
                        "{name}: {} values, expected {want} ({shape:?})",
                        x.len()
                    ));
                }
                None => return Err(format!("{name} is missing")),
            }
        }
        let (c, f, h, k) = (cfg.channels, cfg.filters, cfg.hidden, cfg.classes);
        Ok(Classifier {
            c1: conv(c, f, &v["c1.weight"], &v["c1.bias"], device),
            c2: conv(f, f, &v["c2.weight"], &v["c2.bias"], device),
            c3: conv(f, 2 * f, &v["c3.weight"], &v["c3.bias"], device),
            f1: linear(cfg.flat(), h, &v["f1.weight"], &v["f1.bias"], device),
            f2: linear(h, k, &v["f2.weight"], &v["f2.bias"], device),
        })
    }

    /// The parameters under PyTorch's names and layouts.
    ///
    /// # Errors
    /// When a tensor cannot be read back.
    pub fn to_torch(&self) -> Result<BTreeMap<String, Vec<f32>>, String> {
        let host = |t: Tensor<1>| to_host(t).map_err(|e| e.to_string());
        let flat = |p: &Param<Tensor<4>>| {
            let t = p.val();
            let n = t.shape().num_elements();
            host(t.reshape([n]))
        };
        let bias = |b: &Option<Param<Tensor<1>>>| match b {
            Some(b) => host(b.val()),
            None => Ok(Vec::new()),
        };
        let lin = |l: &Linear| -> Result<Vec<f32>, String> {
            let w = l.weight.val();
            let [din, dout] = w.dims();
            let v = host(w.reshape([din * dout]))?;
            let mut t = vec![0f32; din * dout];
            for i in 0..din {
                for o in 0..dout {
                    t[o * din + i] = v[i * dout + o];
                }
            }
            Ok(t)
        };
        let mut out = BTreeMap::new();
        for (n, c) in [("c1", &self.c1), ("c2", &self.c2), ("c3", &self.c3)] {
            out.insert(format!("{n}.weight"), flat(&c.weight)?);
            out.insert(format!("{n}.bias"), bias(&c.bias)?);
        }
        for (n, l) in [("f1", &self.f1), ("f2", &self.f2)] {
            out.insert(format!("{n}.weight"), lin(l)?);
            out.insert(format!("{n}.bias"), bias(&l.bias)?);
        }
        Ok(out)
    }

    /// Logits `[n, classes]` of images `x` `[n, c, h, w]`; `keep` is the dropout mask of the
    /// hidden layer (0 or 1/(1−p) per unit, `[n, hidden]`) while training, None to evaluate.
    pub fn forward(&self, x: Tensor<4>, keep: Option<Tensor<2>>) -> Tensor<2> {
        let pool = MaxPoolOptions::new([2, 2]);
        let x = relu(ops::conv2d(&self.c1, x));
        let x = relu(ops::conv2d(&self.c2, x));
        let x = max_pool2d(x, pool.clone());
        let x = relu(ops::conv2d(&self.c3, x));
        let x = max_pool2d(x, pool);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = relu(self.f1.forward(x));
        let x = match keep {
            Some(m) => x * m,
            None => x,
        };
        self.f2.forward(x)
    }
}

/// Training state: the network on an autodiff device and Adam as `torch.optim.Adam` with its
/// defaults (β = (0.9, 0.999), ε = 1e-8), minimising the mean cross-entropy of a batch.
pub struct Trainer {
    cfg: ClassifierConfig,
    net: Classifier,
    adam: crate::models::params::Adam,
    device: Device,
}

impl Trainer {
    /// Start from the PyTorch-named `values` ([`ClassifierConfig::params`]) on `device` (made
    /// an autodiff device here).
    ///
    /// # Errors
    /// A missing parameter or one of the wrong size.
    pub fn new(
        cfg: ClassifierConfig,
        values: &BTreeMap<String, Vec<f32>>,
        device: &Device,
    ) -> Result<Trainer, String> {
        let device = device.clone().autodiff();
        let net = Classifier::from_torch(&cfg, values, &device)?;
        let net =
            crate::models::params::assign(net.clone(), crate::models::params::flat(&net), true);
        let adam =
            crate::models::params::Adam::new(&crate::models::params::flat(&net), 0.9, 0.999, 1e-8);
        Ok(Trainer {
            cfg,
            net,
            adam,
            device,
        })
    }

    /// One Adam step at `lr` on the batch `x` (`[n, c, h, w]`, n = `y.len()`) with class ids
    /// `y` and the hidden layer's dropout mask `keep` (`[n, hidden]`; None: no dropout). The
    /// batch's mean cross-entropy before the step.
    ///
    /// # Errors
    /// When the loss cannot be read back.
    pub fn step(
        &mut self,
        x: Vec<f32>,
        y: &[i64],
        keep: Option<Vec<f32>>,
        lr: f64,
    ) -> Result<f32, String> {
        let n = y.len();
        let c = &self.cfg;
        let xt = Tensor::<4>::from_data(
            TensorData::new(x, [n, c.channels, c.height, c.width]),
            &self.device,
        );
        let keep =
            keep.map(|k| Tensor::<2>::from_data(TensorData::new(k, [n, c.hidden]), &self.device));
        let mut onehot = vec![0f32; n * c.classes];
        for (i, &t) in y.iter().enumerate() {
            onehot[i * c.classes + t as usize] = 1.0;
        }
        let onehot = Tensor::<2>::from_data(TensorData::new(onehot, [n, c.classes]), &self.device);
        let logits = self.net.forward(xt, keep);
        let loss =
            (burn::tensor::activation::log_softmax(logits, 1) * onehot).sum() * (-1.0 / n as f64);
        let g = loss.backward();
        let lv = to_host(loss.inner()).map_err(|e| e.to_string())?;
        let gs = crate::models::params::grads(&self.net, &g);
        let new = self
            .adam
            .update(crate::models::params::flat(&self.net), gs, lr);
        self.net = crate::models::params::assign(self.net.clone(), new, true);
        Ok(lv.first().copied().unwrap_or(f32::NAN))
    }

    /// The parameters under PyTorch's names and layouts.
    ///
    /// # Errors
    /// When a tensor cannot be read back.
    pub fn to_torch(&self) -> Result<BTreeMap<String, Vec<f32>>, String> {
        self.net.to_torch()
    }
}

/// Images as the classifier's input: uint8 pixels `x` mapped to `x / 127.5 − 1`.
pub fn normalize(pixels: &[u8]) -> Vec<f32> {
    pixels.iter().map(|&p| f32::from(p) / 127.5 - 1.0).collect()
}

/// Predicted class ids of `n` uint8 images (`[n, c, h, w]`), in batches of `batch`.
///
/// # Errors
/// When the logits cannot be read back.
pub fn predict(
    net: &Classifier,
    cfg: &ClassifierConfig,
    pixels: &[u8],
    n: usize,
    batch: usize,
    device: &Device,
) -> Result<Vec<i64>, String> {
    let il = cfg.channels * cfg.height * cfg.width;
    let mut out = Vec::with_capacity(n);
    for a in (0..n).step_by(batch.max(1)) {
        let b = batch.max(1).min(n - a);
        let x = Tensor::<4>::from_data(
            TensorData::new(
                normalize(&pixels[a * il..(a + b) * il]),
                [b, cfg.channels, cfg.height, cfg.width],
            ),
            device,
        );
        let logits = to_host(net.forward(x, None)).map_err(|e| e.to_string())?;
        for row in logits.chunks(cfg.classes) {
            // The first of equal maxima, as torch.argmax.
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            out.push(best as i64);
        }
    }
    Ok(out)
}

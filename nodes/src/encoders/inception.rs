//! The FID encoder: grey → RGB, resize to 299, x/128 − 1 (clamped to TensorFlow's input range),
//! TensorFlow's `inception-2015-12-05` up to pool3 (2048-d), as StyleGAN/EDM's detector. On the
//! CPU through cedm's NHWC kernels ([`InceptionCpu`]), elsewhere through burn.

use std::path::Path;

use burn::tensor::Device;
use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, Resample, preprocess};

use super::Encoder;
use crate::device::{Compute, to_host};
use crate::models::inception::{InceptionBurn, InceptionCpu, SIZE, Tap};
use crate::models::weights::{Weights, tensor};

/// How FID images reach 299×299.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum FidResize {
    /// TensorFlow's legacy bilinear, in float (no rounding to uint8): what the StyleGAN/EDM
    /// detector does internally, and fid-helper-pytorch's `nv_bilinear_float`. The default.
    TfBilinear,
    /// Antialiased bicubic (PIL / torchvision `antialias=True`).
    Bicubic,
    /// Antialiased bilinear.
    Bilinear,
}

enum Net {
    Cpu(InceptionCpu),
    Gpu(InceptionBurn, Device),
}

/// The FID Inception as an [`Encoder`].
pub struct Inception {
    net: Net,
    tap: Tap,
    resample: Resample,
    desc: String,
}

impl Inception {
    /// Load the converted weights (`inception-2015-12-05.safetensors`) for a device.
    ///
    /// # Errors
    /// Unreadable weights.
    pub fn load(weights: &Path, comp: &Compute, resize: FidResize) -> Result<Inception, NodeError> {
        Inception::load_tap(weights, comp, resize, Tap::Pool3)
    }

    /// [`Inception::load`], with the features taken at `tap` (pytorch-fid's `--dims`).
    ///
    /// # Errors
    /// Unreadable weights.
    pub fn load_tap(
        weights: &Path,
        comp: &Compute,
        resize: FidResize,
        tap: Tap,
    ) -> Result<Inception, NodeError> {
        let wts = Weights::load(weights)?;
        let resample = match resize {
            FidResize::TfBilinear => Resample::TfBilinear,
            FidResize::Bicubic => Resample::Filter(Filter::Bicubic),
            FidResize::Bilinear => Resample::Filter(Filter::Bilinear),
        };
        let (net, mut desc) = match comp {
            Compute::Cpu(_) => (
                Net::Cpu(InceptionCpu::load(&wts)?),
                format!("{}, NHWC kernels", comp.describe()),
            ),
            Compute::Gpu(dev, _) => (
                Net::Gpu(InceptionBurn::load(&wts, dev)?, dev.clone()),
                comp.describe(),
            ),
        };
        if tap != Tap::Pool3 {
            desc = format!("{desc}, {}-d features", tap.dims());
        }
        Ok(Inception {
            net,
            tap,
            resample,
            desc,
        })
    }
}

impl Encoder for Inception {
    fn dim(&self) -> usize {
        self.tap.dims()
    }
    fn describe(&self) -> String {
        self.desc.clone()
    }
    fn preprocess(&self, pixels: &[u8], b: usize, [c, h, w]: [usize; 3]) -> Vec<f32> {
        let mut x = preprocess(
            pixels,
            b,
            c,
            h,
            w,
            SIZE,
            self.resample,
            [1.0 / 128.0; 3],
            [-1.0; 3],
        );
        // fid-helper-pytorch clamps to the TF input range [-1, 255/128 - 1].
        x.iter_mut().for_each(|v| *v = v.clamp(-1.0, 127.0 / 128.0));
        x
    }
    fn forward(&self, x: Vec<f32>, b: usize) -> Result<Vec<f32>, NodeError> {
        match &self.net {
            Net::Cpu(m) => Ok(m.forward_tap(&x, b, SIZE, SIZE, self.tap)),
            Net::Gpu(m, dev) => {
                to_host(m.forward_tap(tensor(x, [b, 3, SIZE, SIZE], dev), self.tap))
            }
        }
    }
}

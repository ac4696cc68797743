//! MobileNetV2's pooled 1280-d feature (torchvision's ImageNet weights): grey → RGB, an
//! antialiased resize, ImageNet mean/std. On the CPU through cedm's NHWC kernels
//! ([`MobileNetV2Cpu`]), elsewhere through burn.

use std::path::Path;

use burn::tensor::Device;
use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, Resample, imagenet_norm, preprocess};

use super::Encoder;
use crate::device::{Compute, to_host};
use crate::models::mobilenet_v2::{MobileNetV2 as Burn, MobileNetV2Config, MobileNetV2Cpu};
use crate::models::weights::{Weights, tensor};

/// Feature dimension.
pub const DIM: usize = 1280;

enum Net {
    Cpu(MobileNetV2Cpu),
    Gpu(Burn, Device),
}

/// MobileNetV2 as an [`Encoder`].
pub struct MobileNetV2 {
    net: Net,
    resolution: usize,
    filter: Filter,
    desc: String,
}

impl MobileNetV2 {
    /// Load torchvision's checkpoint (`mobilenet_v2-b0353104.pth`) for a device, with input
    /// side `resolution` and resize `filter`.
    ///
    /// # Errors
    /// Unreadable weights.
    pub fn load(
        weights: &Path,
        comp: &Compute,
        resolution: usize,
        filter: Filter,
    ) -> Result<MobileNetV2, NodeError> {
        let wts = Weights::load(weights)?;
        let cfg = MobileNetV2Config::imagenet();
        let (net, desc) = match comp {
            Compute::Cpu(_) => (
                Net::Cpu(MobileNetV2Cpu::load(&cfg, &wts)?),
                format!("{}, NHWC kernels", comp.describe()),
            ),
            Compute::Gpu(dev, _) => (
                Net::Gpu(Burn::load(&cfg, &wts, dev)?, dev.clone()),
                comp.describe(),
            ),
        };
        Ok(MobileNetV2 {
            net,
            resolution,
            filter,
            desc,
        })
    }
}

impl Encoder for MobileNetV2 {
    fn dim(&self) -> usize {
        DIM
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
        match &self.net {
            Net::Cpu(m) => Ok(m.forward_features(&x, b, r, r)),
            Net::Gpu(m, dev) => to_host(m.forward_features(tensor(x, [b, 3, r, r], dev))),
        }
    }
}

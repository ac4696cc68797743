//! CLIP's image tower ([`crate::models::clip`]) as an [`Encoder`]: OpenCLIP's eval
//! preprocessing (resize to the model's side, bicubic, antialiased — the images here are
//! square, so `Resize(224)` + `CenterCrop(224)` is one resize — and OpenAI's mean/std), the
//! projected image embedding (not normalised). burn on every device.

use burn::tensor::Device;
use cedm_engine::NodeError;
use cedm_kernels::imageops::{Filter, Resample, preprocess};

use super::Encoder;
use crate::device::to_host;
use crate::models::clip::{Clip, clip_norm};
use crate::models::weights::tensor;

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

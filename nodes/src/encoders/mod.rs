//! Image encoders behind one [`Encoder`] trait: the FID Inception, MobileNetV2 and the DINO /
//! DINOv2 ViTs. Each takes uint8 NCHW images of any size, preprocesses them as its reference
//! does (grey → RGB, resize, normalise) and returns `[b, dim]` features on the device it was
//! loaded for — on the CPU through cedm's kernels where a model has them, else through burn.
//! Every kind that embeds images (`features/*`, `metrics/*`) goes through [`extract`].

pub mod clip;
pub mod inception;
pub mod mobilenet_v2;
pub mod vit;

use cedm_engine::{NodeError, RunContext};

use crate::artifacts::features::Features;
use crate::artifacts::images::ImageSet;

/// An image encoder loaded on a device.
pub trait Encoder: Sync {
    /// Feature dimension.
    fn dim(&self) -> usize;

    /// Where and how it runs (for logs): `cpu (flex), NHWC kernels`, `wgpu:0`.
    fn describe(&self) -> String;

    /// The network input of `b` uint8 NCHW images of shape `[c, h, w]`, as the reference
    /// preprocesses them.
    ///
    /// # Shapes
    /// `pixels`: `[b, c, h, w]` → `[b, 3, s, s]`
    fn preprocess(&self, pixels: &[u8], b: usize, shape: [usize; 3]) -> Vec<f32>;

    /// Features of a preprocessed batch.
    ///
    /// # Shapes
    /// `x`: `[b, 3, s, s]` → `[b, dim]`
    ///
    /// # Errors
    /// The device failed.
    fn forward(&self, x: Vec<f32>, b: usize) -> Result<Vec<f32>, NodeError>;

    /// Features of `b` uint8 images: [`Encoder::preprocess`] then [`Encoder::forward`].
    ///
    /// # Errors
    /// The device failed.
    fn embed(&self, pixels: &[u8], b: usize, shape: [usize; 3]) -> Result<Vec<f32>, NodeError> {
        self.forward(self.preprocess(pixels, b, shape), b)
    }
}

/// Run `encoder` over the images in batches; returns `[n, dim]`. `on_batch(done)` is called
/// after every batch and returns false to stop.
///
/// # Errors
/// What the encoder returns, or [`NodeError::Interrupted`] when stopped.
pub fn extract_batches(
    set: &ImageSet,
    batch: usize,
    encoder: &dyn Encoder,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Features, NodeError> {
    let d = encoder.dim();
    let mut data = Vec::with_capacity(set.n * d);
    let il = set.image_len();
    let shape = [set.c, set.h, set.w];
    let mut done = 0;
    while done < set.n {
        let b = batch.max(1).min(set.n - done);
        // On a pool worker: the network's parallel operations then start there
        // (cedm_kernels::cpu::on_pool).
        let px = &set.pixels[done * il..(done + b) * il];
        let out = cedm_kernels::cpu::on_pool(|| encoder.embed(px, b, shape))?;
        if out.len() != b * d {
            return Err(NodeError::msg(format!(
                "the encoder returned {} values for {b} images of dimension {d}",
                out.len()
            )));
        }
        data.extend_from_slice(&out);
        done += b;
        if !on_batch(done) {
            return Err(NodeError::Interrupted);
        }
    }
    Ok(Features { n: set.n, d, data })
}

/// [`extract_batches`] inside a node: progress with the rate, stop on request, throughput in
/// the record's stats and the log.
///
/// # Errors
/// What the encoder returns, or [`NodeError::Interrupted`] when asked to stop.
pub fn extract(
    ctx: &mut RunContext<'_>,
    set: &ImageSet,
    batch: usize,
    encoder: &dyn Encoder,
) -> Result<Features, NodeError> {
    let t0 = std::time::Instant::now();
    let n = set.n;
    // The progress line shows the rate itself (once).
    let feats = extract_batches(set, batch, encoder, |done| {
        ctx.progress(done as u64, Some(n as u64), "img", None);
        !ctx.should_stop()
    })?;
    let secs = t0.elapsed().as_secs_f64();
    ctx.stat("img_per_s", n as f64 / secs.max(1e-9));
    ctx.log(format!(
        "{n} images in {secs:.1} s ({:.1} img/s)",
        n as f64 / secs.max(1e-9)
    ));
    Ok(feats)
}

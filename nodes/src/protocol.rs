//! EDM's evaluation protocol, shared by `metrics/fid` and `metrics/fdd` (and their reference
//! kinds): `repeats` disjoint runs of `num` consecutive samples (the paper: 3 × 50k, seeds
//! 0–49 999, 50 000–99 999, 100 000–149 999), one distance each; and the FDD encoder's
//! statistics of an image set (dgm-eval's FD_DINOv2: ViT-L/14, resize 224 bicubic, ImageNet
//! mean/std, CLS after the final norm, not normalised; sets above `max_images` subsampled).

use std::path::Path;

use cedm_engine::{FileParam, NodeError, ParamError, RunContext};
use cedm_kernels::imageops::Filter;

use crate::artifacts::images::ImageSet;
use crate::artifacts::stats::Stats;
use crate::device::compute;
use crate::encoders::vit::{Arch, Vit, config};
use crate::encoders::{Encoder, extract};

/// The run protocol's check: `num`, when given, is at least 2.
pub fn check_num(num: Option<usize>) -> Vec<ParamError> {
    if num.is_some_and(|n| n < 2) {
        vec![ParamError::invalid("num", "must be at least 2")]
    } else {
        vec![]
    }
}

/// The file params of a metric node: the network weights and the optional reference
/// statistics file.
pub fn metric_files(weights: &str, ref_stats: Option<&str>) -> Vec<FileParam> {
    let mut files = vec![FileParam::new("weights", weights)];
    if let Some(r) = ref_stats {
        files.push(FileParam::new("ref_stats", r));
    }
    files
}

/// Split `n` samples into `repeats` runs of `num` (default: all samples divided by `repeats`);
/// errors name what is missing.
///
/// # Errors
/// Too few samples.
pub fn runs(
    n: usize,
    num: Option<usize>,
    repeats: usize,
) -> Result<Vec<std::ops::Range<usize>>, String> {
    let num = num.unwrap_or(n / repeats.max(1));
    if num < 2 {
        return Err(format!(
            "{n} samples cannot make {repeats} runs of at least 2"
        ));
    }
    if num * repeats > n {
        return Err(format!(
            "{repeats} runs of {num} samples need {} samples, the input has {n}",
            num * repeats
        ));
    }
    Ok((0..repeats).map(|r| r * num..(r + 1) * num).collect())
}

/// The FDD encoder's checks: a known model, a resolution that is a multiple of its patch.
pub fn check_dino(model: &str, arch: Option<&Arch>, resolution: usize) -> Vec<ParamError> {
    match config(model, arch) {
        Err(m) => vec![ParamError::invalid("model", m)],
        Ok(cfg) if resolution == 0 || !resolution.is_multiple_of(cfg.patch) => {
            vec![ParamError::invalid(
                "resolution",
                format!(
                    "must be a positive multiple of the patch size {}",
                    cfg.patch
                ),
            )]
        }
        Ok(_) => vec![],
    }
}

/// The FDD encoder (a DINOv2 ViT, as dgm-eval configures it).
pub struct Dino<'a> {
    /// The checkpoint.
    pub weights: &'a str,
    /// ViT preset (`dinov2_vitl14`) or `custom`.
    pub model: &'a str,
    /// Architecture for `custom`.
    pub arch: Option<&'a Arch>,
    /// Input side.
    pub resolution: usize,
    /// Images per batch.
    pub batch_size: usize,
}

impl Dino<'_> {
    /// Features → statistics of an image set (subsampled to `max_images` with `seed` first).
    ///
    /// # Errors
    /// Unreadable weights, stop requests.
    pub fn stats(
        &self,
        ctx: &mut RunContext<'_>,
        set: ImageSet,
        max_images: usize,
        seed: u64,
    ) -> Result<Stats, NodeError> {
        let set = set.subset(Some(max_images), Some(seed));
        let comp = compute(ctx.device())?;
        let enc = Vit::load(
            self.model,
            self.arch,
            Path::new(self.weights),
            None,
            &comp,
            self.resolution,
            Filter::Bicubic,
        )?;
        ctx.log(format!(
            "{} on {}: {} images → {} px, {}-d CLS",
            self.model,
            enc.describe(),
            set.n,
            self.resolution,
            enc.dim()
        ));
        let feats = extract(ctx, &set, self.batch_size, &enc)?;
        Stats::from_features(&feats.data, feats.n, feats.d)
    }
}

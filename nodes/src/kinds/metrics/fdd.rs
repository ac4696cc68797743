//! `metrics/fdd`: Fréchet DINOv2 Distance of generated samples against reference statistics
//! (dgm-eval's FD on DINOv2 ViT-L/14 CLS features), with the same run protocol as
//! `metrics/fid` ([`crate::protocol`]: `repeats` disjoint runs of `num`; mean, min, std).

use std::num::NonZeroUsize;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::frechet::frechet_distance;
use crate::artifacts::images::ImageSet;
use crate::artifacts::metrics::{Distance, DistanceMetrics};
use crate::artifacts::stats::reference;
use crate::artifacts::write_json;
use crate::encoders::vit::Arch;
use crate::params::nz;
use crate::protocol::{Dino, check_dino, check_num, metric_files, runs};

/// Params of `metrics/fdd`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The DINOv2 checkpoint (as `metrics/fdd_ref`). Required.
    pub weights: String,
    /// ViT preset. Default: `dinov2_vitl14`; `custom` with `arch` for others.
    #[serde(default = "vitl14")]
    pub model: String,
    /// Architecture for `model: custom`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Input side. Default: 224.
    #[serde(default = "r224")]
    pub resolution: usize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
    /// Reference statistics from a file (`.npz` or `stats.safetensors`) instead of a `ref` input.
    #[serde(default)]
    pub ref_stats: Option<String>,
    /// Samples per FDD. Default: all samples divided by `repeats`.
    #[serde(default)]
    pub num: Option<usize>,
    /// Number of disjoint runs. Default: 1.
    #[serde(default = "one")]
    pub repeats: NonZeroUsize,
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn vitl14() -> String {
    "dinov2_vitl14".into()
}
fn r224() -> usize {
    224
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `metrics/fdd` kind.
pub struct Fdd;

impl Kind for Fdd {
    const KIND: &'static str = "metrics/fdd";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "FDD (Fréchet distance on DINOv2 ViT-L/14 CLS features) of samples against reference statistics, embedding the samples itself; kept for older files — features/vit + metrics/fd adds intervals, FD∞ and per-cluster FDD";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "samples",
            "generated images (edm/sample) or any image artifact",
        ),
        Slot::optional(
            "ref",
            "reference statistics (metrics/fdd_ref); or give `ref_stats`",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems = check_dino(&p.model, p.arch.as_ref(), p.resolution);
        problems.extend(check_num(p.num));
        problems
    }

    fn files(p: &Params) -> Vec<FileParam> {
        metric_files(&p.weights, p.ref_stats.as_deref())
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a ViT-B at 224 px); the measured peak replaces it on the next run.
        Resources::gpu_shared(3072)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let reference = reference(ctx, p.ref_stats.as_deref(), "metrics/fdd_ref")?;
        let set = ImageSet::read(ctx.require("samples")?)?;
        let runs = runs(set.n, p.num, p.repeats.get()).map_err(NodeError::msg)?;
        let dino = Dino {
            weights: &p.weights,
            model: &p.model,
            arch: p.arch.as_ref(),
            resolution: p.resolution,
            batch_size: p.batch_size.get(),
        };
        let mut fdds = Vec::new();
        for r in &runs {
            let part = set.select(&r.clone().collect::<Vec<_>>());
            // Each run is encoded whole: no further subsampling.
            let s = dino.stats(ctx, part, usize::MAX, 0)?;
            if s.d != reference.d {
                return Err(NodeError::msg(format!(
                    "the reference statistics are {}-d, the encoder gives {}-d",
                    reference.d, s.d
                )));
            }
            let fdd = frechet_distance(&s, &reference)?;
            ctx.log(format!("samples {}..{}: FDD {fdd:.4}", r.start, r.end));
            fdds.push(fdd);
        }
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &DistanceMetrics::from_runs(Distance::Fdd, fdds, runs[0].len()),
        )
    }
}

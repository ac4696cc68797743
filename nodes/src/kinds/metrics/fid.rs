//! `metrics/fid`: Fréchet Inception Distance of generated samples against reference
//! statistics, with EDM's protocol ([`crate::protocol`]): `repeats` disjoint runs of `num`
//! consecutive samples, one FID each, reported as mean, min (what EDM reports), std and the list.

use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::frechet::frechet_distance;
use crate::artifacts::images::ImageSet;
use crate::artifacts::metrics::{Distance, DistanceMetrics};
use crate::artifacts::stats::{Stats, reference};
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::encoders::inception::{FidResize, Inception};
use crate::encoders::{Encoder, extract};
use crate::models::inception::DIM;
use crate::params::nz;
use crate::protocol::{check_num, metric_files, runs};

/// Params of `metrics/fid`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The FID Inception (`inception-2015-12-05.safetensors`). Required.
    pub weights: String,
    /// Reference statistics from a file (`.npz` with `mu`/`sigma`, e.g. EDM's
    /// `cifar10-32x32.npz`, or a `stats.safetensors`) instead of a `ref` input.
    #[serde(default)]
    pub ref_stats: Option<String>,
    /// Samples per FID. Default: all samples divided by `repeats`.
    #[serde(default)]
    pub num: Option<usize>,
    /// Number of disjoint runs. Default: 1 (the paper: 3).
    #[serde(default = "one")]
    pub repeats: NonZeroUsize,
    /// Resize to 299 (must match the reference's). Default: `tf_bilinear`.
    #[serde(default = "tf_bilinear")]
    pub resize: FidResize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn tf_bilinear() -> FidResize {
    FidResize::TfBilinear
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `metrics/fid` kind.
pub struct Fid;

impl Kind for Fid {
    const KIND: &'static str = "metrics/fid";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "FID of samples against reference statistics, embedding the samples itself (EDM's protocol: repeats × num, mean and min); kept for older files — features/inception + metrics/fd adds intervals, FD∞ and per-cluster FID";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "samples",
            "generated images (edm/sample) or any image artifact",
        ),
        Slot::optional(
            "ref",
            "reference statistics (metrics/fid_ref); or give `ref_stats`",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        check_num(p.num)
    }

    fn files(p: &Params) -> Vec<FileParam> {
        metric_files(&p.weights, p.ref_stats.as_deref())
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (Inception v3 at 299 px, batch 32); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let reference = reference(ctx, p.ref_stats.as_deref(), "metrics/fid_ref")?;
        if reference.d != DIM {
            return Err(NodeError::msg(format!(
                "the reference statistics are {}-d; FID needs Inception's {DIM}-d (FDD statistics?)",
                reference.d
            )));
        }
        let set = ImageSet::read(ctx.require("samples")?)?;
        let runs = runs(set.n, p.num, p.repeats.get()).map_err(NodeError::msg)?;
        let used = runs.last().map_or(0, |r| r.end);
        let set = set.subset(Some(used), None);
        let enc = Inception::load(Path::new(&p.weights), &compute_for(ctx)?, p.resize)?;
        ctx.log(format!(
            "Inception on {}: {} runs × {} samples",
            enc.describe(),
            runs.len(),
            runs[0].len()
        ));
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
        let mut fids = Vec::new();
        for r in &runs {
            let s = Stats::from_features(&feats.data[r.start * DIM..r.end * DIM], r.len(), DIM)?;
            let fid = frechet_distance(&s, &reference)?;
            ctx.log(format!("samples {}..{}: FID {fid:.4}", r.start, r.end));
            fids.push(fid);
        }
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &DistanceMetrics::from_runs(Distance::Fid, fids, runs[0].len()),
        )
    }
}

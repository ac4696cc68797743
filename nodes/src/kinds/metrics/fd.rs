//! `metrics/fd`: the Fréchet distance between cached features of generated samples and of a
//! reference — FID on `features/inception`, FD_DINOv2 (FDD) on a DINOv2 `features/vit`, the
//! cheap FD_MobileNetV2 on `features/mobilenet_v2`, any encoder. Adding the metric never re-runs
//! an encoder, and a reference embedded once serves every sweep point.
//!
//! What it computes, from the samples' features (all prepared against one reference,
//! [`PreparedReference`]):
//! - EDM's protocol ([`crate::protocol`]): `repeats` disjoint runs of `num` samples, mean, min
//!   and std over the runs.
//! - A **bootstrap interval** of that mean: `bootstrap` resamples of each run with replacement
//!   (the reference held fixed: it is the population the samples are compared with), the
//!   replicates' quantiles (1 ± `confidence`)/2 (numpy's linear interpolation) shifted by the
//!   bootstrap bias estimate ([`bootstrap_mean`]: FD replicates are biased upward).
//! - **FD∞** (Chong & Forsyth 2020, `FID_infinity`'s `calculate_FID_infinity`): FD on random
//!   subsets of `infinity_points` sizes evenly spaced from `infinity_min` (default N/10: their
//!   5 000 of 50 000) to N, an ordinary least-squares line of FD against 1/N, its intercept.
//! - **Per-cluster FD**, with the `conditions` (the `edm/sample` node, or any labels of the
//!   sample rows) and `labels` (the label source of the reference rows: the EDM's own, so ids
//!   agree) inputs: samples conditioned on label k against reference items of label k, for
//!   every label with at least `min_cluster` of both, and their mean.
//!
//! Output `metrics.json` ([`FdMetrics`]).

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{FileParam, Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::frechet::{
    PreparedReference, bias_corrected_interval, bootstrap_groups, bootstrap_infinity,
    bootstrap_mean, fd_infinity,
};
use crate::artifacts::features::Features;
use crate::artifacts::labels::read_labels;
use crate::artifacts::metrics::{ClusterFd, Distance, DistanceMetrics, FdMetrics};
use crate::artifacts::safetensors::Tensors;
use crate::artifacts::stats::Stats;
use crate::artifacts::write_json;
use crate::protocol::{check_num, runs};

/// Params of `metrics/fd`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Reference statistics from a file (`.npz` with `mu`/`sigma`, e.g. EDM's
    /// `cifar10-32x32.npz`, or a `stats.safetensors`) instead of a `reference` input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_stats: Option<String>,
    /// Samples per run. Default: all samples divided by `repeats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<usize>,
    /// Disjoint runs (EDM's protocol; the paper: 3). Default: 1.
    #[serde(default = "one")]
    pub repeats: NonZeroUsize,
    /// Bootstrap resamples for the interval (0: none). Default: 100.
    #[serde(default = "d_boot")]
    pub bootstrap: usize,
    /// Level of the interval. Default: 0.95.
    #[serde(default = "d_conf")]
    pub confidence: f64,
    /// Sizes in the FD∞ fit (0: no FD∞; Chong & Forsyth use 15). Default: 0.
    #[serde(default)]
    pub infinity_points: usize,
    /// Smallest subset of the FD∞ fit. Default: a tenth of the samples.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infinity_min: Option<usize>,
    /// Fewest samples and reference items for a per-cluster distance. Default: 10.
    #[serde(default = "d_min_cluster")]
    pub min_cluster: usize,
    /// Seed of the resamples and subsets. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn d_boot() -> usize {
    100
}
fn d_conf() -> f64 {
    0.95
}
fn d_min_cluster() -> usize {
    10
}

/// The `metrics/fd` kind.
pub struct MetricsFd;

impl Kind for MetricsFd {
    const KIND: &'static str = "metrics/fd";
    const VERSION: u32 = 3;
    const ABOUT: &'static str = "Fréchet distance on cached features of any encoder (FID, FD_DINOv2, FD_MobileNetV2): EDM's runs, bootstrap interval, FD∞, per-cluster FD";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "samples",
            "features of the generated images (features/* over edm/sample)",
        ),
        Slot::optional(
            "reference",
            "features of the reference images (same encoder), or statistics (metrics/fid_ref, metrics/fdd_ref); or give `ref_stats`",
        ),
        Slot::optional(
            "conditions",
            "labels of the samples (per-cluster FD): the edm/sample node they were drawn by (its conditions), or an image artifact's ground truth / a cluster node",
        ),
        Slot::optional(
            "labels",
            "labels of the reference items: a cluster node or an image artifact's ground truth (per-cluster FD)",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = check_num(p.num);
        v.extend(rules::at_most("bootstrap", p.bootstrap, 100_000));
        if !(p.confidence > 0.0 && p.confidence < 1.0) {
            v.push(ParamError::invalid(
                "confidence",
                "must be strictly between 0 and 1",
            ));
        }
        if p.infinity_points == 1 {
            v.push(ParamError::invalid(
                "infinity_points",
                "a line needs at least 2 points (0 turns FD∞ off)",
            ));
        }
        v.extend(rules::at_most("infinity_points", p.infinity_points, 1000));
        if p.infinity_min.is_some_and(|m| m < 2) {
            v.push(ParamError::invalid("infinity_min", "must be at least 2"));
        }
        v.extend(rules::at_least("min_cluster", p.min_cluster, 2));
        v
    }

    fn files(p: &Params) -> Vec<FileParam> {
        p.ref_stats
            .iter()
            .map(|f| FileParam::new("ref_stats", f))
            .collect()
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let samples_in = ctx.require("samples")?;
        let metric = Features::distance_name(samples_in);
        let encoder = samples_in.record.kind.clone();
        let feats = Features::read(samples_in)?;
        let (reference, ref_feats) = match (ctx.input("reference"), p.ref_stats.as_deref()) {
            (Some(a), None) if a.files.contains_key("stats.safetensors") => {
                (Stats::read(a.path("stats.safetensors")?)?, None)
            }
            (Some(a), None) => {
                let f = Features::read(a)?;
                (Stats::from_features(&f.data, f.n, f.d)?, Some(f))
            }
            (None, Some(f)) => (Stats::read(Path::new(f))?, None),
            (Some(_), Some(_)) => {
                return Err(NodeError::msg(
                    "give the reference either as the `reference` input or as `ref_stats`, not both",
                ));
            }
            (None, None) => {
                return Err(NodeError::msg(
                    "no reference: add a `reference` input (features/* of the training set) or the `ref_stats` param",
                ));
            }
        };
        if reference.d != feats.d {
            return Err(NodeError::msg(format!(
                "the samples' features are {}-d, the reference's {}-d: embed both with the same encoder",
                feats.d, reference.d
            )));
        }
        let runs = runs(feats.n, p.num, p.repeats.get()).map_err(NodeError::msg)?;
        let num = runs[0].len();
        let prep = PreparedReference::new(&reference);
        let all = |r: &std::ops::Range<usize>| r.clone().map(|i| (i, 1u32)).collect::<Vec<_>>();

        let mut values = Vec::new();
        for r in &runs {
            let fd = prep.distance(&feats.data, &all(r))?;
            ctx.log(format!("{metric}, samples {}..{}: {fd:.4}", r.start, r.end));
            values.push(fd);
        }
        let summary = DistanceMetrics::from_runs(Distance::Fd, values.clone(), num);
        let (mean, min, std) = (summary.mean, summary.min, summary.std);

        // Bootstrap of the mean over runs: each run resampled with replacement.
        let total = p.bootstrap as u64;
        let interval = bootstrap_mean(
            &prep,
            &feats.data,
            &runs,
            mean,
            p.bootstrap,
            p.seed,
            p.confidence,
            |b| {
                ctx.progress(b as u64, Some(total), "resamples", None);
                !ctx.should_stop()
            },
        )?;
        if p.bootstrap > 0 && interval.is_none() {
            return Err(NodeError::Interrupted);
        }
        let (ci_low, ci_high, boot_std, boot_bias) = match interval {
            Some(i) => (Some(i.low), Some(i.high), Some(i.std), Some(i.bias)),
            None => (None, None, None, None),
        };

        // FD∞ over all samples used by the runs.
        let used = runs.last().map_or(0, |r| r.end);
        let (fd_infinity, infinity, fd_infinity_ci) = if p.infinity_points >= 2 {
            let lo = p.infinity_min.unwrap_or(used / 10).max(2);
            let (v, pts) = fd_infinity(&prep, &feats.data, used, p.infinity_points, lo, p.seed)?;
            let total = p.bootstrap as u64;
            let ci = bootstrap_infinity(
                &prep,
                &feats.data,
                used,
                p.infinity_points,
                lo,
                v,
                p.bootstrap,
                p.seed,
                p.confidence,
                |b| {
                    ctx.progress(b as u64, Some(total), "FD∞ resamples", None);
                    !ctx.should_stop()
                },
            )?;
            if p.bootstrap > 0 && ci.is_none() {
                return Err(NodeError::Interrupted);
            }
            ctx.log(format!(
                "{metric}∞ {v:.4} from {} sizes {lo}..{used}{}",
                p.infinity_points,
                ci.map_or(String::new(), |i| format!(
                    ", interval [{:.4}, {:.4}]",
                    i.low, i.high
                ))
            ));
            (Some(v), pts, ci.map(|i| (i.low, i.high)))
        } else {
            (None, Vec::new(), None)
        };

        let (per_cluster, fd_per_cluster, fd_per_cluster_ci) =
            per_cluster(ctx, &p, &feats, used, ref_feats.as_ref())?;

        ctx.log(format!(
            "{metric} {mean:.4} ({} × {num}){}",
            runs.len(),
            match (ci_low, ci_high) {
                (Some(l), Some(h)) =>
                    format!(", {:.0}% interval [{l:.4}, {h:.4}]", p.confidence * 100.0),
                _ => String::new(),
            }
        ));
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &FdMetrics {
                metric,
                encoder,
                fd: mean,
                fd_min: min,
                fd_std: std,
                fd_runs: values,
                samples_per_run: num,
                reference_items: reference.n,
                bootstrap: p.bootstrap,
                confidence: p.confidence,
                ci_low,
                ci_high,
                boot_std,
                boot_bias,
                fd_infinity,
                infinity,
                fd_infinity_ci,
                fd_per_cluster,
                fd_per_cluster_ci,
                per_cluster,
            },
        )
    }
}

/// Per-cluster distances, their mean, and the mean's bootstrap interval.
type PerCluster = (Vec<ClusterFd>, Option<f64>, Option<(f64, f64)>);

/// Per-label distances when both `conditions` and `labels` are connected, each with a
/// bootstrap interval (the label's samples resampled, its reference items held fixed), and
/// their mean with the interval of the mean over the same replicates.
fn per_cluster(
    ctx: &mut RunContext<'_>,
    p: &Params,
    feats: &Features,
    used: usize,
    ref_feats: Option<&Features>,
) -> Result<PerCluster, NodeError> {
    let (cond_in, labels_in) = match (ctx.input("conditions"), ctx.input("labels")) {
        (None, None) => return Ok((Vec::new(), None, None)),
        (Some(c), Some(l)) => (c, l),
        _ => {
            return Err(NodeError::msg(
                "per-cluster FD needs both `conditions` (the edm/sample node) and `labels` (the reference's labels)",
            ));
        }
    };
    let Some(rf) = ref_feats else {
        return Err(NodeError::msg(
            "per-cluster FD needs the reference as features (a features/* node), not statistics",
        ));
    };
    let conditions = if cond_in.files.contains_key("conditions.safetensors") {
        Tensors::open(cond_in.path("conditions.safetensors")?)?
            .i64("conditions")?
            .data
    } else {
        read_labels(cond_in, feats.n)?.0
    };
    if conditions.len() != feats.n {
        return Err(NodeError::msg(format!(
            "{} conditions for {} sample features: `conditions` must be the edm/sample node the features were computed from",
            conditions.len(),
            feats.n
        )));
    }
    let (labels, _) = read_labels(labels_in, rf.n)?;
    let mut by_label: BTreeMap<i64, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, &c) in conditions.iter().enumerate().take(used) {
        if c >= 0 {
            by_label.entry(c).or_default().0.push(i);
        }
    }
    for (i, &l) in labels.iter().enumerate() {
        by_label.entry(l).or_default().1.push(i);
    }
    let d = rf.d;
    let mut out = Vec::new();
    // The labels with a distance: their prepared reference and sample rows.
    let mut measured: Vec<(usize, PreparedReference, Vec<usize>)> = Vec::new();
    for (label, (s, r)) in by_label {
        let fd = if s.len() >= p.min_cluster && r.len() >= p.min_cluster {
            let data: Vec<f32> = r.iter().flat_map(|&i| rf.row(i).to_vec()).collect();
            let stats = Stats::from_features(&data, r.len(), d)?;
            let rows: Vec<(usize, u32)> = s.iter().map(|&i| (i, 1)).collect();
            let prep = PreparedReference::new(&stats);
            let fd = prep.distance(&feats.data, &rows)?;
            measured.push((out.len(), prep, s.clone()));
            Some(fd)
        } else {
            None
        };
        out.push(ClusterFd {
            label,
            samples: s.len(),
            reference: r.len(),
            fd,
            ci: None,
        });
    }
    if measured.is_empty() {
        return Ok((out, None, None));
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let fds: Vec<f64> = measured.iter().filter_map(|(i, ..)| out[*i].fd).collect();
    let fd_mean = mean(&fds);
    if p.bootstrap == 0 {
        return Ok((out, Some(fd_mean), None));
    }
    let groups: Vec<(&PreparedReference, &[usize])> = measured
        .iter()
        .map(|(_, prep, s)| (prep, s.as_slice()))
        .collect();
    let total = p.bootstrap as u64;
    let Some(boots) = bootstrap_groups(
        &groups,
        &feats.data,
        p.bootstrap,
        // Apart from the overall interval's streams.
        p.seed ^ 0x9e37_79b9_7f4a_7c15,
        |b| {
            ctx.progress(b as u64, Some(total), "per-cluster resamples", None);
            !ctx.should_stop()
        },
    )?
    else {
        return Err(NodeError::Interrupted);
    };
    for ((i, ..), b) in measured.iter().zip(&boots) {
        let est = out[*i].fd.unwrap_or(f64::NAN);
        out[*i].ci = bias_corrected_interval(b, est, p.confidence).map(|c| (c.low, c.high));
    }
    let means: Vec<f64> = (0..p.bootstrap)
        .map(|b| mean(&boots.iter().map(|g| g[b]).collect::<Vec<_>>()))
        .collect();
    let ci = bias_corrected_interval(&means, fd_mean, p.confidence).map(|c| (c.low, c.high));
    Ok((out, Some(fd_mean), ci))
}

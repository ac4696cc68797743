//! `metrics/paired`: does model A beat model B? A paired comparison of their Fréchet distances
//! to one reference over seeds — Δ = mean over seeds of FD(A_s) − FD(B_s) on cached features of
//! any encoder — with a hierarchical paired bootstrap interval and the design's power: the
//! smallest true |Δ| it detects ([`crate::algorithms::paired`] has the method).
//!
//! `a` and `b` gather across the sweep: connected to sample-feature nodes swept over `seed`
//! (and anything else), they receive every seed's features in sweep order, paired by position —
//! the node itself names the variables it is per (`name: "TEMI C=${C} vs unconditional"` makes
//! one instance per C, each gathering over seeds). Row i of A_s and of B_s must start from the
//! same latent (edm/sample with the same `seed_offset` does), so the bootstrap resamples one set
//! of rows for both, and noise the two models share cancels.
//!
//! Output `metrics.json` ([`PairedMetrics`]): per seed FD(A), FD(B) and their difference, Δ,
//! its interval, the standard deviation of Δ's replicates (its standard error), the spread over
//! seeds and within a seed, the minimum detectable difference at `power`, and a verdict: `A
//! lower` or `B lower` when the interval excludes 0, else `no difference detected`.

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::frechet::PreparedReference;
use crate::algorithms::paired::{SeedPair, minimum_detectable, paired_bootstrap};
use crate::artifacts::features::Features;
use crate::artifacts::stats::Stats;
use crate::artifacts::write_json;

/// Params of `metrics/paired`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// What is compared, for reports (`TEMI C=${C} vs unconditional`; mentioning a swept
    /// variable makes one comparison per value). Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Samples per model and seed (the first `num` rows). Default: all (the same for A and B).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num: Option<NonZeroUsize>,
    /// Bootstrap replicates. Default: 200.
    #[serde(default = "d_boot")]
    pub bootstrap: usize,
    /// Level of the interval (the test's 1 − α). Default: 0.95.
    #[serde(default = "d_conf")]
    pub confidence: f64,
    /// Power at which the minimum detectable difference is stated. Default: 0.8.
    #[serde(default = "d_power")]
    pub power: f64,
    /// Seed of the resamples. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn d_boot() -> usize {
    200
}
fn d_conf() -> f64 {
    0.95
}
fn d_power() -> f64 {
    0.8
}

/// `metrics.json` of `metrics/paired`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PairedMetrics {
    /// The `name` param.
    #[serde(default)]
    pub name: Option<String>,
    /// The distance (`FID`, `FD_MobileNetV2`, …).
    pub metric: String,
    /// The kind that computed the features.
    pub encoder: String,
    /// Seeds (pairs).
    pub seeds: usize,
    /// Samples per model and seed.
    pub samples: usize,
    /// Reference items.
    pub reference_items: usize,
    /// FD(A) per seed.
    pub fd_a: Vec<f64>,
    /// FD(B) per seed.
    pub fd_b: Vec<f64>,
    /// FD(A) − FD(B) per seed.
    pub diffs: Vec<f64>,
    /// Their mean: Δ (negative: A is closer to the reference).
    pub delta: f64,
    /// Lower end of Δ's bootstrap interval.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
    /// Standard deviation of Δ's replicates: its standard error.
    pub se: Option<f64>,
    /// The bootstrap estimate of the bias.
    pub boot_bias: Option<f64>,
    /// Standard deviation of the per-seed differences.
    pub seed_std: f64,
    /// Per seed, the standard deviation of its difference over resampled sample sets.
    pub within_std: Vec<f64>,
    /// The smallest true |Δ| detected with probability `power` at level 1 − `confidence`.
    pub min_detectable: Option<f64>,
    /// `A lower`, `B lower` or `no difference detected`.
    pub verdict: String,
    /// Replicates.
    pub bootstrap: usize,
    /// Level of the interval.
    pub confidence: f64,
    /// Power of `min_detectable`.
    pub power: f64,
}

/// The `metrics/paired` kind.
pub struct MetricsPaired;

impl Kind for MetricsPaired {
    const KIND: &'static str = "metrics/paired";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Paired comparison of two models over seeds: mean FD(A) − FD(B) on cached features, hierarchical paired bootstrap interval, minimum detectable difference";
    const INPUTS: &'static [Slot] = &[
        Slot::gather(
            "a",
            "features of model A's samples, one per seed (gathered across the sweep)",
        ),
        Slot::gather(
            "b",
            "features of model B's samples from the same latents, one per seed, in the same order",
        ),
        Slot::one(
            "reference",
            "features of the reference images, the same encoder",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_least("bootstrap", p.bootstrap, 10));
        v.extend(rules::at_most("bootstrap", p.bootstrap, 100_000));
        for (field, x) in [("confidence", p.confidence), ("power", p.power)] {
            if !(x > 0.0 && x < 1.0) {
                v.push(ParamError::invalid(
                    field,
                    "must be strictly between 0 and 1",
                ));
            }
        }
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (a_in, b_in) = (ctx.inputs_many("a"), ctx.inputs_many("b"));
        if a_in.len() != b_in.len() || a_in.is_empty() {
            return Err(NodeError::msg(format!(
                "`a` has {} feature sets and `b` {}: connect both to nodes swept over the same seeds",
                a_in.len(),
                b_in.len()
            )));
        }
        let reference_in = ctx.require("reference")?;
        let metric = Features::distance_name(reference_in);
        let encoder = reference_in.record.kind.clone();
        let reference = Features::read(reference_in)?;
        let mut sets = Vec::new();
        for (s, (a, b)) in a_in.iter().zip(&b_in).enumerate() {
            for x in [a, b] {
                if x.record.kind != encoder {
                    return Err(NodeError::msg(format!(
                        "seed {s}: features from {} against a reference from {encoder}: embed both with the same encoder",
                        x.record.kind
                    )));
                }
            }
            let (fa, fb) = (Features::read(a)?, Features::read(b)?);
            if fa.d != reference.d || fb.d != reference.d {
                return Err(NodeError::msg(format!(
                    "seed {s}: {}-d and {}-d features against a {}-d reference",
                    fa.d, fb.d, reference.d
                )));
            }
            if fa.n != fb.n && p.num.is_none() {
                return Err(NodeError::msg(format!(
                    "seed {s}: {} samples of A and {} of B; pairing needs the same latents for both (or set `num`)",
                    fa.n, fb.n
                )));
            }
            sets.push((fa, fb));
        }
        let n = p.num.map_or(sets[0].0.n, NonZeroUsize::get);
        if let Some((s, _)) = sets
            .iter()
            .enumerate()
            .find(|(_, (a, b))| a.n < n || b.n < n || a.n != sets[0].0.n)
        {
            return Err(NodeError::msg(format!(
                "seed {s}: {} and {} samples, fewer than `num` = {n} or unlike seed 0's {}",
                sets[s].0.n, sets[s].1.n, sets[0].0.n
            )));
        }
        if n < 2 {
            return Err(NodeError::msg(
                "a Fréchet distance needs at least 2 samples",
            ));
        }
        let stats = Stats::from_features(&reference.data, reference.n, reference.d)?;
        let prep = PreparedReference::new(&stats);
        let pairs: Vec<SeedPair<'_>> = sets
            .iter()
            .map(|(a, b)| SeedPair {
                a: &a.data,
                b: &b.data,
                n,
            })
            .collect();
        let total = p.bootstrap as u64;
        let Some(r) = paired_bootstrap(&prep, &pairs, p.bootstrap, p.seed, p.confidence, |b| {
            ctx.progress(b as u64, Some(total), "resamples", None);
            !ctx.should_stop()
        })?
        else {
            return Err(NodeError::Interrupted);
        };
        let se = r.interval.map(|i| i.std);
        let (ci_low, ci_high) = (r.interval.map(|i| i.low), r.interval.map(|i| i.high));
        let verdict = match (ci_low, ci_high) {
            (_, Some(h)) if h < 0.0 => "A lower",
            (Some(l), _) if l > 0.0 => "B lower",
            _ => "no difference detected",
        };
        let min_detectable = se.map(|s| minimum_detectable(s, p.confidence, p.power));
        for (s, d) in r.diffs.iter().enumerate() {
            ctx.log(format!(
                "seed {s}: {metric} A {:.4}, B {:.4}, A − B {d:.4} (± {:.4} over sample sets)",
                r.fd_a[s], r.fd_b[s], r.within_std[s]
            ));
        }
        ctx.log(format!(
            "Δ = {:.4} over {} seeds, {:.0}% interval [{}, {}], minimum detectable {}: {verdict}",
            r.delta,
            r.diffs.len(),
            p.confidence * 100.0,
            ci_low.map_or("-".into(), |v| format!("{v:.4}")),
            ci_high.map_or("-".into(), |v| format!("{v:.4}")),
            min_detectable.map_or("-".into(), |v| format!("{v:.4}")),
        ));
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &PairedMetrics {
                name: p.name.clone(),
                metric,
                encoder,
                seeds: r.diffs.len(),
                samples: n,
                reference_items: reference.n,
                fd_a: r.fd_a,
                fd_b: r.fd_b,
                diffs: r.diffs,
                delta: r.delta,
                ci_low,
                ci_high,
                se,
                boot_bias: r.interval.map(|i| i.bias),
                seed_std: r.seed_std,
                within_std: r.within_std,
                min_detectable,
                verdict: verdict.into(),
                bootstrap: p.bootstrap,
                confidence: p.confidence,
                power: p.power,
            },
        )
    }
}

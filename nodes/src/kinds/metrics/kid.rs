//! `metrics/kid`: Kernel Inception Distance between two feature sets (samples against a
//! reference), from cached features — any `features/*` node (Inception pool3 for the KID of the
//! literature, MobileNetV2 or DINOv2 for cheaper or stronger encoders), so adding KID never
//! re-runs an encoder. torch-fidelity 0.4's definition and defaults (defaults.py: 100 subsets of
//! 1000, cubic kernel, γ = 1/D, c₀ = 1, seed 2020; [`crate::algorithms::kid`]); the subsets are
//! drawn by cedm's generator, not numpy's, so a value agrees with torch-fidelity's in
//! distribution, and exactly on the same subsets (tests/parity/kid_prdc.py).
//!
//! Output `metrics.json`: `kid` (mean over subsets), `kid_std` (population std, as
//! torch-fidelity), `subsets`, `subset_size`, `encoder` (the kind that computed the features),
//! and a **bootstrap interval** of `kid` (`ci_low`, `ci_high`, `boot_std`, `boot_bias`, as
//! `metrics/fd`'s): `bootstrap` replicates resample the samples with replacement (the reference
//! held fixed), keep the estimate's subsets, and the percentile interval is shifted by the
//! bootstrap bias ([`crate::algorithms::kid::KidBootstrap`]). The spread over subsets says how
//! much the subset draw moves the estimate; the interval says how much another set of samples
//! of the same model would.

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use crate::algorithms::frechet::bias_corrected_interval;
use crate::algorithms::kid::{KidBootstrap, PolyKernel, mean_std_population, subset_mmds};
use crate::artifacts::features::Features;
use crate::artifacts::write_json;

/// Params of `metrics/kid`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Subsets (`kid_subsets`). Default: 100.
    #[serde(default = "d_subsets")]
    pub subsets: usize,
    /// Items per subset, from each set (`kid_subset_size`). Default: 1000.
    #[serde(default = "d_size")]
    pub subset_size: usize,
    /// Kernel degree (`kid_kernel_poly_degree`). Default: 3.
    #[serde(default = "d_degree")]
    pub degree: u32,
    /// Kernel γ (`kid_kernel_poly_gamma`; absent: 1/D).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gamma: Option<f64>,
    /// Kernel c₀ (`kid_kernel_poly_coef0`). Default: 1.
    #[serde(default = "d_coef0")]
    pub coef0: f64,
    /// Seed of the subsets (`rng_seed`). Default: 2020.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Bootstrap replicates for the interval (0: none). Default: 100.
    #[serde(default = "d_bootstrap")]
    pub bootstrap: usize,
    /// Confidence of the interval. Default: 0.95.
    #[serde(default = "d_confidence")]
    pub confidence: f64,
}

fn d_bootstrap() -> usize {
    100
}
fn d_confidence() -> f64 {
    0.95
}

/// The most values the bootstrap may hold: `n_samples · (n_samples + n_reference)`, the
/// kernel matrix of the samples (f64) and, while it is built, their products with the reference
/// (f32): about 2.4 GB at the limit (10 000 samples against 10 000 references); larger sets
/// get no interval (the run log says so).
pub const BOOTSTRAP_MAX_FLOATS: usize = 200_000_000;

fn d_subsets() -> usize {
    100
}
fn d_size() -> usize {
    1000
}
fn d_degree() -> u32 {
    3
}
fn d_coef0() -> f64 {
    1.0
}
fn d_seed() -> u64 {
    2020
}

/// `metrics.json` of `metrics/kid`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KidMetrics {
    /// Mean MMD² over the subsets.
    pub kid: f64,
    /// Its population std.
    pub kid_std: f64,
    /// Subsets.
    pub subsets: usize,
    /// Items per subset.
    pub subset_size: usize,
    /// The kind that computed the features (`features/mobilenet_v2`, …).
    pub encoder: String,
    /// Lower end of the bootstrap interval of `kid` (null without one).
    #[serde(default)]
    pub ci_low: Option<f64>,
    /// Upper end.
    #[serde(default)]
    pub ci_high: Option<f64>,
    /// Standard deviation of the bootstrap replicates.
    #[serde(default)]
    pub boot_std: Option<f64>,
    /// The bootstrap estimate of the bias, mean(replicates) − kid.
    #[serde(default)]
    pub boot_bias: Option<f64>,
    /// Replicates drawn (0: no interval).
    #[serde(default)]
    pub bootstrap: usize,
    /// Confidence of the interval.
    #[serde(default)]
    pub confidence: f64,
}

/// The `metrics/kid` kind.
pub struct MetricsKid;

impl Kind for MetricsKid {
    const KIND: &'static str = "metrics/kid";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Kernel Inception Distance from cached features (torch-fidelity's unbiased MMD², cubic kernel, 100 × 1000 subsets) with a bootstrap interval";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "samples",
            "features of the generated images (features/* over edm/sample)",
        ),
        Slot::one(
            "reference",
            "features of the reference images, the same encoder",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_least("subsets", p.subsets, 1));
        v.extend(rules::at_most("subsets", p.subsets, 1 << 16));
        v.extend(rules::at_least("subset_size", p.subset_size, 2));
        v.extend(rules::at_most("subset_size", p.subset_size, 1 << 16));
        if !(1..=16).contains(&p.degree) {
            v.push(ParamError::invalid("degree", "must be between 1 and 16"));
        }
        if let Some(g) = p.gamma {
            v.extend(rules::positive("gamma", g));
        }
        if !p.coef0.is_finite() {
            v.push(ParamError::invalid("coef0", "must be finite"));
        }
        v.extend(rules::at_most("bootstrap", p.bootstrap, 100_000));
        if !(p.confidence > 0.0 && p.confidence < 1.0) {
            v.push(ParamError::invalid(
                "confidence",
                "must be between 0 and 1 (0.95 for a 95% interval)",
            ));
        }
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let encoder = ctx.require("samples")?.record.kind.clone();
        let (a, b) = Features::read_pair(ctx.require("samples")?, ctx.require("reference")?)?;
        let m = p.subset_size;
        if a.n < m || b.n < m {
            return Err(NodeError::msg(format!(
                "subset_size {m} but the sets have {} and {} items: lower subset_size or use more images",
                a.n, b.n
            )));
        }
        let kernel = PolyKernel {
            degree: p.degree as i32,
            gamma: p.gamma,
            coef0: p.coef0,
        };
        // Subset s draws from its own stream; the products inside are multi-threaded.
        let mmds = subset_mmds(&a.data, &b.data, a.d, p.subsets, m, kernel, p.seed);
        let (kid, kid_std) = mean_std_population(&mmds);
        ctx.log(format!(
            "KID {kid:.6} ± {kid_std:.6} over {} subsets of {m}",
            p.subsets
        ));
        let mut interval = None;
        if p.bootstrap > 0 && a.n.saturating_mul(a.n + b.n) > BOOTSTRAP_MAX_FLOATS {
            ctx.log(format!(
                "no bootstrap interval: {} samples against {} references would hold {} floats of Gram matrices (at most {BOOTSTRAP_MAX_FLOATS})",
                a.n,
                b.n,
                a.n.saturating_mul(a.n + b.n)
            ));
        } else if p.bootstrap > 0 {
            let boot = KidBootstrap::new(&a.data, &b.data, a.d, p.subsets, m, kernel, p.seed);
            let mut reps = Vec::with_capacity(p.bootstrap);
            // In chunks, so that a stop request and progress are seen between them.
            let chunk = rayon::current_num_threads().max(1) * 4;
            while reps.len() < p.bootstrap {
                if ctx.should_stop() {
                    return Err(NodeError::Interrupted);
                }
                let start = reps.len();
                let end = (start + chunk).min(p.bootstrap);
                reps.extend(
                    (start..end)
                        .into_par_iter()
                        .map(|r| boot.replicate(r))
                        .collect::<Vec<_>>(),
                );
                ctx.progress(
                    reps.len() as u64,
                    Some(p.bootstrap as u64),
                    "replicate",
                    None,
                );
            }
            interval = bias_corrected_interval(&reps, kid, p.confidence);
            if let Some(i) = &interval {
                ctx.log(format!(
                    "{:.0}% bootstrap interval [{:.6}, {:.6}] from {} replicates",
                    p.confidence * 100.0,
                    i.low,
                    i.high,
                    p.bootstrap
                ));
            }
        }
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &KidMetrics {
                kid,
                kid_std,
                subsets: p.subsets,
                subset_size: m,
                encoder,
                ci_low: interval.as_ref().map(|i| i.low),
                ci_high: interval.as_ref().map(|i| i.high),
                boot_std: interval.as_ref().map(|i| i.std),
                boot_bias: interval.as_ref().map(|i| i.bias),
                bootstrap: if interval.is_some() { p.bootstrap } else { 0 },
                confidence: p.confidence,
            },
        )
    }
}

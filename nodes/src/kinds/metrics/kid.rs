//! `metrics/kid`: Kernel Inception Distance between two feature sets (samples against a
//! reference), from cached features — any `features/*` node (Inception pool3 for the KID of the
//! literature, MobileNetV2 or DINOv2 for cheaper or stronger encoders), so adding KID never
//! re-runs an encoder. torch-fidelity 0.4's definition and defaults (defaults.py: 100 subsets of
//! 1000, cubic kernel, γ = 1/D, c₀ = 1, seed 2020; [`crate::algorithms::kid`]); the subsets are
//! drawn by cedm's generator, not numpy's, so a value agrees with torch-fidelity's in
//! distribution, and exactly on the same subsets (tests/parity/kid_prdc.py).
//!
//! Output `metrics.json`: `kid` (mean over subsets), `kid_std` (population std, as
//! torch-fidelity), `subsets`, `subset_size`, `encoder` (the kind that computed the features).

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::kid::{PolyKernel, mean_std_population, subset_mmds};
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
}

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
}

/// The `metrics/kid` kind.
pub struct MetricsKid;

impl Kind for MetricsKid {
    const KIND: &'static str = "metrics/kid";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Kernel Inception Distance from cached features (torch-fidelity's unbiased MMD², cubic kernel, 100 × 1000 subsets)";
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
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &KidMetrics {
                kid,
                kid_std,
                subsets: p.subsets,
                subset_size: m,
                encoder,
            },
        )
    }
}

//! `metrics/prdc`: precision and recall (Kynkäänniemi et al. 2019, k = 3) and density and
//! coverage (Naeem et al. 2020, k = 5) of generated features against real ones, from cached
//! features, as the `prdc` package 0.2 computes them ([`crate::algorithms::prdc`]; prdc uses one
//! k for all four — each paper's default is applied to its pair here, `k` params change them).
//! `max_items` caps each set by a seeded subset (the cost is quadratic: prdc's README evaluates
//! 10 000 of each).
//!
//! Output `metrics.json`: `precision`, `recall`, `density`, `coverage`, the two k, the item
//! counts and the features' kind.

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use cedm_kernels::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::prdc::prdc;
use crate::artifacts::features::Features;
use crate::artifacts::write_json;

/// Params of `metrics/prdc`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// k of precision and recall (Kynkäänniemi et al.). Default: 3.
    #[serde(default = "d_pr")]
    pub precision_recall_k: usize,
    /// k of density and coverage (Naeem et al.). Default: 5.
    #[serde(default = "d_dc")]
    pub density_coverage_k: usize,
    /// Most items of each set (a seeded subset beyond). Default: 10000.
    #[serde(default = "d_max")]
    pub max_items: usize,
    /// Seed of the subsets. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn d_pr() -> usize {
    3
}
fn d_dc() -> usize {
    5
}
fn d_max() -> usize {
    10_000
}

/// `metrics.json` of `metrics/prdc`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PrdcMetrics {
    /// Precision (k = `precision_recall_k`).
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// Density (k = `density_coverage_k`).
    pub density: f64,
    /// Coverage.
    pub coverage: f64,
    /// k of precision/recall.
    pub precision_recall_k: usize,
    /// k of density/coverage.
    pub density_coverage_k: usize,
    /// Generated items used.
    pub samples: usize,
    /// Reference items used.
    pub reference: usize,
    /// The kind that computed the features.
    pub encoder: String,
}

/// The `metrics/prdc` kind.
pub struct MetricsPrdc;

fn capped(f: &Features, max: usize, seed: u64) -> (Vec<f32>, usize) {
    if f.n <= max {
        return (f.data.clone(), f.n);
    }
    let mut idx = Rng::stream(seed, 0x9D_C0).choose(f.n, max);
    idx.sort_unstable();
    (idx.iter().flat_map(|&i| f.row(i).to_vec()).collect(), max)
}

impl Kind for MetricsPrdc {
    const KIND: &'static str = "metrics/prdc";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Precision/recall (k = 3) and density/coverage (k = 5) from cached features, as the prdc package";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "samples",
            "features of the generated images (features/* over edm/sample)",
        ),
        Slot::one("reference", "features of the real images, the same encoder"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_least(
            "precision_recall_k",
            p.precision_recall_k,
            1,
        ));
        v.extend(rules::at_least(
            "density_coverage_k",
            p.density_coverage_k,
            1,
        ));
        v.extend(rules::at_most(
            "precision_recall_k",
            p.precision_recall_k,
            1024,
        ));
        v.extend(rules::at_most(
            "density_coverage_k",
            p.density_coverage_k,
            1024,
        ));
        v.extend(rules::at_least("max_items", p.max_items, 2));
        v.extend(rules::at_most("max_items", p.max_items, 100_000));
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let encoder = ctx.require("samples")?.record.kind.clone();
        let (a, b) = Features::read_pair(ctx.require("samples")?, ctx.require("reference")?)?;
        let (fake, nf) = capped(&a, p.max_items, p.seed);
        let (real, nr) = capped(&b, p.max_items, p.seed.wrapping_add(1));
        let kmax = p.precision_recall_k.max(p.density_coverage_k);
        if nf <= kmax || nr <= kmax {
            return Err(NodeError::msg(format!(
                "{nf} samples and {nr} reference items: each set needs more than k = {kmax}"
            )));
        }
        let pr = prdc(&real, &fake, a.d, p.precision_recall_k);
        let dc = if p.density_coverage_k == p.precision_recall_k {
            pr
        } else {
            prdc(&real, &fake, a.d, p.density_coverage_k)
        };
        let m = PrdcMetrics {
            precision: pr.precision,
            recall: pr.recall,
            density: dc.density,
            coverage: dc.coverage,
            precision_recall_k: p.precision_recall_k,
            density_coverage_k: p.density_coverage_k,
            samples: nf,
            reference: nr,
            encoder,
        };
        ctx.log(format!(
            "precision {:.3}, recall {:.3} (k = {}); density {:.3}, coverage {:.3} (k = {})",
            m.precision,
            m.recall,
            m.precision_recall_k,
            m.density,
            m.coverage,
            m.density_coverage_k
        ));
        write_json(&ctx.out_dir().join("metrics.json"), &m)
    }
}

//! `cluster/kmeans`: the k-means baseline (C-EDM's k-means label source) by
//! [`cedm_kernels::kmeans`] (scikit-learn's `KMeans(algorithm="lloyd")`, with Hamerly's
//! bounds). Outputs the cluster artifact ([`crate::artifacts::clusters`]) and `centers.safetensors`.

use std::num::NonZeroUsize;

use cedm_engine::{BatchDefaults, Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use cedm_kernels::kmeans::kmeans;

use crate::artifacts::clusters::{Clusters, KmeansMetrics};
use crate::artifacts::features::Features;
use crate::artifacts::safetensors::write_f32;
use crate::artifacts::write_json;
use crate::params::nz;

/// Params of `cluster/kmeans`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters k. Required.
    pub clusters: usize,
    /// Runs with different initialisations; the lowest inertia wins. Default: 1 (scikit-learn's
    /// `n_init="auto"` with k-means++).
    #[serde(default = "one")]
    pub n_init: NonZeroUsize,
    /// Iteration cap per run. Default: 300 (scikit-learn).
    #[serde(default = "d_iter")]
    pub max_iter: NonZeroUsize,
    /// Convergence tolerance, relative to the mean feature variance. Default: 1e-4.
    #[serde(default = "d_tol")]
    pub tol: f64,
    /// L2-normalise the features first (spherical-ish k-means on cosine geometry). Default: false.
    #[serde(default)]
    pub normalize: bool,
    /// Seed. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn one() -> NonZeroUsize {
    NonZeroUsize::MIN
}
fn d_iter() -> NonZeroUsize {
    const { nz(300) }
}
fn d_tol() -> f64 {
    1e-4
}

/// The `cluster/kmeans` kind.
pub struct ClusterKmeans;

impl Kind for ClusterKmeans {
    const KIND: &'static str = "cluster/kmeans";
    // 2: Hamerly's bounds with exact assignments by matrix products (labels can differ at float ties).
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "k-means baseline (k-means++, exact Lloyd with Hamerly's bounds, best of n_init) → cluster labels, q(c), C_u";
    const INPUTS: &'static [Slot] = &[Slot::one("features", "a feature artifact (features/*)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        rules::at_least("clusters", p.clusters, 2)
            .into_iter()
            .collect()
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 120)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let mut f = Features::read(ctx.require("features")?)?;
        if p.normalize {
            f = f.l2_normalized();
        }
        let t0 = std::time::Instant::now();
        let r = kmeans(
            &f.data,
            f.n,
            f.d,
            p.clusters,
            p.n_init.get(),
            p.max_iter.get(),
            p.tol,
            p.seed,
        )
        .map_err(NodeError::msg)?;
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("seconds", secs);
        let full = f.n * p.clusters * r.iterations.max(1);
        ctx.log(format!(
            "k = {}: {} iterations ({}), inertia {:.6e}, {secs:.1} s; {} point–centre distances ({:.1}% of plain Lloyd's)",
            p.clusters,
            r.iterations,
            if r.converged { "converged" } else { "hit max_iter" },
            r.inertia,
            r.recomputed.iter().sum::<usize>(),
            100.0 * r.recomputed.iter().sum::<usize>() as f64 / full as f64
        ));
        let clusters = Clusters {
            c: p.clusters,
            raw: r.labels.iter().map(|&l| i64::from(l)).collect(),
        };
        clusters.write(ctx.out_dir())?;
        let metrics = KmeansMetrics {
            stats: clusters.stats(),
            inertia: r.inertia,
            iterations: r.iterations,
            converged: r.converged,
        };
        write_json(&ctx.out_dir().join("metrics.json"), &metrics)?;
        write_f32(
            &ctx.out_dir().join("centers.safetensors"),
            "centers",
            &[p.clusters, f.d],
            &r.centers,
            &Default::default(),
        )
    }
}

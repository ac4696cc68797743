//! `cluster/metrics`: a clustering against ground truth ([`crate::algorithms::scores`]: ACC by
//! Hungarian matching, NMI, adjusted MI, ARI, as TEMI's `utils.compute_metrics`), ×100 in
//! `metrics.json` ([`ClusterScores`]).

use cedm_engine::{Kind, NodeError, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::scores::scores;
use crate::artifacts::clusters::ClusterLabels;
use crate::artifacts::labels::truth_labels;
use crate::artifacts::metrics::ClusterScores;
use crate::artifacts::write_json;

/// Params of `cluster/metrics` (none needed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// The `cluster/metrics` kind.
pub struct ClusterMetrics;

impl Kind for ClusterMetrics {
    const KIND: &'static str = "cluster/metrics";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "ACC (Hungarian, majority mapping when over-clustering), NMI, adjusted MI, ARI of cluster labels against ground truth";
    const INPUTS: &'static [Slot] = &[
        Slot::one("clusters", "cluster labels (cluster/temi, cluster/kmeans)"),
        Slot::one(
            "truth",
            "the image artifact with ground-truth labels (data/*)",
        ),
    ];
    type Params = Params;

    fn run(&self, _p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let cl = ClusterLabels::read(ctx.require("clusters")?)?;
        let labels = truth_labels(ctx.require("truth")?, cl.labels.len())?;
        let s = scores(&labels, &cl.labels);
        ctx.log(format!(
            "ACC {:.2} NMI {:.2} ANMI {:.2} ARI {:.2} (×100)",
            s.acc * 100.0,
            s.nmi * 100.0,
            s.ami * 100.0,
            s.ari * 100.0
        ));
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &ClusterScores {
                acc: s.acc * 100.0,
                nmi: s.nmi * 100.0,
                anmi: s.ami * 100.0,
                ari: s.ari * 100.0,
                clusters: cl.c,
                used_clusters: cl.counts.len(),
            },
        )
    }
}

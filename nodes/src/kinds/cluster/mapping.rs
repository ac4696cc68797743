//! `cluster/mapping`: clusters mapped one-to-one to ground-truth classes (seed Fig. 2) — the
//! Hungarian assignment on the training set's contingency matrix that agrees with the most items
//! ([`crate::algorithms::scores::one_to_one`], SciPy's `linear_sum_assignment` with
//! `maximize=True`). Cluster ids are the labels the EDM is conditioned on (the used clusters,
//! remapped to `0..C_u` as C-EDM does), so `edm/sample`'s `class: k` for cluster k draws the
//! class `cluster_to_class[k]`. With C = the number of classes every cluster has a class; with
//! more clusters the extra ones map to none, with fewer some classes have no cluster.
//!
//! Output `mapping.json`: `cluster_to_class` (null: none), `class_to_cluster`, `agreement`
//! (fraction of items whose cluster's class is theirs: the clustering accuracy under this
//! mapping) and, per cluster, its size and the fraction of its items in its class.

use cedm_engine::{Kind, NodeError, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::scores::one_to_one;
use crate::artifacts::clusters::ClusterLabels;
use crate::artifacts::labels::truth_labels;
use crate::artifacts::mapping::{ClusterRow, Mapping};
use crate::artifacts::write_json;

/// Params of `cluster/mapping` (none needed).
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {}

/// Most clusters or classes the mapping is computed for.
pub const MAX_SIDE: usize = 2048;

/// The `cluster/mapping` kind.
pub struct ClusterMapping;

impl Kind for ClusterMapping {
    const KIND: &'static str = "cluster/mapping";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Clusters mapped one-to-one to ground-truth classes (Hungarian on the training set, seed Fig. 2)";
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
        let clusters = cl.counts.len();
        if let Some(bad) = cl.labels.iter().find(|&&l| l < 0 || l as usize >= clusters) {
            return Err(NodeError::msg(format!(
                "cluster label {bad} outside 0..{clusters}"
            )));
        }
        if let Some(bad) = labels.iter().find(|&&l| l < 0) {
            return Err(NodeError::msg(format!("negative class label {bad}")));
        }
        let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        // The Hungarian algorithm is O(n³) on the padded square: a bound that keeps it to
        // seconds (Fig. 2 maps C = the number of classes).
        if clusters.max(classes) > MAX_SIDE {
            return Err(NodeError::msg(format!(
                "{clusters} clusters and {classes} classes: a one-to-one mapping is computed for at most {MAX_SIDE} of either"
            )));
        }
        let (cluster_to_class, matched) = one_to_one(&labels, &cl.labels, clusters, classes);
        let mut class_to_cluster = vec![None; classes];
        for (c, k) in cluster_to_class.iter().enumerate() {
            if let Some(k) = k {
                class_to_cluster[*k] = Some(c);
            }
        }
        let mut hits = vec![0i64; clusters];
        for (&t, &p) in labels.iter().zip(&cl.labels) {
            if cluster_to_class[p as usize] == Some(t as usize) {
                hits[p as usize] += 1;
            }
        }
        let per_cluster = (0..clusters)
            .map(|c| ClusterRow {
                cluster: c,
                class: cluster_to_class[c],
                size: cl.counts[c],
                agreement: hits[c] as f64 / cl.counts[c].max(1) as f64,
            })
            .collect();
        let m = Mapping {
            clusters,
            classes,
            agreement: matched as f64 / labels.len().max(1) as f64,
            cluster_to_class,
            class_to_cluster,
            per_cluster,
        };
        ctx.log(format!(
            "{clusters} clusters → {classes} classes, one to one: {:.1}% of the items agree",
            m.agreement * 100.0
        ));
        write_json(&ctx.out_dir().join("mapping.json"), &m)
    }
}

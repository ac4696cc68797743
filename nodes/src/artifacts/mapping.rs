//! The one-to-one map from clusters to ground-truth classes (`mapping.json`), written by
//! `cluster/mapping` and read by the figures that draw cluster k as its class (seed Fig. 2).

use cedm_engine::{Artifact, NodeError};
use serde::{Deserialize, Serialize};

/// One cluster's row of the mapping.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClusterRow {
    /// Cluster id (the EDM's label index).
    pub cluster: usize,
    /// Its class, if any.
    pub class: Option<usize>,
    /// Items in the cluster.
    pub size: i64,
    /// Fraction of them in its class (0 without a class).
    pub agreement: f64,
}

/// `mapping.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Mapping {
    /// Clusters (used, remapped).
    pub clusters: usize,
    /// Classes of the ground truth.
    pub classes: usize,
    /// The class of each cluster.
    pub cluster_to_class: Vec<Option<usize>>,
    /// The cluster of each class.
    pub class_to_cluster: Vec<Option<usize>>,
    /// Items whose cluster's class is theirs, as a fraction.
    pub agreement: f64,
    /// Per cluster.
    pub per_cluster: Vec<ClusterRow>,
}

impl Mapping {
    /// Read an upstream node's `mapping.json`.
    ///
    /// # Errors
    /// A missing or malformed file, or one whose two directions disagree.
    pub fn read(a: &Artifact) -> Result<Mapping, NodeError> {
        let m: Mapping = super::read_json(a.path("mapping.json")?)?;
        let ok = m.cluster_to_class.len() == m.clusters
            && m.class_to_cluster.len() == m.classes
            && m.class_to_cluster
                .iter()
                .enumerate()
                .all(|(k, c)| c.is_none_or(|c| m.cluster_to_class.get(c) == Some(&Some(k))));
        if !ok {
            return Err(NodeError::msg(
                "mapping.json: cluster_to_class and class_to_cluster do not describe one one-to-one map",
            ));
        }
        Ok(m)
    }
}

//! The cluster-label artifact shared by `cluster/temi` and `cluster/kmeans`, and what EDM and the
//! metrics read from it.
//!
//! `clusters.safetensors`:
//! - `labels` int64 `[N]`: cluster of each item, remapped to `0..C_u` in increasing order of the
//!   raw id (as `torch.unique(ids, return_inverse=True)` in the C-EDM code, so label k is the k-th
//!   entry of `freq.pt`);
//! - `raw_labels` int64 `[N]`: the argmax in `0..C`;
//! - `mapping` int64 `[C_u]`: the raw id of each remapped cluster;
//! - `counts` int64 `[C_u]`: items per cluster (C-EDM's `freq.pt`; q(c) = counts / N).
//!
//! `metrics.json` holds C, C_u, the fill ratio C_u / C and the imbalance KL(U‖p) over used
//! clusters (the `KL` column of the C-EDM repository's results, which it reproduces), then the
//! method's own numbers ([`TemiMetrics`], [`KmeansMetrics`]); readers take the common part as
//! [`ClusterStats`].

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{Artifact, NodeError};

use super::safetensors::{Tensors, Writer};

/// Cluster assignments of N items.
#[derive(Clone, Debug, PartialEq)]
pub struct Clusters {
    /// Requested clusters C.
    pub c: usize,
    /// Raw ids in `0..C`.
    pub raw: Vec<i64>,
}

/// Summary numbers of a clustering (the common head of every cluster kind's `metrics.json`).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClusterStats {
    /// Requested clusters C.
    pub clusters: usize,
    /// Used (non-empty) clusters C_u.
    pub used_clusters: usize,
    /// C_u / C.
    pub fill_ratio: f64,
    /// KL(U‖p) over used clusters: Σ_k (1/K) ln((1/K) / p_k), K = C_u, p_k = n_k / N.
    pub kl_uniform: f64,
}

impl Clusters {
    /// Remapped labels, mapping (raw id per label) and counts.
    pub fn remap(&self) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
        let mut used: Vec<i64> = self.raw.clone();
        used.sort_unstable();
        used.dedup();
        let index: BTreeMap<i64, i64> = used
            .iter()
            .enumerate()
            .map(|(i, &r)| (r, i as i64))
            .collect();
        let labels: Vec<i64> = self.raw.iter().map(|r| index[r]).collect();
        let mut counts = vec![0i64; used.len()];
        for &l in &labels {
            counts[l as usize] += 1;
        }
        (labels, used, counts)
    }

    /// C_u, fill ratio, KL(U‖p).
    pub fn stats(&self) -> ClusterStats {
        let (_, used, counts) = self.remap();
        ClusterStats {
            clusters: self.c,
            used_clusters: used.len(),
            fill_ratio: used.len() as f64 / self.c as f64,
            kl_uniform: kl_uniform(&counts),
        }
    }

    /// Write `clusters.safetensors`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: &Path) -> Result<(), NodeError> {
        let (labels, mapping, counts) = self.remap();
        Writer::new()
            .put("labels", &[labels.len()], &labels)
            .put("raw_labels", &[self.raw.len()], &self.raw)
            .put("mapping", &[mapping.len()], &mapping)
            .put("counts", &[counts.len()], &counts)
            .meta("clusters", self.c.to_string())
            .write(&dir.join("clusters.safetensors"))
    }
}

/// `metrics.json` of `cluster/temi`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TemiMetrics {
    /// C, C_u, fill ratio, KL(U‖p).
    #[serde(flatten)]
    pub stats: ClusterStats,
    /// γ of the loss.
    pub gamma: f64,
    /// The head whose labels were kept (lowest mean loss in the last epoch).
    pub best_head: usize,
    /// Its mean loss in the last epoch (null when no epoch ran).
    pub best_head_loss: Option<f64>,
}

/// `metrics.json` of `cluster/kmeans`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KmeansMetrics {
    /// C, C_u, fill ratio, KL(U‖p).
    #[serde(flatten)]
    pub stats: ClusterStats,
    /// Sum of squared distances to the centres of the best run.
    pub inertia: f64,
    /// Lloyd iterations of the best run.
    pub iterations: usize,
    /// Whether it converged within `max_iter`.
    pub converged: bool,
}

impl ClusterStats {
    /// The common part of an upstream cluster node's `metrics.json`.
    ///
    /// # Errors
    /// A missing file or one without these fields.
    pub fn read(a: &Artifact) -> Result<ClusterStats, NodeError> {
        super::read_json(a.path("metrics.json")?)
    }
}

/// KL(U‖p) = Σ_k (1/K) ln((1/K)/p_k) over K non-empty clusters with counts n_k.
pub fn kl_uniform(counts: &[i64]) -> f64 {
    let used: Vec<f64> = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| c as f64)
        .collect();
    let k = used.len() as f64;
    let n: f64 = used.iter().sum();
    if k == 0.0 {
        return 0.0;
    }
    used.iter()
        .map(|&c| (1.0 / k) * ((1.0 / k) / (c / n)).ln())
        .sum()
}

/// Cluster labels read back from an upstream cluster node.
#[derive(Clone, Debug)]
pub struct ClusterLabels {
    /// Remapped labels in `0..C_u`.
    pub labels: Vec<i64>,
    /// Counts per remapped label.
    pub counts: Vec<i64>,
    /// Requested C (from the metadata; 0 if unknown).
    pub c: usize,
}

impl ClusterLabels {
    /// Read `clusters.safetensors` of an upstream node.
    ///
    /// # Errors
    /// When missing or malformed.
    pub fn read(a: &Artifact) -> Result<ClusterLabels, NodeError> {
        let t = Tensors::open(a.path("clusters.safetensors")?)?;
        let labels = t.i64("labels")?.data;
        let counts = t.i64("counts")?.data;
        let c = t
            .metadata()
            .get("clusters")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Ok(ClusterLabels { labels, counts, c })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remap_follows_sorted_raw_ids() {
        let c = Clusters {
            c: 100,
            raw: vec![99, 3, 3, 0, 99, 99],
        };
        let (labels, mapping, counts) = c.remap();
        assert_eq!(mapping, vec![0, 3, 99]);
        assert_eq!(labels, vec![2, 1, 1, 0, 2, 2]);
        assert_eq!(counts, vec![1, 2, 3]);
        let s = c.stats();
        assert_eq!((s.clusters, s.used_clusters), (100, 3));
    }

    #[test]
    fn kl_of_uniform_is_zero_and_matches_hand_value() {
        assert!(kl_uniform(&[5, 5, 5]).abs() < 1e-12);
        // K = 2, p = (0.25, 0.75): 0.5 ln(0.5/0.25) + 0.5 ln(0.5/0.75)
        let want = 0.5 * (2.0f64).ln() + 0.5 * (0.5f64 / 0.75).ln();
        assert!((kl_uniform(&[1, 3, 0]) - want).abs() < 1e-12);
    }
}

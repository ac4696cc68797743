//! The conditioning labels of an EDM: where they came from, their dimension (C_u after
//! remapping) and counts (q(c)). `edm/train` reads them from a cluster artifact or from an image
//! artifact's ground truth and writes them as `labels.json` (and into the network's metadata).

use std::collections::BTreeMap;

use cedm_engine::{Artifact, NodeError};
use serde::{Deserialize, Serialize};

use super::clusters::ClusterLabels;
use super::safetensors::Tensors;

/// Conditioning labels of the training images: remapped ids in `0..dim`, counts per id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelInfo {
    /// Label dimension (0 = unconditional).
    pub dim: usize,
    /// Images per label (q(c) = counts / N).
    pub counts: Vec<i64>,
    /// Where the labels came from (`cluster/temi`, `data/idx` ground truth, `none`).
    pub source: String,
    /// The requested number of clusters C of a cluster label source (`dim` is C_u ≤ C); absent
    /// for ground truth and unconditional models. Figures label models by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<usize>,
}

/// Read the labels input: a cluster artifact, or an image artifact's ground truth.
///
/// # Errors
/// When the artifact has neither, or its count differs from `n`.
pub fn read_labels(a: &Artifact, n: usize) -> Result<(Vec<i64>, LabelInfo), NodeError> {
    let (labels, source, requested) = if a.files.contains_key("clusters.safetensors") {
        let cl = ClusterLabels::read(a)?;
        (cl.labels, a.record.kind.clone(), (cl.c > 0).then_some(cl.c))
    } else if let Ok(p) = a.path("labels.safetensors") {
        let raw = Tensors::open(p)?.i64("labels")?.data;
        let mut u = raw.clone();
        u.sort_unstable();
        u.dedup();
        let idx: BTreeMap<i64, i64> = u.iter().enumerate().map(|(i, &v)| (v, i as i64)).collect();
        (
            raw.iter().map(|v| idx[v]).collect(),
            format!("{} ground truth", a.record.kind),
            None,
        )
    } else {
        return Err(NodeError::msg(format!(
            "input `labels` ({}) has neither cluster labels nor ground-truth labels",
            a.record.kind
        )));
    };
    if labels.len() != n {
        return Err(NodeError::msg(format!(
            "{} labels for {n} training images",
            labels.len()
        )));
    }
    // Labels are input: 0 ≤ label < 2²⁰ (a conditioning vector of that width at most).
    if let Some(&bad) = labels.iter().find(|&&l| !(0..1 << 20).contains(&l)) {
        return Err(NodeError::msg(format!(
            "input `labels` ({}) holds the label {bad}; labels must be in 0..{}",
            a.record.kind,
            1 << 20
        )));
    }
    let dim = labels
        .iter()
        .copied()
        .max()
        .map(|m| m as usize + 1)
        .unwrap_or(0);
    let mut counts = vec![0i64; dim];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    Ok((
        labels,
        LabelInfo {
            dim,
            counts,
            source,
            clusters: requested,
        },
    ))
}

impl LabelInfo {
    /// No labels: an unconditional model.
    pub fn none() -> LabelInfo {
        LabelInfo {
            dim: 0,
            counts: vec![],
            source: "none".into(),
            clusters: None,
        }
    }
}

/// The ground-truth labels of an image artifact (`labels.safetensors`), checked to be one per
/// clustered item (`cluster/metrics`, `cluster/mapping`).
///
/// # Errors
/// No label file, or a count that differs from `items`.
pub fn truth_labels(
    truth: &cedm_engine::Artifact,
    items: usize,
) -> Result<Vec<i64>, cedm_engine::NodeError> {
    let path = truth.path("labels.safetensors").map_err(|_| {
        cedm_engine::NodeError::msg(
            "input `truth` has no labels (labels.safetensors); give the data node its label file",
        )
    })?;
    let labels = crate::artifacts::safetensors::Tensors::open(path)?
        .i64("labels")?
        .data;
    if labels.len() != items {
        return Err(cedm_engine::NodeError::msg(format!(
            "{} ground-truth labels for {} clustered items",
            labels.len(),
            items
        )));
    }
    Ok(labels)
}

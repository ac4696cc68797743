//! The `metrics.json` files of the metric kinds, typed: written by the kind, read by the CLI's
//! run summary and `cedm report` (nothing reads them by field name).

use cedm_engine::{Artifact, NodeError};
use serde::{Deserialize, Serialize};

/// `metrics.json` of `cluster/metrics`: the clustering against ground truth, ×100.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterScores {
    /// Accuracy under the Hungarian matching (majority mapping for extra clusters), ×100.
    pub acc: f64,
    /// Normalised mutual information (arithmetic mean normaliser), ×100.
    pub nmi: f64,
    /// Adjusted mutual information ("ANMI"), ×100.
    pub anmi: f64,
    /// Adjusted Rand index, ×100.
    pub ari: f64,
    /// Requested clusters C of the scored clustering (0 when unknown).
    pub clusters: usize,
    /// Used clusters C_u.
    pub used_clusters: usize,
}

/// `metrics.json` of `cluster/bound`: the recommended search range for C.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundMetrics {
    /// Lower end (rounded).
    pub lower: f64,
    /// Upper end (rounded).
    pub upper: f64,
    /// Whether the rule found its crossing inside the swept C.
    pub reached: bool,
    /// Mean used clusters of the γ = 1 runs (over every C and seed: seed Table 1's C_u).
    pub gamma1_used_mean: f64,
    /// Their standard deviation (n − 1; Table 1's ±; 0 for a single run).
    #[serde(default)]
    pub gamma1_used_std: f64,
    /// How many γ = 1 runs.
    #[serde(default)]
    pub gamma1_runs: usize,
}

/// Which Fréchet distance a [`DistanceMetrics`] holds (the JSON field names derive from it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distance {
    /// Inception FID.
    Fid,
    /// FD on DINOv2 features.
    Fdd,
    /// `metrics/fd`: a Fréchet distance on any cached features ([`FdMetrics`]).
    Fd,
}

impl Distance {
    /// The field name (`fid`, `fdd`).
    pub fn name(self) -> &'static str {
        match self {
            Distance::Fid => "fid",
            Distance::Fdd => "fdd",
            Distance::Fd => "fd",
        }
    }
}

/// `metrics.json` of `metrics/fid` and `metrics/fdd`: EDM's protocol of `repeats` disjoint
/// runs of `samples_per_run` samples. Stored as `{"fid": mean, "fid_min", "fid_std",
/// "fid_runs": […], "samples_per_run"}` (or `fdd…`).
#[derive(Clone, Debug, PartialEq)]
pub struct DistanceMetrics {
    /// Which distance.
    pub distance: Distance,
    /// Mean over runs.
    pub mean: f64,
    /// Minimum over runs (what EDM reports).
    pub min: f64,
    /// Standard deviation over runs (ddof 1; 0 for one run).
    pub std: f64,
    /// Every run's value.
    pub runs: Vec<f64>,
    /// Samples per run.
    pub samples_per_run: usize,
}

impl DistanceMetrics {
    /// Summary of several runs' values.
    pub fn from_runs(
        distance: Distance,
        values: Vec<f64>,
        samples_per_run: usize,
    ) -> DistanceMetrics {
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let std = if values.len() > 1 {
            (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        DistanceMetrics {
            distance,
            mean,
            min,
            std,
            runs: values,
            samples_per_run,
        }
    }

    /// Read a metric node's `metrics.json` holding `distance`.
    ///
    /// # Errors
    /// A missing file or one without the fields.
    pub fn read(a: &Artifact, distance: Distance) -> Result<DistanceMetrics, NodeError> {
        let path = a.path("metrics.json")?;
        let v: serde_json::Value = super::read_json(path)?;
        Self::from_json(&v, distance).ok_or_else(|| {
            NodeError::msg(format!(
                "{}: not a `{}` metrics file",
                path.display(),
                distance.name()
            ))
        })
    }

    /// From the JSON form (see the type's docs); None when a field is missing.
    pub fn from_json(v: &serde_json::Value, distance: Distance) -> Option<DistanceMetrics> {
        let k = distance.name();
        let f = |name: &str| v.get(name).and_then(serde_json::Value::as_f64);
        Some(DistanceMetrics {
            distance,
            mean: f(k)?,
            min: f(&format!("{k}_min"))?,
            std: f(&format!("{k}_std"))?,
            runs: v
                .get(format!("{k}_runs"))?
                .as_array()?
                .iter()
                .map(serde_json::Value::as_f64)
                .collect::<Option<_>>()?,
            samples_per_run: v.get("samples_per_run")?.as_u64()? as usize,
        })
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        let k = self.distance.name();
        serde_json::json!({
            k: self.mean,
            format!("{k}_min"): self.min,
            format!("{k}_std"): self.std,
            format!("{k}_runs"): self.runs,
            "samples_per_run": self.samples_per_run,
        })
    }
}

impl Serialize for DistanceMetrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

/// `metrics.json` of `metrics/fd`: the [`DistanceMetrics`] fields under `fd…` plus what
/// names the distance, its bootstrap interval, FD∞ and the per-cluster distances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FdMetrics {
    /// `FID`, `FD_DINOv2`, `FD_MobileNetV2`, … (from the encoder).
    pub metric: String,
    /// The kind that computed the features.
    pub encoder: String,
    /// Mean over the runs.
    pub fd: f64,
    /// Minimum over the runs (what EDM reports).
    pub fd_min: f64,
    /// Standard deviation over the runs (ddof 1; 0 for one run).
    pub fd_std: f64,
    /// Every run's value.
    pub fd_runs: Vec<f64>,
    /// Samples per run.
    pub samples_per_run: usize,
    /// Reference items the statistics came from (0 when read from a file without a count).
    pub reference_items: usize,
    /// Bootstrap resamples (0: no interval).
    pub bootstrap: usize,
    /// The interval's level (0.95).
    pub confidence: f64,
    /// Lower end of the bias-corrected percentile bootstrap interval of `fd`.
    pub ci_low: Option<f64>,
    /// Upper end.
    pub ci_high: Option<f64>,
    /// Standard deviation of the bootstrap replicates.
    pub boot_std: Option<f64>,
    /// The bootstrap bias estimate the interval was shifted by (mean of the replicates − `fd`).
    pub boot_bias: Option<f64>,
    /// FD∞ (Chong & Forsyth 2020): the intercept of FD against 1/N.
    pub fd_infinity: Option<f64>,
    /// The (N, FD) points of the fit.
    pub infinity: Vec<(usize, f64)>,
    /// Bootstrap interval of FD∞ (each replicate refits over subsets of a resample), low, high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_infinity_ci: Option<(f64, f64)>,
    /// Mean of the per-cluster distances (clusters with a distance).
    pub fd_per_cluster: Option<f64>,
    /// Bootstrap interval of that mean (every cluster's samples resampled), low, high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd_per_cluster_ci: Option<(f64, f64)>,
    /// Per conditioning label: samples of label k against reference items of label k.
    pub per_cluster: Vec<ClusterFd>,
}

/// One label's distance in [`FdMetrics::per_cluster`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterFd {
    /// The EDM's label id.
    pub label: i64,
    /// Samples conditioned on it.
    pub samples: usize,
    /// Reference items with it.
    pub reference: usize,
    /// The distance (None with fewer than `min_cluster` of either).
    pub fd: Option<f64>,
    /// Its bootstrap interval (the cluster's samples resampled), low, high.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci: Option<(f64, f64)>,
}

/// `metrics.json` of `metrics/probe` and `metrics/cnn_probe`: how often generated samples are
/// recognised as what they were conditioned on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProbeMetrics {
    /// `logistic`, `knn` or `cnn`.
    pub probe: String,
    /// Neighbours (`knn`; 0 for `logistic`).
    pub k: usize,
    /// scikit-learn's `C` (`logistic`; 0 for `knn`).
    #[serde(default)]
    pub c: f64,
    /// Classes of the probe.
    pub classes: usize,
    /// What a sample is checked against: `condition` (its class) or `cluster majority`.
    pub target: String,
    /// Share of samples classified as their target, ×100.
    pub accuracy: f64,
    /// Samples scored (conditional ones; −1 conditions are skipped).
    pub samples: usize,
    /// 100 / classes.
    pub chance: f64,
    /// The probe's accuracy on held-out real images, ×100.
    pub test_accuracy: Option<f64>,
    /// Held-out images.
    pub test_items: usize,
    /// Per target class: samples and accuracy ×100.
    pub per_class: Vec<(i64, usize, f64)>,
}

/// `metrics.json` of `metrics/classifier`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassifierMetrics {
    /// Classes.
    pub classes: usize,
    /// The label value of each class id.
    pub class_values: Vec<i64>,
    /// Training images.
    pub train_items: usize,
    /// Epochs.
    pub epochs: usize,
    /// Mean cross-entropy of each epoch (with flips and dropout, as trained).
    pub losses: Vec<f64>,
    /// Accuracy on the `test` images, ×100.
    pub test_accuracy: Option<f64>,
    /// Test images.
    pub test_items: usize,
    /// Input [C, H, W].
    pub resolution: [usize; 3],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_metrics_round_trip_through_their_json_form() {
        let m = DistanceMetrics::from_runs(Distance::Fdd, vec![3.0, 5.0], 100);
        assert_eq!((m.mean, m.min), (4.0, 3.0));
        assert!((m.std - 2f64.sqrt()).abs() < 1e-12);
        let v = m.to_json();
        assert_eq!(v["fdd_runs"], serde_json::json!([3.0, 5.0]));
        assert_eq!(DistanceMetrics::from_json(&v, Distance::Fdd), Some(m));
        assert_eq!(DistanceMetrics::from_json(&v, Distance::Fid), None);
    }
}

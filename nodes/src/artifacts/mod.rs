//! Every on-disk format cedm's node kinds exchange, each as one typed reader and writer used by
//! the kind that writes it, the kinds that read it, and the CLI (`cedm report`, the run
//! summary). Formats are open: safetensors, JSON, PNG (docs/artifacts.md lists them).
//!
//! | module | file(s) | written by | read by |
//! |---|---|---|---|
//! | [`images`] | `images.safetensors`, `labels.safetensors`, `preview.png`, `info.json` | `data/*`, `edm/sample` | features, metrics, `edm/train` |
//! | [`features`] | `features.safetensors` | `features/*` | `features/knn`, `cluster/*` |
//! | [`knn`] | `knn.safetensors` | `features/knn` | `cluster/temi` |
//! | [`clusters`] | `clusters.safetensors`, `metrics.json` | `cluster/temi`, `cluster/kmeans` | `cluster/metrics`, `cluster/bound`, `edm/train` |
//! | [`labels`] | `labels.json` (conditioning labels) | `edm/train` | `edm/sample` (through the network) |
//! | [`mapping`] | `mapping.json` (clusters → classes) | `cluster/mapping` | `figures/same_noise` |
//! | [`figure`] | labelled PNG figures and histograms | `figures/*` | people |
//! | [`network`] | `network.safetensors` | `edm/train` | `edm/sample` |
//! | [`stats`] | `stats.safetensors`, `.npz` | `metrics/*_ref`, `cedm fid` | `metrics/fid`, `metrics/fdd` |
//! | [`metrics`] | `metrics.json` of the metric kinds | `cluster/metrics`, `cluster/bound`, `metrics/*` | the CLI |
//! | [`grid`], [`plot`] | PNG grids and line plots | data, sampling, training kinds | people |
//! | [`safetensors`] | the container itself | all of the above | — |

pub mod classifier;
pub mod clusters;
pub mod features;
pub mod figure;
pub mod grid;
pub mod images;
pub mod knn;
pub mod labels;
pub mod mapping;
pub mod metrics;
pub mod network;
pub mod plot;
pub mod safetensors;
pub mod stats;

use std::path::Path;

use cedm_engine::NodeError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Write a value as pretty JSON (keys in declaration/insertion order) and a final newline.
///
/// # Errors
/// I/O errors, or a value that cannot be represented in JSON.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, v: &T) -> Result<(), NodeError> {
    let mut s = serde_json::to_string_pretty(v)
        .map_err(|e| NodeError::msg(format!("{}: {e}", path.display())))?;
    s.push('\n');
    std::fs::write(path, s).map_err(NodeError::io("writing", path))
}

/// A value as compact JSON text (for safetensors metadata).
///
/// # Errors
/// A value that cannot be represented in JSON.
pub fn json_string<T: Serialize + ?Sized>(v: &T) -> Result<String, NodeError> {
    serde_json::to_string(v).map_err(|e| NodeError::msg(format!("encoding JSON: {e}")))
}

/// Read a JSON file into a typed value.
///
/// # Errors
/// An unreadable file or one that does not have the expected fields.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, NodeError> {
    let bytes = std::fs::read(path).map_err(NodeError::io("reading", path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| NodeError::msg(format!("{}: unexpected content: {e}", path.display())))
}

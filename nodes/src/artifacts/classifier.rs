//! `network.safetensors` of `metrics/classifier`: the CNN's parameters under PyTorch's names
//! and layouts, its architecture and class values in the metadata.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use cedm_engine::{Artifact, NodeError};

use super::safetensors::{Tensors, Writer};
use crate::models::classifier::{Classifier, ClassifierConfig};

/// Write a trained classifier: `values` by PyTorch name ([`ClassifierConfig::params`]), and
/// the label value of each class id.
///
/// # Errors
/// I/O, or a parameter missing from `values`.
pub fn write_classifier(
    path: &Path,
    cfg: &ClassifierConfig,
    class_values: &[i64],
    values: &BTreeMap<String, Vec<f32>>,
) -> Result<(), NodeError> {
    let mut w = Writer::new();
    for (name, shape) in cfg.params() {
        let v = values
            .get(name)
            .ok_or_else(|| NodeError::msg(format!("the classifier has no {name}")))?;
        w.put(name, &shape, v);
    }
    w.meta("channels", cfg.channels.to_string())
        .meta("height", cfg.height.to_string())
        .meta("width", cfg.width.to_string())
        .meta("filters", cfg.filters.to_string())
        .meta("hidden", cfg.hidden.to_string())
        .meta(
            "class_values",
            serde_json::to_string(class_values).unwrap_or_default(),
        );
    w.write(path)
}

/// The classifier of a `metrics/classifier` node: its architecture, class values and network.
///
/// # Errors
/// A missing or malformed `network.safetensors`.
pub fn read_classifier(
    a: &Artifact,
    device: &Device,
) -> Result<(ClassifierConfig, Vec<i64>, Classifier), NodeError> {
    let path = a.path("network.safetensors")?;
    let t = Tensors::open(path)?;
    let meta = t.metadata();
    let num = |k: &str| -> Result<usize, NodeError> {
        meta.get(k)
            .and_then(|v| v.parse().ok())
            .filter(|&v: &usize| v > 0 && v <= 1 << 16)
            .ok_or_else(|| {
                NodeError::msg(format!(
                    "{}: no valid `{k}` in the metadata (not a metrics/classifier network?)",
                    path.display()
                ))
            })
    };
    let class_values: Vec<i64> = meta
        .get("class_values")
        .and_then(|v| serde_json::from_str(v).ok())
        .filter(|v: &Vec<i64>| v.len() >= 2)
        .ok_or_else(|| NodeError::msg(format!("{}: no class values", path.display())))?;
    let cfg = ClassifierConfig {
        channels: num("channels")?,
        height: num("height")?,
        width: num("width")?,
        filters: num("filters")?,
        hidden: num("hidden")?,
        classes: class_values.len(),
    };
    let mut values = BTreeMap::new();
    for (name, shape) in cfg.params() {
        let v = t.f32(name)?;
        if v.shape != shape {
            return Err(NodeError::msg(format!(
                "{}: {name} is {:?}, expected {shape:?}",
                path.display(),
                v.shape
            )));
        }
        values.insert(name.to_string(), v.data);
    }
    let net = Classifier::from_torch(&cfg, &values, device).map_err(NodeError::msg)?;
    Ok((cfg, class_values, net))
}

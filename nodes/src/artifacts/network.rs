//! A trained network: `network.safetensors` holds the EMA weights under EDM's parameter names
//! (PyTorch layout), with metadata `format` (`cedm-songunet-v1`), `config` (the SongUNet
//! configuration, JSON), `labels` ([`LabelInfo`], JSON) and `kimg`. `training.json` is the
//! [`TrainingLog`].

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::Device;
use cedm_engine::NodeError;

use serde::{Deserialize, Serialize};

use super::json_string;
use super::labels::LabelInfo;
use super::safetensors::{Tensors, Writer};
use crate::models::edm::songunet::{SongUNet, SongUNetConfig};

/// Save a network (EMA weights) with its configuration.
///
/// # Errors
/// I/O errors, a failed device read.
pub fn save_network(
    path: &Path,
    net: &SongUNet,
    cfg: &SongUNetConfig,
    labels: &LabelInfo,
    kimg: f64,
) -> Result<(), NodeError> {
    let named = net.named_params()?;
    let mut w = Writer::new();
    for (k, (s, v)) in &named {
        w.put(k.clone(), s, v);
    }
    w.meta("format", "cedm-songunet-v1")
        .meta("config", json_string(cfg)?)
        .meta("labels", json_string(labels)?)
        .meta("kimg", format!("{kimg}"))
        .write(path)
}

/// Load a network written by [`save_network`].
///
/// # Errors
/// Malformed files.
pub fn load_network(
    path: &Path,
    device: &Device,
) -> Result<(SongUNet, SongUNetConfig, LabelInfo), NodeError> {
    let t = Tensors::open(path)?;
    let meta = t.metadata();
    let cfg: SongUNetConfig =
        serde_json::from_str(meta.get("config").map(String::as_str).unwrap_or(""))
            .map_err(|e| NodeError::msg(format!("{}: no network config: {e}", path.display())))?;
    let labels: LabelInfo =
        serde_json::from_str(meta.get("labels").map(String::as_str).unwrap_or(""))
            .map_err(|e| NodeError::msg(format!("{}: no label info: {e}", path.display())))?;
    let mut named = BTreeMap::new();
    for n in t.names() {
        let v = t.f32(&n)?;
        named.insert(n, (v.shape, v.data));
    }
    let net = cfg
        .init(0, device)
        .load_named(&named, device)
        .map_err(|e| NodeError::msg(format!("{}: {e}", path.display())))?;
    Ok((net, cfg, labels))
}

/// One point of the loss curve.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossPoint {
    /// Training images seen, in thousands.
    pub kimg: f64,
    /// Mean loss per pixel since the previous point.
    pub loss: f64,
}

/// `training.json` of `edm/train`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingLog {
    /// Training length reached, in thousands of images.
    pub kimg: f64,
    /// The loss curve.
    pub loss: Vec<LossPoint>,
    /// The network's configuration.
    pub network: SongUNetConfig,
    /// Trainable parameters.
    pub parameters: usize,
}

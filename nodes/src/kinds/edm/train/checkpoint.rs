//! The training checkpoint in the node's work directory (`checkpoint.safetensors`): the network,
//! its EMA, Adam's moments, and in the metadata the images seen, Adam's step, the loss log, the
//! current log interval's running sum and the loss scale — everything a resumed run needs to
//! take exactly the steps an uninterrupted one would.

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use cedm_engine::NodeError;

use super::step::LossScale;
use crate::artifacts::json_string;
use crate::artifacts::safetensors::{Tensors, Writer};
use crate::device::to_host;
use crate::models::edm::songunet::{SongUNet, SongUNetConfig};
use crate::models::params::Adam;

/// Training progress besides the weights.
pub struct Progress {
    /// Images seen.
    pub nimg: u64,
    /// The loss curve: (kimg, mean loss per pixel over the interval).
    pub log: Vec<(f64, f64)>,
    /// The running loss sum and count of the current log interval (so a resumed run logs the
    /// same curve as an uninterrupted one).
    pub acc: (f64, u64),
    /// Mixed precision's loss scale.
    pub scale: LossScale,
}

/// Write the checkpoint into `dir` (atomically: a reader never sees half a file).
///
/// # Errors
/// I/O errors, a failed device read.
pub fn save(
    dir: &Path,
    net: &SongUNet,
    ema: &SongUNet,
    adam: &Adam,
    ck: &Progress,
) -> Result<(), NodeError> {
    let mut w = Writer::new();
    for (k, (s, v)) in net.named_params()? {
        w.put(format!("net.{k}"), &s, &v);
    }
    for (k, (s, v)) in ema.named_params()? {
        w.put(format!("ema.{k}"), &s, &v);
    }
    for (i, (m, v)) in adam.m.iter().zip(&adam.v).enumerate() {
        let mv = to_host(m.clone())?;
        let vv = to_host(v.clone())?;
        w.put(format!("adam.m.{i:05}"), &[mv.len()], &mv);
        w.put(format!("adam.v.{i:05}"), &[vv.len()], &vv);
    }
    w.meta("nimg", ck.nimg.to_string())
        .meta("adam_step", adam.step.to_string())
        .meta("log", json_string(&ck.log)?)
        .meta("acc", json_string(&ck.acc)?)
        .meta("loss_scale", json_string(&ck.scale)?);
    w.write_atomic(&dir.join("checkpoint.safetensors"))
}

/// Read a checkpoint written by [`save`]: the network on `ad` (autodiff), the EMA on `dev`.
///
/// # Errors
/// A damaged or incompatible checkpoint (naming what is wrong).
pub fn load(
    path: &Path,
    cfg: &SongUNetConfig,
    dev: &Device,
    ad: &Device,
) -> Result<(SongUNet, SongUNet, Adam, Progress), NodeError> {
    let t = Tensors::open(path)?;
    let mut net_p = BTreeMap::new();
    let mut ema_p = BTreeMap::new();
    let mut m = Vec::new();
    let mut v = Vec::new();
    for n in t.names() {
        let x = t.f32(&n)?;
        if let Some(k) = n.strip_prefix("net.") {
            net_p.insert(k.to_string(), (x.shape, x.data));
        } else if let Some(k) = n.strip_prefix("ema.") {
            ema_p.insert(k.to_string(), (x.shape, x.data));
        } else if n.starts_with("adam.m.") {
            m.push(Tensor::<1>::from_data(
                TensorData::new(x.data, x.shape),
                dev,
            ));
        } else if n.starts_with("adam.v.") {
            v.push(Tensor::<1>::from_data(
                TensorData::new(x.data, x.shape),
                dev,
            ));
        }
    }
    let err = |e: String| NodeError::msg(format!("checkpoint {}: {e}", path.display()));
    let net = cfg.init(0, ad).load_named(&net_p, ad).map_err(err)?;
    let ema = cfg.init(0, dev).load_named(&ema_p, dev).map_err(err)?;
    let meta = t.metadata();
    let field = |k: &str| -> Result<&str, NodeError> {
        meta.get(k).map(String::as_str).ok_or_else(|| {
            err(format!(
                "no `{k}` in its metadata (damaged; delete it to start over)"
            ))
        })
    };
    let parse = |k: &str| -> Result<u64, NodeError> {
        field(k)?.parse().map_err(|e| err(format!("`{k}`: {e}")))
    };
    let json = |k: &str| -> Result<serde_json::Value, NodeError> {
        serde_json::from_str(field(k)?).map_err(|e| err(format!("`{k}`: {e}")))
    };
    let n = flat_len(&net);
    if m.len() != n || v.len() != n {
        return Err(err(format!(
            "{} and {} Adam moments for {n} parameters",
            m.len(),
            v.len()
        )));
    }
    let adam = Adam {
        m,
        v,
        step: parse("adam_step")?,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let ck = Progress {
        nimg: parse("nimg")?,
        log: serde_json::from_value(json("log")?).map_err(|e| err(format!("`log`: {e}")))?,
        acc: serde_json::from_value(json("acc")?).map_err(|e| err(format!("`acc`: {e}")))?,
        scale: serde_json::from_value(json("loss_scale")?)
            .map_err(|e| err(format!("`loss_scale`: {e}")))?,
    };
    Ok((net, ema, adam, ck))
}

fn flat_len(net: &SongUNet) -> usize {
    crate::models::params::flat(net).len()
}

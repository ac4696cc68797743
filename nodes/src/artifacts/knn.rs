//! The neighbour artifact of `features/knn` (TEMI's `knn.pt`).
//!
//! `knn.safetensors`: `indices` int64 `[N, k]` (neighbours by decreasing similarity, the item
//! itself excluded), `similarities` float32 `[N, k]`; metadata `k`, `normalize`.

use std::path::Path;

use cedm_engine::{Artifact, NodeError};

use super::safetensors::{Tensors, Writer};

/// k nearest neighbours: `indices[i*k..]`, `sims[i*k..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Knn {
    /// Items.
    pub n: usize,
    /// Neighbours per item.
    pub k: usize,
    /// Neighbour indices, row-major `[n, k]`.
    pub indices: Vec<i64>,
    /// Similarities, row-major `[n, k]`.
    pub sims: Vec<f32>,
}

impl Knn {
    /// Write `knn.safetensors` into `dir`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: &Path, normalize: bool) -> Result<(), NodeError> {
        Writer::new()
            .put("indices", &[self.n, self.k], &self.indices)
            .put("similarities", &[self.n, self.k], &self.sims)
            .meta("k", self.k.to_string())
            .meta("normalize", normalize.to_string())
            .write(&dir.join("knn.safetensors"))
    }

    /// Read `knn.safetensors` of an upstream node.
    ///
    /// # Errors
    /// When missing or malformed.
    pub fn read(a: &Artifact) -> Result<Knn, NodeError> {
        let path = a.path("knn.safetensors")?;
        let t = Tensors::open(path)?;
        let ind = t.i64("indices")?;
        let sims = t.f32("similarities")?;
        let [n, k] = ind.shape[..] else {
            return Err(NodeError::msg(format!(
                "{}: knn indices must be [N, k]",
                path.display()
            )));
        };
        if sims.shape != ind.shape {
            return Err(NodeError::msg(format!(
                "{}: similarities {:?} do not match indices {:?}",
                path.display(),
                sims.shape,
                ind.shape
            )));
        }
        Ok(Knn {
            n,
            k,
            indices: ind.data,
            sims: sims.data,
        })
    }
}

//! The feature artifact and the batching loop shared by the backbone nodes.
//!
//! `features.safetensors`: tensor `features`, float32, `[N, D]`, row i = image i of the input.

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{Artifact, NodeError, RunContext};

use crate::images::ImageSet;
use crate::io::{Tensors, write_f32};

/// Features of N items, row-major `[n, d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Rows.
    pub n: usize,
    /// Dimension.
    pub d: usize,
    /// Values.
    pub data: Vec<f32>,
}

impl Features {
    /// Row i.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.d..(i + 1) * self.d]
    }

    /// Read `features.safetensors` of an upstream node.
    ///
    /// # Errors
    /// When missing or malformed.
    pub fn read(a: &Artifact) -> Result<Features, NodeError> {
        Features::read_file(a.path("features.safetensors")?)
    }

    /// Read a features file.
    ///
    /// # Errors
    /// When malformed.
    pub fn read_file(path: &Path) -> Result<Features, NodeError> {
        let t = Tensors::open(path)?.f32("features")?;
        let [n, d] = t.shape[..] else {
            return Err(NodeError::msg(format!(
                "{}: features must be [N, D], got {:?}",
                path.display(),
                t.shape
            )));
        };
        Ok(Features { n, d, data: t.data })
    }

    /// Write `features.safetensors`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, path: &Path, meta: &BTreeMap<String, String>) -> Result<(), NodeError> {
        write_f32(path, "features", &[self.n, self.d], &self.data, meta)
    }

    /// L2-normalised copy (rows of zero norm stay zero).
    pub fn l2_normalized(&self) -> Features {
        let mut data = self.data.clone();
        for row in data.chunks_exact_mut(self.d) {
            let norm = row
                .iter()
                .map(|v| f64::from(*v) * f64::from(*v))
                .sum::<f64>()
                .sqrt();
            if norm > 0.0 {
                let inv = (1.0 / norm) as f32;
                row.iter_mut().for_each(|v| *v *= inv);
            }
        }
        Features {
            n: self.n,
            d: self.d,
            data,
        }
    }
}

/// Run `embed` over the images in batches; returns `[n, d]`.
///
/// `embed(pixels_u8_nchw, batch_len) -> Vec<f32>` of `batch_len × d`; `on_batch(done)` is called
/// after every batch and returns false to stop.
///
/// # Errors
/// What `embed` returns, or [`NodeError::Interrupted`] when stopped.
pub fn extract_batches(
    set: &ImageSet,
    batch: usize,
    d: usize,
    mut embed: impl FnMut(&[u8], usize) -> Result<Vec<f32>, NodeError>,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Features, NodeError> {
    let mut data = Vec::with_capacity(set.n * d);
    let il = set.image_len();
    let mut done = 0;
    while done < set.n {
        let b = batch.max(1).min(set.n - done);
        let out = embed(&set.pixels[done * il..(done + b) * il], b)?;
        if out.len() != b * d {
            return Err(NodeError::msg(format!(
                "backbone returned {} values for {b} images of dimension {d}",
                out.len()
            )));
        }
        data.extend_from_slice(&out);
        done += b;
        if !on_batch(done) {
            return Err(NodeError::Interrupted);
        }
    }
    Ok(Features { n: set.n, d, data })
}

/// [`extract_batches`] inside a node: progress with the rate, stop on request, throughput in
/// the record's stats and the log.
///
/// # Errors
/// What `embed` returns, or [`NodeError::Interrupted`] when asked to stop.
pub fn extract(
    ctx: &mut RunContext<'_>,
    set: &ImageSet,
    batch: usize,
    d: usize,
    embed: impl FnMut(&[u8], usize) -> Result<Vec<f32>, NodeError>,
) -> Result<Features, NodeError> {
    let t0 = std::time::Instant::now();
    let n = set.n;
    let feats = extract_batches(set, batch, d, embed, |done| {
        let rate = done as f64 / t0.elapsed().as_secs_f64().max(1e-9);
        ctx.progress(
            done as u64,
            Some(n as u64),
            "img",
            Some(format!("{rate:.0} img/s")),
        );
        !ctx.should_stop()
    })?;
    let secs = t0.elapsed().as_secs_f64();
    ctx.stat("img_per_s", n as f64 / secs.max(1e-9));
    ctx.log(format!(
        "{n} images in {secs:.1} s ({:.1} img/s)",
        n as f64 / secs.max(1e-9)
    ));
    Ok(feats)
}

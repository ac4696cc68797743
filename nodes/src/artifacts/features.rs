//! The feature artifact.
//!
//! `features.safetensors`: tensor `features`, float32, `[N, D]`, row i = image i of the input.

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{Artifact, NodeError};

use super::safetensors::{Tensors, write_f32};

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
    /// The features of two compared sets (a metric's `samples` and `reference` inputs), checked
    /// to come from one encoder (the same dimension).
    ///
    /// # Errors
    /// A missing or malformed input, or different dimensions.
    pub fn read_pair(
        samples: &Artifact,
        reference: &Artifact,
    ) -> Result<(Features, Features), NodeError> {
        let (a, b) = (Features::read(samples)?, Features::read(reference)?);
        if a.d != b.d {
            return Err(NodeError::msg(format!(
                "samples' features are {}-d, the reference's {}-d: embed both with the same encoder",
                a.d, b.d
            )));
        }
        Ok((a, b))
    }

    /// The name of a Fréchet distance on this artifact's encoder: `FID` on Inception pool3,
    /// `FD_DINOv2` on a DINOv2 ViT, `FD_MobileNetV2`, else `FD_<kind>` — from the record of
    /// the `features/*` node that wrote it.
    pub fn distance_name(a: &Artifact) -> String {
        let model = a.record.params.get("model").and_then(|m| m.as_str());
        distance_name_of(&a.record.kind, model)
    }

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

    /// Read an `.npy` of features (float32 or float64, `[N, D]`).
    ///
    /// # Errors
    /// Unreadable or malformed files, or a shape other than `[N, D]`.
    pub fn read_npy(path: &Path) -> Result<Features, NodeError> {
        let bytes = std::fs::read(path).map_err(NodeError::io("reading", path))?;
        let what = path.display().to_string();
        let (shape, data) = super::stats::parse_npy(&bytes, &what).map_err(NodeError::msg)?;
        let [n, d] = shape[..] else {
            return Err(NodeError::msg(format!(
                "{what}: features must be [N, D], got {shape:?}"
            )));
        };
        Ok(Features {
            n,
            d,
            data: data.into_iter().map(|v| v as f32).collect(),
        })
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

/// The Fréchet distance's name for features of `kind` (and its `model` param): `FID`,
/// `FD_MobileNetV2`, `FD_CLIP`, `FD_DINOv2`, `FD_<model>`, `FD_<kind>`.
pub fn distance_name_of(kind: &str, model: Option<&str>) -> String {
    match (kind, model) {
        ("features/inception", _) => "FID".into(),
        ("features/mobilenet_v2", _) => "FD_MobileNetV2".into(),
        ("features/clip", _) => "FD_CLIP".into(),
        ("features/vit", Some(m)) if m.starts_with("dinov2") => "FD_DINOv2".into(),
        ("features/vit", Some(m)) => format!("FD_{m}"),
        (k, _) => format!("FD_{}", k.trim_start_matches("features/")),
    }
}

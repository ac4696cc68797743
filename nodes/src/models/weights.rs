//! Checkpoint tensors by name, from PyTorch `.pth` (through burn-store's reader) or safetensors,
//! converted to f32, with errors that name the key and the file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};

/// Problems loading a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// The file cannot be read as a checkpoint.
    #[error("{path}: {message}")]
    Read {
        /// File.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A key the model needs is absent.
    #[error(
        "{path}: no tensor `{key}` (is this the right checkpoint? it has {count} tensors, e.g. {example})"
    )]
    Missing {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// Number of tensors present.
        count: usize,
        /// A few present keys.
        example: String,
    },
    /// A tensor has another shape than the model expects.
    #[error("{path}: tensor `{key}` has shape {have:?}, the model expects {want:?}")]
    Shape {
        /// File.
        path: PathBuf,
        /// Key.
        key: String,
        /// In the file.
        have: Vec<usize>,
        /// Expected.
        want: Vec<usize>,
    },
}

impl From<WeightsError> for cedm_engine::NodeError {
    fn from(e: WeightsError) -> Self {
        cedm_engine::NodeError::msg(e.to_string())
    }
}

/// A loaded checkpoint: name → (shape, f32 values).
pub struct Weights {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    metadata: HashMap<String, String>,
}

fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let v = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // Subnormal: normalise.
            let mut e = 127 - 15 + 1;
            let mut f = f;
            while f & 0x400 == 0 {
                f <<= 1;
                e -= 1;
            }
            sign | (e << 23) | ((f & 0x3ff) << 13)
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(v)
}

fn to_f32(bytes: &[u8], dtype: &str) -> Option<Vec<f32>> {
    Some(match dtype {
        "F32" => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        "F64" => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        "F16" => bytes
            .chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect(),
        "BF16" => bytes
            .chunks_exact(2)
            .map(|b| f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16))
            .collect(),
        "I64" => bytes
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32)
            .collect(),
        _ => return None,
    })
}

impl Weights {
    /// Load a `.pth`/`.pt` (PyTorch pickle, zip or legacy) or `.safetensors` checkpoint.
    /// Integer tensors (e.g. BatchNorm's `num_batches_tracked`) are skipped.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn load(path: &Path) -> Result<Weights, WeightsError> {
        Self::load_as(path, path.extension().is_some_and(|e| e == "safetensors"))
    }

    /// Load a checkpoint whose format is known rather than told by its name (a cache object
    /// has none): safetensors when `is_st`, else a PyTorch file.
    ///
    /// # Errors
    /// When the file cannot be read.
    pub fn load_as(path: &Path, is_st: bool) -> Result<Weights, WeightsError> {
        let err = |m: String| WeightsError::Read {
            path: path.to_path_buf(),
            message: m,
        };
        let mut tensors = HashMap::new();
        let mut metadata = HashMap::new();
        if is_st {
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let st = safetensors::SafeTensors::deserialize(&bytes)
                .map_err(|e| err(format!("not a safetensors file: {e}")))?;
            if let Ok((_, m)) = safetensors::SafeTensors::read_metadata(&bytes) {
                metadata = m.metadata().clone().unwrap_or_default();
            }
            for (name, view) in st.tensors() {
                let dtype = format!("{:?}", view.dtype());
                if let Some(v) = to_f32(view.data(), &dtype) {
                    tensors.insert(name, (view.shape().to_vec(), v));
                }
            }
        } else {
            let reader = burn::store::pytorch::PytorchReader::new(path)
                .map_err(|e| err(format!("not a PyTorch checkpoint: {e}")))?;
            for (name, t) in reader.tensors() {
                let dtype = format!("{:?}", t.dtype()).to_uppercase();
                let bytes = t.read().map_err(|e| err(format!("tensor `{name}`: {e}")))?;
                let key = match dtype.as_str() {
                    "F32" | "FLOAT32" => "F32",
                    "F64" | "FLOAT64" => "F64",
                    "F16" | "FLOAT16" => "F16",
                    "BF16" | "BFLOAT16" => "BF16",
                    _ => continue,
                };
                if let Some(v) = to_f32(&bytes, key) {
                    tensors.insert(name.clone(), (t.shape().to_vec(), v));
                }
            }
        }
        if tensors.is_empty() {
            return Err(err("holds no float tensors".into()));
        }
        Ok(Weights {
            path: path.to_path_buf(),
            tensors,
            metadata,
        })
    }

    /// Build from a map (tests).
    pub fn from_map(path: &str, tensors: HashMap<String, (Vec<usize>, Vec<f32>)>) -> Weights {
        Weights {
            path: PathBuf::from(path),
            tensors,
            metadata: HashMap::new(),
        }
    }

    /// The safetensors `__metadata__` (empty for other formats).
    pub fn metadata(&self) -> &HashMap<String, String> {
        &self.metadata
    }

    /// Keys present.
    pub fn keys(&self) -> Vec<&str> {
        let mut k: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// Whether a key exists.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// Remove every key starting with `prefix` and put it back without it (e.g. `module.`,
    /// `teacher.backbone.` in DINO training checkpoints).
    pub fn strip_prefix(&mut self, prefix: &str) {
        let keys: Vec<String> = self
            .tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        for k in keys {
            if let Some(v) = self.tensors.remove(&k) {
                self.tensors.insert(k[prefix.len()..].to_string(), v);
            }
        }
    }

    /// Unwrap a training checkpoint's wrappers: `state_dict.` (iBOT's `checkpoint_teacher.pth`,
    /// MoCo-v3's `.pth.tar`, some OpenCLIP files), then `module.` (DDP).
    pub fn unwrap_checkpoint(&mut self) {
        for p in ["state_dict.", "module."] {
            self.strip_prefix(p);
        }
    }

    /// Rename keys (old, new).
    pub fn rename(&mut self, pairs: &[(String, String)]) {
        for (old, new) in pairs {
            if let Some(v) = self.tensors.remove(old) {
                self.tensors.insert(new.clone(), v);
            }
        }
    }

    /// Values and shape of a key.
    ///
    /// # Errors
    /// When the key is missing.
    pub fn get(&self, key: &str) -> Result<(&[usize], &[f32]), WeightsError> {
        self.tensors
            .get(key)
            .map(|(s, v)| (s.as_slice(), v.as_slice()))
            .ok_or_else(|| {
                let keys = self.keys();
                WeightsError::Missing {
                    path: self.path.clone(),
                    key: key.to_string(),
                    count: keys.len(),
                    example: keys.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                }
            })
    }

    /// Values of a key, checking its shape.
    ///
    /// # Errors
    /// When missing or of another shape.
    pub fn values(&self, key: &str, shape: &[usize]) -> Result<Vec<f32>, WeightsError> {
        let (s, v) = self.get(key)?;
        if s != shape {
            return Err(WeightsError::Shape {
                path: self.path.clone(),
                key: key.into(),
                have: s.to_vec(),
                want: shape.to_vec(),
            });
        }
        Ok(v.to_vec())
    }

    /// A burn tensor of a key, checking its shape.
    ///
    /// # Errors
    /// When missing or of another shape.
    pub fn tensor<const D: usize>(
        &self,
        key: &str,
        shape: [usize; D],
        device: &Device,
    ) -> Result<Tensor<D>, WeightsError> {
        let v = self.values(key, &shape)?;
        Ok(Tensor::from_data(TensorData::new(v, shape), device))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// A burn tensor from values.
pub fn tensor<const D: usize>(v: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(v, shape), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_conversion() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert!(f16_to_f32(0x7c00).is_infinite());
    }
}

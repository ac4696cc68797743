//! safetensors files, written deterministically (same tensors ⇒ same bytes) by one small
//! [`Writer`], read with the `safetensors` crate's validation by [`Tensors`].
//!
//! Every artifact can be opened without cedm: `safetensors.numpy.load_file(path)` or
//! `safetensors.torch.load_file(path)`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use cedm_engine::NodeError;

/// Element types we store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// uint8 (images).
    U8,
    /// int32.
    I32,
    /// int64 (labels, indices).
    I64,
    /// float32 (features, weights).
    F32,
    /// float64 (statistics).
    F64,
}

impl DType {
    fn name(self) -> &'static str {
        match self {
            DType::U8 => "U8",
            DType::I32 => "I32",
            DType::I64 => "I64",
            DType::F32 => "F32",
            DType::F64 => "F64",
        }
    }
    fn size(self) -> usize {
        match self {
            DType::U8 => 1,
            DType::I32 | DType::F32 => 4,
            DType::I64 | DType::F64 => 8,
        }
    }
}

/// A tensor to write: name, type, shape, little-endian bytes.
pub struct TensorOut<'a> {
    /// Name in the file.
    pub name: &'a str,
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Raw little-endian data.
    pub data: &'a [u8],
}

/// Little-endian bytes of a slice of plain numbers.
pub fn le_bytes<T: bytemuck_like::Pod>(v: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(std::mem::size_of_val(v));
    for x in v {
        x.write_le(&mut out);
    }
    out
}

/// Minimal "plain old data" support without another dependency.
pub mod bytemuck_like {
    /// A number with a little-endian encoding.
    pub trait Pod: Copy {
        /// Append the little-endian bytes.
        fn write_le(&self, out: &mut Vec<u8>);
        /// Read from little-endian bytes (exactly `size_of::<Self>()` of them).
        fn read_le(b: &[u8]) -> Self;
    }
    macro_rules! pod {
        ($($t:ty),*) => {$(
            impl Pod for $t {
                fn write_le(&self, out: &mut Vec<u8>) {
                    out.extend_from_slice(&self.to_le_bytes());
                }
                fn read_le(b: &[u8]) -> Self {
                    let mut a = [0u8; std::mem::size_of::<$t>()];
                    a.copy_from_slice(b);
                    <$t>::from_le_bytes(a)
                }
            }
        )*};
    }
    pod!(u8, i32, i64, u32, f32, f64);
}

/// Write tensors to a safetensors file. The header is canonical (tensors and metadata sorted by
/// name, no padding variation), so equal tensors give equal bytes.
///
/// # Errors
/// I/O errors, or a tensor whose data length does not match its shape.
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorOut<'_>],
    metadata: &BTreeMap<String, String>,
) -> Result<(), NodeError> {
    let mut sorted: Vec<&TensorOut<'_>> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(b.name));
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into()))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(m));
    }
    let mut offset = 0usize;
    for t in &sorted {
        let n: usize = t.shape.iter().product::<usize>() * t.dtype.size();
        if n != t.data.len() {
            return Err(NodeError::msg(format!(
                "tensor `{}`: {} bytes for shape {:?} of {}",
                t.name,
                t.data.len(),
                t.shape,
                t.dtype.name()
            )));
        }
        header.insert(
            t.name.to_string(),
            serde_json::json!({"dtype": t.dtype.name(), "shape": t.shape, "data_offsets": [offset, offset + n]}),
        );
        offset += n;
    }
    // serde_json's map keeps insertion order (preserve_order): `__metadata__` first, then names
    // sorted. Pad the header with spaces to a multiple of 8 as the format recommends.
    let mut hbytes = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| NodeError::msg(e.to_string()))?;
    while hbytes.len() % 8 != 0 {
        hbytes.push(b' ');
    }
    let f = File::create(path).map_err(NodeError::io("creating", path))?;
    let mut w = BufWriter::with_capacity(1 << 20, f);
    let io = NodeError::io("writing", path);
    let r: std::io::Result<()> = (|| {
        w.write_all(&(hbytes.len() as u64).to_le_bytes())?;
        w.write_all(&hbytes)?;
        for t in &sorted {
            w.write_all(t.data)?;
        }
        w.flush()
    })();
    r.map_err(io)
}

/// A safetensors file loaded in memory.
pub struct Tensors {
    path: PathBuf,
    bytes: Vec<u8>,
}

/// A tensor read from a file.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorIn<T> {
    /// Shape.
    pub shape: Vec<usize>,
    /// Elements, row-major.
    pub data: Vec<T>,
}

impl Tensors {
    /// Read a safetensors file.
    ///
    /// # Errors
    /// When it cannot be read or is not a valid safetensors file.
    pub fn open(path: &Path) -> Result<Tensors, NodeError> {
        let bytes = std::fs::read(path).map_err(NodeError::io("reading", path))?;
        safetensors::SafeTensors::deserialize(&bytes).map_err(|e| {
            NodeError::msg(format!(
                "{}: not a valid safetensors file: {e}",
                path.display()
            ))
        })?;
        Ok(Tensors {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn st(&self) -> safetensors::SafeTensors<'_> {
        // Validated in `open`.
        safetensors::SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|_| unreachable!("validated on open"))
    }

    /// Tensor names.
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.st().names().into_iter().map(str::to_string).collect();
        v.sort();
        v
    }

    /// The `__metadata__` map.
    pub fn metadata(&self) -> BTreeMap<String, String> {
        safetensors::SafeTensors::read_metadata(&self.bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .map(|m| m.into_iter().collect())
            .unwrap_or_default()
    }

    /// Shape and raw bytes of a tensor with the expected type.
    ///
    /// # Errors
    /// When it is missing or of another type.
    pub fn raw(&self, name: &str, dtype: DType) -> Result<(Vec<usize>, &[u8]), NodeError> {
        let st = self.st();
        let t = st.tensor(name).map_err(|_| {
            NodeError::msg(format!(
                "{}: no tensor `{name}` (has: {})",
                self.path.display(),
                self.names().join(", ")
            ))
        })?;
        let want = dtype.name();
        let have = format!("{:?}", t.dtype());
        if have != want {
            return Err(NodeError::msg(format!(
                "{}: tensor `{name}` is {have}, expected {want}",
                self.path.display()
            )));
        }
        let shape = t.shape().to_vec();
        // Re-slice from our own buffer to tie the lifetime to self.
        let start = t.data().as_ptr() as usize - self.bytes.as_ptr() as usize;
        let len = t.data().len();
        Ok((shape, &self.bytes[start..start + len]))
    }

    /// A tensor as a typed vector.
    ///
    /// # Errors
    /// When it is missing or of another type.
    pub fn get<T: bytemuck_like::Pod>(
        &self,
        name: &str,
        dtype: DType,
    ) -> Result<TensorIn<T>, NodeError> {
        let (shape, raw) = self.raw(name, dtype)?;
        let sz = dtype.size();
        let data = raw.chunks_exact(sz).map(T::read_le).collect();
        Ok(TensorIn { shape, data })
    }

    /// f32 tensor.
    ///
    /// # Errors
    /// When it is missing or of another type.
    pub fn f32(&self, name: &str) -> Result<TensorIn<f32>, NodeError> {
        self.get(name, DType::F32)
    }

    /// i64 tensor.
    ///
    /// # Errors
    /// When it is missing or of another type.
    pub fn i64(&self, name: &str) -> Result<TensorIn<i64>, NodeError> {
        self.get(name, DType::I64)
    }

    /// u8 tensor (copied).
    ///
    /// # Errors
    /// When it is missing or of another type.
    pub fn u8(&self, name: &str) -> Result<TensorIn<u8>, NodeError> {
        let (shape, raw) = self.raw(name, DType::U8)?;
        Ok(TensorIn {
            shape,
            data: raw.to_vec(),
        })
    }
}

/// A safetensors file being assembled: tensors and metadata, written canonically by
/// [`Writer::write`]. Every artifact and checkpoint goes through it.
#[derive(Default)]
pub struct Writer<'a> {
    tensors: Vec<(String, DType, Vec<usize>, std::borrow::Cow<'a, [u8]>)>,
    meta: BTreeMap<String, String>,
}

impl<'a> Writer<'a> {
    /// An empty file.
    pub fn new() -> Writer<'a> {
        Writer::default()
    }

    /// Add a tensor of plain numbers (stored little-endian).
    pub fn put<T: bytemuck_like::Pod + DTyped>(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        data: &[T],
    ) -> &mut Writer<'a> {
        self.tensors.push((
            name.into(),
            T::DTYPE,
            shape.to_vec(),
            std::borrow::Cow::Owned(le_bytes(data)),
        ));
        self
    }

    /// Add a uint8 tensor without copying it.
    pub fn put_u8(
        &mut self,
        name: impl Into<String>,
        shape: &[usize],
        data: &'a [u8],
    ) -> &mut Writer<'a> {
        self.tensors.push((
            name.into(),
            DType::U8,
            shape.to_vec(),
            std::borrow::Cow::Borrowed(data),
        ));
        self
    }

    /// Add a metadata entry.
    pub fn meta(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Writer<'a> {
        self.meta.insert(key.into(), value.into());
        self
    }

    /// Write the file (see [`write_safetensors`]).
    ///
    /// # Errors
    /// I/O errors, or a tensor whose data does not match its shape.
    pub fn write(&self, path: &Path) -> Result<(), NodeError> {
        let outs: Vec<TensorOut<'_>> = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, data)| TensorOut {
                name,
                dtype: *dtype,
                shape: shape.clone(),
                data,
            })
            .collect();
        write_safetensors(path, &outs, &self.meta)
    }

    /// Write to `<path>.tmp` and rename into place, so a reader (a resumed run) never sees a
    /// partly written file.
    ///
    /// # Errors
    /// As [`Writer::write`], or the rename failing.
    pub fn write_atomic(&self, path: &Path) -> Result<(), NodeError> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        self.write(&tmp)?;
        std::fs::rename(&tmp, path).map_err(NodeError::io("renaming", path))
    }
}

/// The safetensors type of a number type.
pub trait DTyped {
    /// Its dtype.
    const DTYPE: DType;
}

impl DTyped for f32 {
    const DTYPE: DType = DType::F32;
}
impl DTyped for f64 {
    const DTYPE: DType = DType::F64;
}
impl DTyped for i64 {
    const DTYPE: DType = DType::I64;
}
impl DTyped for i32 {
    const DTYPE: DType = DType::I32;
}

/// Write one f32 matrix/tensor.
///
/// # Errors
/// I/O errors.
pub fn write_f32(
    path: &Path,
    name: &str,
    shape: &[usize],
    data: &[f32],
    meta: &BTreeMap<String, String>,
) -> Result<(), NodeError> {
    let mut w = Writer::new();
    w.put(name, shape, data);
    for (k, v) in meta {
        w.meta(k.clone(), v.clone());
    }
    w.write(path)
}

/// Write one i64 vector/tensor.
///
/// # Errors
/// I/O errors.
pub fn write_i64(path: &Path, name: &str, shape: &[usize], data: &[i64]) -> Result<(), NodeError> {
    Writer::new().put(name, shape, data).write(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_deterministic_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.safetensors");
        let b = dir.path().join("b.safetensors");
        let x: Vec<f32> = (0..12).map(|i| i as f32 * 0.5).collect();
        let l: Vec<i64> = vec![3, -1, 7];
        let xb = le_bytes(&x);
        let lb = le_bytes(&l);
        let meta: BTreeMap<String, String> = [
            ("z".to_string(), "1".to_string()),
            ("a".to_string(), "2".to_string()),
        ]
        .into();
        let t1 = [
            TensorOut {
                name: "x",
                dtype: DType::F32,
                shape: vec![3, 4],
                data: &xb,
            },
            TensorOut {
                name: "labels",
                dtype: DType::I64,
                shape: vec![3],
                data: &lb,
            },
        ];
        let t2 = [
            TensorOut {
                name: "labels",
                dtype: DType::I64,
                shape: vec![3],
                data: &lb,
            },
            TensorOut {
                name: "x",
                dtype: DType::F32,
                shape: vec![3, 4],
                data: &xb,
            },
        ];
        write_safetensors(&a, &t1, &meta).unwrap();
        write_safetensors(&b, &t2, &meta).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let t = Tensors::open(&a).unwrap();
        assert_eq!(
            t.f32("x").unwrap(),
            TensorIn {
                shape: vec![3, 4],
                data: x
            }
        );
        assert_eq!(t.i64("labels").unwrap().data, l);
        assert_eq!(t.metadata().get("a").map(String::as_str), Some("2"));
        assert!(t.f32("labels").is_err());
        assert!(
            t.f32("nope")
                .unwrap_err()
                .to_string()
                .contains("has: labels, x")
        );
    }

    #[test]
    fn shape_mismatch_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_safetensors(
            &dir.path().join("x"),
            &[TensorOut {
                name: "x",
                dtype: DType::F32,
                shape: vec![2],
                data: &[0u8; 4],
            }],
            &BTreeMap::new(),
        );
        assert!(e.is_err());
    }
}

//! Feature statistics for Fréchet distances (FID on Inception pool3, FDD on DINOv2 CLS):
//! float64 μ = mean, Σ = Σᵢ (fᵢ−μ)(fᵢ−μ)ᵀ / (N−1) (unbiased, as EDM's `fid.py` and dgm-eval).
//!
//! Files: a stats artifact is `stats.safetensors` (`mu` f64 [d], `sigma` f64 [d, d], metadata
//! `n`, `metric`); the `cedm fid` command also reads and writes `.npz` (`mu`, `sigma`), the
//! format of pytorch-fid's `--save-stats` and of EDM's reference files.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use cedm_engine::NodeError;
use rayon::prelude::*;

use cedm_engine::RunContext;
use cedm_kernels::cpu::gemm;

use super::safetensors::{DType, Tensors, Writer, le_bytes};

/// Mean and covariance of a feature set.
#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    /// Number of feature vectors (0 when unknown, e.g. read from an `.npz`).
    pub n: usize,
    /// Dimension.
    pub d: usize,
    /// Mean `[d]`.
    pub mu: Vec<f64>,
    /// Unbiased covariance `[d, d]`.
    pub sigma: Vec<f64>,
}

impl Stats {
    /// Statistics of `n` rows of dimension `d` (f32 features, f64 arithmetic).
    ///
    /// # Errors
    /// Fewer than 2 rows.
    pub fn from_features(data: &[f32], n: usize, d: usize) -> Result<Stats, NodeError> {
        if n < 2 {
            return Err(NodeError::msg(format!(
                "statistics need at least 2 images, got {n}"
            )));
        }
        let mut mu = vec![0f64; d];
        for row in data.chunks_exact(d).take(n) {
            mu.iter_mut()
                .zip(row)
                .for_each(|(m, &x)| *m += f64::from(x));
        }
        mu.iter_mut().for_each(|m| *m /= n as f64);
        let mut sigma = vec![0f64; d * d];
        let chunk = 2048;
        let mut centred = vec![0f64; chunk * d];
        for start in (0..n).step_by(chunk) {
            let rows = chunk.min(n - start);
            centred[..rows * d]
                .par_chunks_mut(d)
                .enumerate()
                .for_each(|(i, c)| {
                    let src = &data[(start + i) * d..(start + i + 1) * d];
                    c.iter_mut()
                        .zip(src)
                        .zip(&mu)
                        .for_each(|((c, &x), m)| *c = f64::from(x) - m);
                });
            gemm(
                d,
                rows,
                d,
                &centred[..rows * d],
                true,
                &centred[..rows * d],
                false,
                &mut sigma,
                true,
            );
        }
        let inv = 1.0 / (n as f64 - 1.0);
        sigma.iter_mut().for_each(|s| *s *= inv);
        // Exact symmetry (the GEMM's two triangles can differ in the last bit).
        for i in 0..d {
            for j in 0..i {
                let s = 0.5 * (sigma[i * d + j] + sigma[j * d + i]);
                sigma[i * d + j] = s;
                sigma[j * d + i] = s;
            }
        }
        Ok(Stats { n, d, mu, sigma })
    }

    /// Write `stats.safetensors`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, path: &Path, metric: &str) -> Result<(), NodeError> {
        Writer::new()
            .put("mu", &[self.d], &self.mu)
            .put("sigma", &[self.d, self.d], &self.sigma)
            .meta("n", self.n.to_string())
            .meta("metric", metric)
            .write(path)
    }

    /// Read a stats file: `stats.safetensors` or an `.npz` with `mu` and `sigma`.
    ///
    /// # Errors
    /// Unreadable or malformed files.
    pub fn read(path: &Path) -> Result<Stats, NodeError> {
        let name = path.to_string_lossy();
        let (mu, sigma, n) = if name.ends_with(".npz") {
            let mut arrays = read_npz(path)?;
            let get = |arrays: &mut BTreeMap<String, (Vec<usize>, Vec<f64>)>, k: &str| {
                arrays.remove(k).ok_or_else(|| {
                    NodeError::msg(format!(
                        "{}: no array `{k}` (a stats .npz holds `mu` and `sigma`)",
                        path.display()
                    ))
                })
            };
            (get(&mut arrays, "mu")?, get(&mut arrays, "sigma")?, 0)
        } else {
            let t = Tensors::open(path)?;
            let mu = t.get::<f64>("mu", DType::F64)?;
            let sigma = t.get::<f64>("sigma", DType::F64)?;
            let n = t
                .metadata()
                .get("n")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            ((mu.shape, mu.data), (sigma.shape, sigma.data), n)
        };
        let d = mu.0.first().copied().unwrap_or(0);
        if mu.0.len() != 1 || d == 0 || sigma.0 != [d, d] {
            return Err(NodeError::msg(format!(
                "{}: `mu` must be [d] and `sigma` [d, d], got {:?} and {:?}",
                path.display(),
                mu.0,
                sigma.0
            )));
        }
        Ok(Stats {
            n,
            d,
            mu: mu.1,
            sigma: sigma.1,
        })
    }

    /// Write an `.npz` (uncompressed, `mu.npy` and `sigma.npy`) like pytorch-fid's
    /// `--save-stats`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_npz(&self, path: &Path) -> Result<(), NodeError> {
        let f = std::fs::File::create(path).map_err(NodeError::io("creating", path))?;
        let mut z = zip::ZipWriter::new(f);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .large_file(true);
        let zerr = |e: zip::result::ZipError| NodeError::msg(format!("{}: {e}", path.display()));
        for (name, shape, data) in [
            ("mu.npy", vec![self.d], &self.mu),
            ("sigma.npy", vec![self.d, self.d], &self.sigma),
        ] {
            z.start_file(name, opts).map_err(zerr)?;
            z.write_all(&npy_bytes(&shape, data))
                .map_err(NodeError::io("writing", path))?;
        }
        z.finish().map_err(zerr)?;
        Ok(())
    }
}

/// An `.npy` (version 1.0, little-endian f64, C order).
fn npy_bytes(shape: &[usize], data: &[f64]) -> Vec<u8> {
    let dims = match shape {
        [a] => format!("({a},)"),
        s => format!(
            "({})",
            s.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f8', 'fortran_order': False, 'shape': {dims}, }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&le_bytes(data));
    out
}

/// Parse an `.npy` of f32 or f64 (little-endian, C order) into f64.
pub(crate) fn parse_npy(bytes: &[u8], what: &str) -> Result<(Vec<usize>, Vec<f64>), String> {
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(format!("{what}: not an .npy array"));
    }
    let (hlen, start) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("{what}: unsupported .npy version {v}")),
    };
    let header = std::str::from_utf8(
        bytes
            .get(start..start + hlen)
            .ok_or(format!("{what}: truncated header"))?,
    )
    .map_err(|_| format!("{what}: header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let i = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[i..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or(format!("{what}: no descr"))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(format!("{what}: Fortran-ordered arrays are not supported"));
    }
    let shape_s = field("shape")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split(')').next())
        .ok_or(format!("{what}: no shape"))?;
    let shape: Vec<usize> = shape_s
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{what}: bad shape ({shape_s})"))?;
    // Checked: the header's shape is input (its product, times the item size, may overflow).
    let count = cedm_engine::limits::elements(&shape, what)?;
    let body = bytes.get(start + hlen..).unwrap_or_default();
    let data: Vec<f64> = match descr {
        "<f8" if body.len() / 8 >= count => body[..count * 8]
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
            .collect(),
        "<f4" if body.len() / 4 >= count => body[..count * 4]
            .chunks_exact(4)
            .map(|b| f64::from(f32::from_le_bytes(b.try_into().unwrap_or([0; 4]))))
            .collect(),
        "<f8" | "<f4" => return Err(format!("{what}: truncated data")),
        other => return Err(format!("{what}: dtype {other} (expected <f8 or <f4)")),
    };
    Ok((shape, data))
}

/// Arrays of an `.npz` (stored or deflated), as f64.
///
/// # Errors
/// Unreadable files or arrays of other types.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, (Vec<usize>, Vec<f64>)>, NodeError> {
    let f = std::fs::File::open(path).map_err(NodeError::io("opening", path))?;
    let mut z = zip::ZipArchive::new(f)
        .map_err(|e| NodeError::msg(format!("{}: not an .npz: {e}", path.display())))?;
    let mut out = BTreeMap::new();
    for i in 0..z.len() {
        let mut entry = z
            .by_index(i)
            .map_err(|e| NodeError::msg(format!("{}: {e}", path.display())))?;
        let name = entry
            .name()
            .map_err(|e| NodeError::msg(format!("{}: {e}", path.display())))?
            .trim_end_matches(".npy")
            .to_string();
        let bytes =
            cedm_engine::limits::read_capped(&mut entry, cedm_engine::limits::MAX_DECOMPRESSED)
                .map_err(NodeError::io("reading", path))?;
        let arr =
            parse_npy(&bytes, &format!("{}: {name}", path.display())).map_err(NodeError::msg)?;
        out.insert(name, arr);
    }
    Ok(out)
}

/// The reference statistics of a metric node: its `ref` input (written by `ref_kind`) or the
/// `ref_stats` file, exactly one of them.
///
/// # Errors
/// Both or neither given; an unreadable file.
pub fn reference(
    ctx: &RunContext<'_>,
    ref_stats: Option<&str>,
    ref_kind: &str,
) -> Result<Stats, NodeError> {
    match (ctx.input("ref"), ref_stats) {
        (Some(a), None) => Stats::read(a.path("stats.safetensors")?),
        (None, Some(f)) => Stats::read(Path::new(f)),
        (Some(_), Some(_)) => Err(NodeError::msg(
            "give the reference either as the `ref` input or as `ref_stats`, not both",
        )),
        (None, None) => Err(NodeError::msg(format!(
            "no reference: add a `ref` input (a {ref_kind} node) or the `ref_stats` param"
        ))),
    }
}

//! MNIST / Fashion-MNIST IDX files (gzipped or raw).
//!
//! Format (<http://yann.lecun.com/exdb/mnist/>): big-endian magic `00 00 08 NDIM` (type 0x08 =
//! uint8), NDIM big-endian u32 sizes, then the data. Images have NDIM = 3 (N, H, W), labels 1.

use std::path::Path;

use cedm_engine::NodeError;

use crate::artifacts::images::ImageSet;

/// What can go wrong reading an IDX file; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum IdxError {
    /// Not an IDX file.
    #[error("{path}: not an IDX file (magic {magic:02x?}, expected 00 00 08 0{ndim})")]
    Magic {
        /// File.
        path: String,
        /// The first four bytes.
        magic: Vec<u8>,
        /// Expected dimensionality.
        ndim: u8,
    },
    /// Shorter than its header says.
    #[error("{path}: truncated: header promises {want} bytes of data, file has {have}")]
    Truncated {
        /// File.
        path: String,
        /// Bytes promised.
        want: usize,
        /// Bytes present.
        have: usize,
    },
    /// Dimensions that are zero, overflow, or exceed cedm's caps.
    #[error("{path}: {message}")]
    Size {
        /// File.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// Read error (missing file, bad gzip).
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<IdxError> for NodeError {
    fn from(e: IdxError) -> Self {
        NodeError::msg(e.to_string())
    }
}

/// Read an IDX file (gzip detected by its magic) and check it has `ndim` dimensions.
/// Returns (dims, data).
///
/// # Errors
/// See [`IdxError`].
pub fn read_idx(path: &Path, ndim: u8) -> Result<(Vec<usize>, Vec<u8>), IdxError> {
    let p = path.display().to_string();
    let io = |source| IdxError::Io {
        path: p.clone(),
        source,
    };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        // Capped: a gzip bomb is an error, not an out-of-memory abort.
        cedm_engine::limits::read_capped(
            flate2::read::GzDecoder::new(&raw[..]),
            cedm_engine::limits::MAX_DECOMPRESSED,
        )
        .map_err(io)?
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 || bytes[3] != ndim {
        return Err(IdxError::Magic {
            path: p,
            magic: bytes.iter().take(4).copied().collect(),
            ndim,
        });
    }
    let header = 4 + 4 * ndim as usize;
    if bytes.len() < header {
        return Err(IdxError::Truncated {
            path: p,
            want: header,
            have: bytes.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim as usize)
        .map(|i| {
            u32::from_be_bytes([
                bytes[4 + 4 * i],
                bytes[5 + 4 * i],
                bytes[6 + 4 * i],
                bytes[7 + 4 * i],
            ]) as usize
        })
        .collect();
    // Checked: the header's sizes are input (their product may overflow).
    let want =
        cedm_engine::limits::elements(&dims, "the header's dimensions").map_err(|message| {
            IdxError::Size {
                path: p.clone(),
                message,
            }
        })?;
    let have = bytes.len() - header;
    if have < want {
        return Err(IdxError::Truncated {
            path: p,
            want,
            have,
        });
    }
    Ok((dims, bytes[header..header + want].to_vec()))
}

/// Read IDX images (and labels) into an image set.
///
/// # Errors
/// Malformed files, or label and image counts that differ.
pub fn load(images: &Path, labels: Option<&Path>) -> Result<ImageSet, NodeError> {
    let (dims, pixels) = read_idx(images, 3)?;
    if dims.contains(&0) {
        return Err(IdxError::Size {
            path: images.display().to_string(),
            message: format!(
                "holds {} images of {}×{} pixels; a dataset needs at least one non-empty image",
                dims[0], dims[1], dims[2]
            ),
        }
        .into());
    }
    let labels = match labels {
        Some(l) => {
            let (ld, lb) = read_idx(l, 1)?;
            if ld[0] != dims[0] {
                return Err(NodeError::msg(format!(
                    "{} has {} labels but {} has {} images",
                    l.display(),
                    ld[0],
                    images.display(),
                    dims[0]
                )));
            }
            Some(lb.into_iter().map(i64::from).collect())
        }
        None => None,
    };
    Ok(ImageSet {
        n: dims[0],
        c: 1,
        h: dims[1],
        w: dims[2],
        pixels,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Write an IDX file (optionally gzipped) the way the MNIST distribution does.
    pub(crate) fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        if gz {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(&bytes).unwrap();
            bytes = e.finish().unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn reads_raw_and_gzipped() {
        let dir = tempfile::tempdir().unwrap();
        let px: Vec<u8> = (0..2 * 3 * 4).map(|i| i as u8).collect();
        for gz in [false, true] {
            let ip = dir.path().join(format!("i{gz}"));
            let lp = dir.path().join(format!("l{gz}"));
            write_idx(&ip, &[2, 3, 4], &px, gz);
            write_idx(&lp, &[2], &[7, 9], gz);
            let s = load(&ip, Some(&lp)).unwrap();
            assert_eq!((s.n, s.c, s.h, s.w), (2, 1, 3, 4));
            assert_eq!(s.pixels, px);
            assert_eq!(s.labels, Some(vec![7, 9]));
        }
    }

    #[test]
    fn clear_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let trunc = dir.path().join("trunc-images-idx3-ubyte");
        write_idx(&trunc, &[10, 28, 28], &[0u8; 100], false);
        let e = load(&trunc, None).unwrap_err().to_string();
        assert!(
            e.contains("trunc-images-idx3-ubyte") && e.contains("truncated"),
            "{e}"
        );

        let magic = dir.path().join("labels-as-images");
        write_idx(&magic, &[10], &[0u8; 10], false);
        let e = load(&magic, None).unwrap_err().to_string();
        assert!(
            e.contains("labels-as-images") && e.contains("not an IDX file"),
            "{e}"
        );

        let missing = dir.path().join("nope.gz");
        let e = load(&missing, None).unwrap_err().to_string();
        assert!(e.contains("nope.gz"), "{e}");

        let ip = dir.path().join("i");
        let lp = dir.path().join("l");
        write_idx(&ip, &[2, 1, 1], &[1, 2], false);
        write_idx(&lp, &[3], &[1, 2, 3], false);
        let e = load(&ip, Some(&lp)).unwrap_err().to_string();
        assert!(e.contains("3 labels") && e.contains("2 images"), "{e}");
    }
}

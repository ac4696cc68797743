//! The image artifact shared by data, sampling and metrics nodes.
//!
//! Layout (open with `safetensors.numpy.load_file`):
//! - `images.safetensors`: tensor `images`, uint8, shape `[N, C, H, W]` (NCHW, like PyTorch and
//!   EDM's datasets), C = 1 (grey) or 3 (RGB);
//! - `labels.safetensors` (when labels exist): tensor `labels`, int64, shape `[N]`;
//! - `preview.png`: the first images in a grid, to look at.

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{Artifact, NodeError};

use super::grid::write_grid_png;
use super::safetensors::{Tensors, Writer};
use cedm_kernels::rng::Rng;

/// A set of uint8 images in NCHW layout, with optional integer labels.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Number of images.
    pub n: usize,
    /// Channels (1 or 3).
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Pixels, `n*c*h*w`, NCHW.
    pub pixels: Vec<u8>,
    /// Ground-truth labels, if known.
    pub labels: Option<Vec<i64>>,
}

impl ImageSet {
    /// Bytes of one image.
    pub fn image_len(&self) -> usize {
        self.c * self.h * self.w
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.image_len();
        &self.pixels[i * l..(i + 1) * l]
    }

    /// Keep the images at `idx` (in that order).
    pub fn select(&self, idx: &[usize]) -> ImageSet {
        let l = self.image_len();
        let mut pixels = Vec::with_capacity(idx.len() * l);
        for &i in idx {
            pixels.extend_from_slice(self.image(i));
        }
        ImageSet {
            n: idx.len(),
            pixels,
            labels: self
                .labels
                .as_ref()
                .map(|ls| idx.iter().map(|&i| ls[i]).collect()),
            c: self.c,
            h: self.h,
            w: self.w,
        }
    }

    /// Keep `limit` images: the first ones, or a random subset (file order kept) when `seed` is
    /// given.
    pub fn subset(self, limit: Option<usize>, seed: Option<u64>) -> ImageSet {
        match limit {
            Some(k) if k < self.n => {
                let idx: Vec<usize> = match seed {
                    Some(s) => Rng::new(s).subset(self.n, k),
                    None => (0..k).collect(),
                };
                self.select(&idx)
            }
            _ => self,
        }
    }

    /// Repeat a grey channel three times (RGB backbones and FID want 3 channels).
    pub fn to_rgb(self) -> ImageSet {
        if self.c != 1 {
            return self;
        }
        let hw = self.h * self.w;
        let mut pixels = Vec::with_capacity(self.pixels.len() * 3);
        for img in self.pixels.chunks_exact(hw) {
            for _ in 0..3 {
                pixels.extend_from_slice(img);
            }
        }
        ImageSet {
            c: 3,
            pixels,
            ..self
        }
    }

    /// Zero-pad every side by `p` pixels (e.g. 28 → 32 with `p = 2`).
    pub fn pad(self, p: usize) -> ImageSet {
        if p == 0 {
            return self;
        }
        let (h2, w2) = (self.h + 2 * p, self.w + 2 * p);
        let mut pixels = vec![0u8; self.n * self.c * h2 * w2];
        for (i, plane) in self.pixels.chunks_exact(self.h * self.w).enumerate() {
            let dst = &mut pixels[i * h2 * w2..(i + 1) * h2 * w2];
            for y in 0..self.h {
                dst[(y + p) * w2 + p..(y + p) * w2 + p + self.w]
                    .copy_from_slice(&plane[y * self.w..(y + 1) * self.w]);
            }
        }
        ImageSet {
            h: h2,
            w: w2,
            pixels,
            ..self
        }
    }

    /// Resize every image to `r × r` (antialiased filter, rounded back to uint8).
    pub fn resize(self, r: usize, filter: cedm_kernels::imageops::Filter) -> ImageSet {
        if self.h == r && self.w == r {
            return self;
        }
        let (h, w) = (self.h, self.w);
        let planes: Vec<u8> = {
            use rayon::prelude::*;
            self.pixels
                .par_chunks(h * w)
                .flat_map_iter(|plane| {
                    let src: Vec<f32> = plane.iter().map(|&v| f32::from(v)).collect();
                    let mut dst = vec![0f32; r * r];
                    cedm_kernels::imageops::resize_plane(&src, h, w, r, r, filter, &mut dst);
                    dst.into_iter()
                        .map(|v| v.round().clamp(0.0, 255.0) as u8)
                        .collect::<Vec<u8>>()
                })
                .collect()
        };
        ImageSet {
            h: r,
            w: r,
            pixels: planes,
            ..self
        }
    }

    /// Write `images.safetensors`, `labels.safetensors` (if any), `preview.png` into `dir`.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write(&self, dir: &Path, source: &str) -> Result<(), NodeError> {
        let meta: BTreeMap<String, String> = [
            ("format".to_string(), "cedm-images-v1".to_string()),
            ("layout".to_string(), "NCHW".to_string()),
            ("source".to_string(), source.to_string()),
        ]
        .into();
        let mut w = Writer::new();
        w.put_u8("images", &[self.n, self.c, self.h, self.w], &self.pixels);
        for (k, v) in meta {
            w.meta(k, v);
        }
        w.write(&dir.join("images.safetensors"))?;
        if let Some(labels) = &self.labels {
            Writer::new()
                .put("labels", &[labels.len()], labels)
                .write(&dir.join("labels.safetensors"))?;
        }
        let shown = self.n.min(64);
        let cols = (shown as f64).sqrt().ceil().max(1.0) as usize;
        let idx: Vec<usize> = (0..shown).collect();
        write_grid_png(&dir.join("preview.png"), self, &idx, cols)?;
        Ok(())
    }

    /// Write `info.json` describing the set (count, shape, label histogram).
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_info(&self, dir: &Path) -> Result<(), NodeError> {
        let mut counts = BTreeMap::<i64, usize>::new();
        if let Some(l) = &self.labels {
            for &x in l {
                *counts.entry(x).or_default() += 1;
            }
        }
        let v = serde_json::json!({
            "images": self.n,
            "shape": [self.c, self.h, self.w],
            "labels": self.labels.is_some(),
            "label_counts": counts.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
        });
        super::write_json(&dir.join("info.json"), &v)
    }

    /// Read the image artifact of an upstream node.
    ///
    /// # Errors
    /// When it has no `images.safetensors` or the file is malformed.
    pub fn read(a: &Artifact) -> Result<ImageSet, NodeError> {
        let mut set = ImageSet::read_file(a.path("images.safetensors")?)?;
        if let Ok(p) = a.path("labels.safetensors") {
            let l = Tensors::open(p)?.i64("labels")?;
            if l.data.len() != set.n {
                return Err(NodeError::msg(format!(
                    "{} labels for {} images",
                    l.data.len(),
                    set.n
                )));
            }
            set.labels = Some(l.data);
        }
        Ok(set)
    }

    /// Read an `images.safetensors` file (no labels).
    ///
    /// # Errors
    /// When the file is malformed.
    pub fn read_file(path: &Path) -> Result<ImageSet, NodeError> {
        let t = Tensors::open(path)?.u8("images")?;
        let [n, c, h, w] = t.shape[..] else {
            return Err(NodeError::msg(format!(
                "{}: images must be [N, C, H, W], got {:?}",
                path.display(),
                t.shape
            )));
        };
        // The header is input: at least one image, 1 or 3 channels, non-empty and sane sides.
        let side = cedm_engine::limits::MAX_SIDE;
        if n == 0 || !(c == 1 || c == 3) || h == 0 || w == 0 || h > side || w > side {
            return Err(NodeError::msg(format!(
                "{}: images [N, C, H, W] = {:?}: expected N ≥ 1, C 1 or 3, 1 ≤ H, W ≤ {side}",
                path.display(),
                t.shape
            )));
        }
        Ok(ImageSet {
            n,
            c,
            h,
            w,
            pixels: t.data,
            labels: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> ImageSet {
        ImageSet {
            n: 3,
            c: 1,
            h: 2,
            w: 2,
            pixels: (0..12).collect(),
            labels: Some(vec![0, 1, 2]),
        }
    }

    #[test]
    fn subset_rgb_pad() {
        let s = tiny().subset(Some(2), None);
        assert_eq!(s.pixels, (0..8).collect::<Vec<u8>>());
        let r = tiny().subset(Some(2), Some(1));
        assert_eq!(r.n, 2);
        let rgb = tiny().to_rgb();
        assert_eq!(rgb.c, 3);
        assert_eq!(rgb.image(1), &[4, 5, 6, 7, 4, 5, 6, 7, 4, 5, 6, 7]);
        let p = tiny().pad(1);
        assert_eq!((p.h, p.w), (4, 4));
        assert_eq!(&p.image(0)[4..8], &[0, 0, 1, 0]);
    }
}

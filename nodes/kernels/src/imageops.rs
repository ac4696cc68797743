//! Image resampling on the CPU, on float planes.
//!
//! - [`resize`] with [`Filter::Bilinear`] / [`Filter::Bicubic`] matches
//!   `torch.nn.functional.interpolate(x, size, mode=…, align_corners=False, antialias=True)`:
//!   separable, the filter widened by the scale factor when shrinking (like PIL), bicubic with
//!   a = −0.5 (PIL's and torchvision's antialias kernel). PIL additionally rounds to uint8
//!   between its two passes; we keep floats (a difference of at most one grey level).
//! - [`resize_tf_bilinear`] is TensorFlow's legacy `resize_bilinear` (source = destination ×
//!   scale, edge clamped), which the FID Inception was trained with and which StyleGAN/EDM's FID
//!   code reproduces with `grid_sample` (fid-helper-pytorch's `nv_bilinear`).

use rayon::prelude::*;

/// Interpolation filter.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Triangle filter (support 1).
    Bilinear,
    /// Cubic convolution, a = −0.5 (support 2).
    Bicubic,
    /// Lanczos, a = 3 (support 3): PIL's `LANCZOS`, which EDM's `dataset_tool.py` uses to
    /// downscale datasets (FFHQ 1024 → 64).
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        let x = x.abs();
        match self {
            Filter::Bilinear => (1.0 - x).max(0.0),
            Filter::Bicubic => {
                let a = -0.5;
                if x < 1.0 {
                    ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * a
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                let sinc = |t: f64| {
                    if t == 0.0 {
                        1.0
                    } else {
                        let p = std::f64::consts::PI * t;
                        p.sin() / p
                    }
                };
                if x < 3.0 {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

/// For each output index: first input index and normalised weights.
fn taps(n_in: usize, n_out: usize, filter: Filter) -> Vec<(usize, Vec<f32>)> {
    let scale = n_in as f64 / n_out as f64;
    let fscale = scale.max(1.0);
    let support = filter.support() * fscale;
    (0..n_out)
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            let lo = ((center - support + 0.5).floor().max(0.0)) as usize;
            let hi = ((center + support + 0.5).floor() as usize).min(n_in);
            let mut w: Vec<f64> = (lo..hi)
                .map(|j| filter.weight((j as f64 - center + 0.5) / fscale))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                for x in &mut w {
                    *x /= total;
                }
            }
            (lo, w.into_iter().map(|x| x as f32).collect())
        })
        .collect()
}

/// Resize one plane `h×w` → `oh×ow` (antialiased, PyTorch `antialias=True` semantics).
pub fn resize_plane(
    src: &[f32],
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    filter: Filter,
    out: &mut [f32],
) {
    let tx = taps(w, ow, filter);
    let ty = taps(h, oh, filter);
    // Horizontal pass: h × ow.
    let mut tmp = vec![0f32; h * ow];
    for y in 0..h {
        let row = &src[y * w..(y + 1) * w];
        for (x, (lo, ws)) in tx.iter().enumerate() {
            let mut acc = 0f32;
            for (k, wt) in ws.iter().enumerate() {
                acc += row[lo + k] * wt;
            }
            tmp[y * ow + x] = acc;
        }
    }
    // Vertical pass.
    for (y, (lo, ws)) in ty.iter().enumerate() {
        let dst = &mut out[y * ow..(y + 1) * ow];
        dst.fill(0.0);
        for (k, wt) in ws.iter().enumerate() {
            let row = &tmp[(lo + k) * ow..(lo + k + 1) * ow];
            for x in 0..ow {
                dst[x] += row[x] * wt;
            }
        }
    }
}

/// TensorFlow's legacy bilinear resize of one plane: source coordinate = destination × (in/out),
/// neighbours clamped at the border.
pub fn resize_tf_bilinear(src: &[f32], h: usize, w: usize, oh: usize, ow: usize, out: &mut [f32]) {
    let sy = h as f32 / oh as f32;
    let sx = w as f32 / ow as f32;
    let xs: Vec<(usize, usize, f32)> = (0..ow)
        .map(|x| {
            let fx = x as f32 * sx;
            let x0 = (fx.floor() as usize).min(w - 1);
            let x1 = (x0 + 1).min(w - 1);
            (x0, x1, fx - x0 as f32)
        })
        .collect();
    for y in 0..oh {
        let fy = y as f32 * sy;
        let y0 = (fy.floor() as usize).min(h - 1);
        let y1 = (y0 + 1).min(h - 1);
        let dy = fy - y0 as f32;
        let r0 = &src[y0 * w..(y0 + 1) * w];
        let r1 = &src[y1 * w..(y1 + 1) * w];
        let dst = &mut out[y * ow..(y + 1) * ow];
        for (x, &(x0, x1, dx)) in xs.iter().enumerate() {
            let top = r0[x0] + (r0[x1] - r0[x0]) * dx;
            let bot = r1[x0] + (r1[x1] - r1[x0]) * dx;
            dst[x] = top + (bot - top) * dy;
        }
    }
}

/// How to turn uint8 images into network input.
#[derive(Clone, Copy, Debug)]
pub enum Resample {
    /// Antialiased separable filter (PyTorch `antialias=True`).
    Filter(Filter),
    /// TensorFlow legacy bilinear (FID).
    TfBilinear,
}

/// uint8 NCHW images (C = 1 or 3) → float NCHW with 3 channels at `size×size`:
/// `(x * scale + offset)` per channel after resizing in the 0–255 range.
///
/// Grey images are repeated to RGB. Parallel over images.
///
/// # Shapes
/// - `pixels`: `[n, c, h, w]` uint8
/// - returns `[n, 3, size, size]` f32
#[allow(clippy::too_many_arguments)]
pub fn preprocess(
    pixels: &[u8],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    size: usize,
    resample: Resample,
    scale: [f32; 3],
    offset: [f32; 3],
) -> Vec<f32> {
    let plane = size * size;
    let mut out = vec![0f32; n * 3 * plane];
    out.par_chunks_mut(3 * plane)
        .enumerate()
        .for_each(|(i, dst)| {
            let img = &pixels[i * c * h * w..(i + 1) * c * h * w];
            let mut src = vec![0f32; h * w];
            let mut resized = vec![0f32; plane];
            for ch in 0..3 {
                let sc = if c == 1 { 0 } else { ch };
                // Grey images: compute the plane once, reuse for the other channels.
                if c == 1 && ch > 0 {
                    for (k, v) in dst[ch * plane..(ch + 1) * plane].iter_mut().enumerate() {
                        *v = resized[k] * scale[ch] + offset[ch];
                    }
                    continue;
                }
                for (d, s) in src.iter_mut().zip(&img[sc * h * w..(sc + 1) * h * w]) {
                    *d = f32::from(*s);
                }
                if h == size && w == size {
                    resized.copy_from_slice(&src);
                } else {
                    match resample {
                        Resample::Filter(f) => {
                            resize_plane(&src, h, w, size, size, f, &mut resized)
                        }
                        Resample::TfBilinear => {
                            resize_tf_bilinear(&src, h, w, size, size, &mut resized)
                        }
                    }
                }
                for (k, v) in dst[ch * plane..(ch + 1) * plane].iter_mut().enumerate() {
                    *v = resized[k] * scale[ch] + offset[ch];
                }
            }
        });
    out
}

/// ImageNet normalisation as (scale, offset) on 0–255 values: (x/255 − mean)/std.
pub fn imagenet_norm() -> ([f32; 3], [f32; 3]) {
    let mean = [0.485f32, 0.456, 0.406];
    let std = [0.229f32, 0.224, 0.225];
    let scale = [
        1.0 / (255.0 * std[0]),
        1.0 / (255.0 * std[1]),
        1.0 / (255.0 * std[2]),
    ];
    let offset = [-mean[0] / std[0], -mean[1] / std[1], -mean[2] / std[2]];
    (scale, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant() {
        let src: Vec<f32> = (0..16).map(|x| x as f32).collect();
        let mut out = vec![0f32; 16];
        resize_plane(&src, 4, 4, 4, 4, Filter::Bicubic, &mut out);
        for (a, b) in src.iter().zip(&out) {
            assert!((a - b).abs() < 1e-5);
        }
        let c = vec![7f32; 30 * 20];
        let mut o = vec![0f32; 11 * 13];
        resize_plane(&c, 30, 20, 11, 13, Filter::Bilinear, &mut o);
        assert!(o.iter().all(|v| (v - 7.0).abs() < 1e-4));
        let mut t = vec![0f32; 50 * 50];
        resize_tf_bilinear(&c, 30, 20, 50, 50, &mut t);
        assert!(t.iter().all(|v| (v - 7.0).abs() < 1e-4));
    }

    #[test]
    fn tf_bilinear_samples_at_dst_times_scale() {
        // 2 → 4: samples at 0, 0.5, 1, 1.5 (clamped) of [0, 10].
        let src = vec![0f32, 10.0];
        let mut out = vec![0f32; 4];
        resize_tf_bilinear(&src, 1, 2, 1, 4, &mut out);
        assert_eq!(out, vec![0.0, 5.0, 10.0, 10.0]);
    }
}

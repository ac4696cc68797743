//! The cheap NCHW operations around SongUNet's convolutions, multi-threaded and in one pass
//! each (with their adjoints): channel concatenation (the decoder's skip connections) and its
//! split, `(a + b)·s` (residual sums), 2× nearest upsampling and 2×2 average pooling (EDM's
//! `[1, 1]` resample filter).

use rayon::prelude::*;

/// Planes (of `hw` floats) per parallel task, so that tiny planes do not cost a task each.
fn plane_group(hw: usize) -> usize {
    (16_384 / hw.max(1)).max(1)
}

/// `out[i] = cat(a[i], b[i])` along channels: `a`: `[n, ca·hw]`, `b`: `[n, cb·hw]`.
pub fn cat_channels(
    a: &[f32],
    b: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
    out: &mut [f32],
) {
    let (la, lb) = (ca * hw, cb * hw);
    out[..n * (la + lb)]
        .par_chunks_mut(la + lb)
        .enumerate()
        .for_each(|(i, o)| {
            o[..la].copy_from_slice(&a[i * la..(i + 1) * la]);
            o[la..].copy_from_slice(&b[i * lb..(i + 1) * lb]);
        });
}

/// The adjoint of [`cat_channels`]: split `g` back into `ga` and `gb`.
pub fn split_channels(
    g: &[f32],
    n: usize,
    ca: usize,
    cb: usize,
    hw: usize,
    ga: &mut [f32],
    gb: &mut [f32],
) {
    let (la, lb) = (ca * hw, cb * hw);
    ga[..n * la]
        .par_chunks_mut(la)
        .zip(gb[..n * lb].par_chunks_mut(lb))
        .enumerate()
        .for_each(|(i, (a, b))| {
            let src = &g[i * (la + lb)..(i + 1) * (la + lb)];
            a.copy_from_slice(&src[..la]);
            b.copy_from_slice(&src[la..]);
        });
}

multiversion! {
    fn add_scale_chunk(a: &[f32], b: &[f32], s: f32, out: &mut [f32]) {
        for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
            *o = (x + y) * s;
        }
    }
}

multiversion! {
    fn scale_chunk(a: &[f32], s: f32, out: &mut [f32]) {
        for (o, &x) in out.iter_mut().zip(a) {
            *o = x * s;
        }
    }
}

const CHUNK: usize = 1 << 14;

/// `out = (a + b)·s`.
pub fn add_scale(a: &[f32], b: &[f32], s: f32, out: &mut [f32]) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .zip(b.par_chunks(CHUNK))
        .for_each(|((o, a), b)| add_scale_chunk(a, b, s, o));
}

/// `out = a·s`.
pub fn scale(a: &[f32], s: f32, out: &mut [f32]) {
    out.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK))
        .for_each(|(o, a)| scale_chunk(a, s, o));
}

/// 2× nearest-neighbour upsampling of `planes` planes of `h × w` into `2h × 2w`.
pub fn up2(x: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    let (hw, ow) = (h * w, 2 * w);
    let g = plane_group(4 * hw);
    out[..planes * 4 * hw]
        .par_chunks_mut(4 * hw * g)
        .enumerate()
        .for_each(|(t, o)| {
            for (j, op) in o.chunks_exact_mut(4 * hw).enumerate() {
                let p = t * g + j;
                let src = &x[p * hw..(p + 1) * hw];
                for y in 0..h {
                    let row = &src[y * w..(y + 1) * w];
                    let (r0, r1) = op[2 * y * ow..(2 * y + 2) * ow].split_at_mut(ow);
                    for (xx, &v) in row.iter().enumerate() {
                        r0[2 * xx] = v;
                        r0[2 * xx + 1] = v;
                    }
                    r1.copy_from_slice(r0);
                }
            }
        });
}

/// The adjoint of [`up2`]: each input pixel gets the sum of its 2×2 block of `g`.
pub fn up2_adjoint(g: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    let (hw, ow) = (h * w, 2 * w);
    let grp = plane_group(hw);
    out[..planes * hw]
        .par_chunks_mut(hw * grp)
        .enumerate()
        .for_each(|(t, o)| {
            for (j, op) in o.chunks_exact_mut(hw).enumerate() {
                let p = t * grp + j;
                let src = &g[p * 4 * hw..(p + 1) * 4 * hw];
                for y in 0..h {
                    let (r0, r1) = (
                        &src[2 * y * ow..(2 * y + 1) * ow],
                        &src[(2 * y + 1) * ow..(2 * y + 2) * ow],
                    );
                    for xx in 0..w {
                        op[y * w + xx] =
                            (r0[2 * xx] + r0[2 * xx + 1]) + (r1[2 * xx] + r1[2 * xx + 1]);
                    }
                }
            }
        });
}

/// 2×2 average pooling of `planes` planes of `h × w` (both even) into `h/2 × w/2`.
pub fn down2(x: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    let ohw = oh * ow;
    let grp = plane_group(ohw);
    out[..planes * ohw]
        .par_chunks_mut(ohw * grp)
        .enumerate()
        .for_each(|(t, o)| {
            for (j, op) in o.chunks_exact_mut(ohw).enumerate() {
                let p = t * grp + j;
                let src = &x[p * h * w..(p + 1) * h * w];
                for y in 0..oh {
                    let (r0, r1) = (
                        &src[2 * y * w..(2 * y + 1) * w],
                        &src[(2 * y + 1) * w..(2 * y + 2) * w],
                    );
                    for xx in 0..ow {
                        // The mean over the last axis, then the other, as burn's `mean_dim`s did.
                        let a = (r0[2 * xx] + r0[2 * xx + 1]) / 2.0;
                        let b = (r1[2 * xx] + r1[2 * xx + 1]) / 2.0;
                        op[y * ow + xx] = (a + b) / 2.0;
                    }
                }
            }
        });
}

/// The adjoint of [`down2`]: each pixel of a 2×2 block gets a quarter of its output's `g`.
pub fn down2_adjoint(g: &[f32], planes: usize, h: usize, w: usize, out: &mut [f32]) {
    let (oh, ow) = (h / 2, w / 2);
    let grp = plane_group(h * w);
    out[..planes * h * w]
        .par_chunks_mut(h * w * grp)
        .enumerate()
        .for_each(|(t, o)| {
            for (j, op) in o.chunks_exact_mut(h * w).enumerate() {
                let p = t * grp + j;
                let src = &g[p * oh * ow..(p + 1) * oh * ow];
                for y in 0..h {
                    for xx in 0..w {
                        op[y * w + xx] = src[(y / 2) * ow + xx / 2] * 0.25;
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_and_its_adjoints() {
        let x: Vec<f32> = (0..2 * 2 * 3).map(|i| i as f32).collect(); // 2 planes of 2×3
        let mut u = vec![0f32; 2 * 4 * 6];
        up2(&x, 2, 2, 3, &mut u);
        assert_eq!(&u[..6], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(&u[6..12], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
        assert_eq!(u[24], 6.0);
        let mut back = vec![0f32; x.len()];
        up2_adjoint(&u, 2, 2, 3, &mut back);
        assert_eq!(back, x.iter().map(|v| v * 4.0).collect::<Vec<_>>());
        let mut d = vec![0f32; 2 * 2 * 3];
        down2(&u, 2, 4, 6, &mut d);
        assert_eq!(d, x);
        let g: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let mut gd = vec![0f32; 48];
        down2_adjoint(&g, 2, 4, 6, &mut gd);
        // ⟨down2(u), g⟩ = ⟨u, down2ᵀ(g)⟩.
        let lhs: f32 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        let rhs: f32 = u.iter().zip(&gd).map(|(a, b)| a * b).sum();
        assert!((lhs - rhs).abs() < 1e-3);
        let a = vec![1.0f32, 2.0, 3.0, 4.0];
        let b = vec![10.0f32, 20.0];
        let mut c = vec![0f32; 6];
        cat_channels(&a, &b, 2, 2, 1, 1, &mut c);
        assert_eq!(c, vec![1.0, 2.0, 10.0, 3.0, 4.0, 20.0]);
        let (mut ga, mut gb) = (vec![0f32; 4], vec![0f32; 2]);
        split_channels(&c, 2, 2, 1, 1, &mut ga, &mut gb);
        assert_eq!((ga, gb), (a, b));
    }
}

//! Group normalisation fused with what SongUNet puts around it: an optional per-(image,
//! channel) shift added before it (`norm1(h + affine(emb))`), the affine γ/β, and an optional
//! SiLU after — `y = act(γ·(x + s − μ)/σ + β)` with μ, σ² over each group's channels and pixels
//! (biased variance, as `torch.nn.GroupNorm`), forward and backward in one pass each.
//!
//! Statistics are accumulated in f64. Work is split by (image, group); the γ/β gradients are
//! summed per image first and then over images in order, so results do not depend on the
//! number of threads.

use rayon::prelude::*;

/// A group norm's shape and options.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GroupNorm {
    /// Images.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Pixels per channel.
    pub hw: usize,
    /// Groups (dividing `c`).
    pub groups: usize,
    /// ε added to the variance.
    pub eps: f64,
    /// Apply SiLU after the affine.
    pub silu: bool,
}

use super::math::sigmoid;

/// Σ (x + s) and Σ (x + s)² over a plane.
fn plane_sums(x: &[f32], s: f32) -> (f64, f64) {
    sums(x, x, s, 1.0, true)
}

/// The reductions of a plane in one pass: with u = (a + s)·r, (Σ u, Σ u²) when `square`, else
/// (Σ u·b, Σ b). In f32 blocks of 256 elements on 16 lanes (no fused multiply-add), each block's
/// lanes added in order and the blocks in f64: the AVX-512 path and the portable one give the
/// same bits. (LLVM does not vectorise these loops itself: it pairs the two accumulators.)
fn sums(a: &[f32], b: &[f32], s: f32, r: f32, square: bool) -> (f64, f64) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked just above).
        return unsafe { sums_avx512(a, b, s, r, square) };
    }
    let (mut t0, mut t1) = (0f64, 0f64);
    for (ab, bb) in a.chunks(256).zip(b.chunks(256)) {
        let (mut l0, mut l1) = ([0f32; L], [0f32; L]);
        for (i, (&x, &y)) in ab.iter().zip(bb).enumerate() {
            let u = (x + s) * r;
            let (p, q) = if square { (u, u * u) } else { (u * y, y) };
            l0[i % L] += p;
            l1[i % L] += q;
        }
        t0 += f64::from(lane_sum(&l0));
        t1 += f64::from(lane_sum(&l1));
    }
    (t0, t1)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn sums_avx512(a: &[f32], b: &[f32], s: f32, r: f32, square: bool) -> (f64, f64) {
    use std::arch::x86_64::{_mm512_add_ps, _mm512_loadu_ps, _mm512_mul_ps, _mm512_set1_ps};
    use std::arch::x86_64::{_mm512_setzero_ps, _mm512_storeu_ps};
    let (sv, rv) = (_mm512_set1_ps(s), _mm512_set1_ps(r));
    let (mut t0, mut t1) = (0f64, 0f64);
    for (ab, bb) in a.chunks(256).zip(b.chunks(256)) {
        let (av, tail_a) = ab.as_chunks::<L>();
        let (bv, tail_b) = bb.as_chunks::<L>();
        let (mut v0, mut v1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        for (x, y) in av.iter().zip(bv) {
            // SAFETY: x and y are 16 f32s each.
            let (x, y) = unsafe { (_mm512_loadu_ps(x.as_ptr()), _mm512_loadu_ps(y.as_ptr())) };
            let u = _mm512_mul_ps(_mm512_add_ps(x, sv), rv);
            if square {
                v0 = _mm512_add_ps(v0, u);
                v1 = _mm512_add_ps(v1, _mm512_mul_ps(u, u));
            } else {
                v0 = _mm512_add_ps(v0, _mm512_mul_ps(u, y));
                v1 = _mm512_add_ps(v1, y);
            }
        }
        let (mut l0, mut l1) = ([0f32; L], [0f32; L]);
        // SAFETY: l0 and l1 hold 16 f32s each.
        unsafe {
            _mm512_storeu_ps(l0.as_mut_ptr(), v0);
            _mm512_storeu_ps(l1.as_mut_ptr(), v1);
        }
        for (i, (&x, &y)) in tail_a.iter().zip(tail_b).enumerate() {
            let u = (x + s) * r;
            let (p, q) = if square { (u, u * u) } else { (u * y, y) };
            l0[i % L] += p;
            l1[i % L] += q;
        }
        t0 += f64::from(lane_sum(&l0));
        t1 += f64::from(lane_sum(&l1));
    }
    (t0, t1)
}

/// The sum of 16 lanes, in a fixed order.
#[inline(always)]
fn lane_sum(a: &[f32; L]) -> f32 {
    let mut t = 0f32;
    for v in a {
        t += v;
    }
    t
}

multiversion! {
    /// `dst = act(src·a + b)`.
    fn plane_affine(src: &[f32], dst: &mut [f32], a: f32, b: f32, silu: bool) {
        if silu {
            for (d, &v) in dst.iter_mut().zip(src) {
                let z = v * a + b;
                *d = z * sigmoid(z);
            }
        } else {
            for (d, &v) in dst.iter_mut().zip(src) {
                *d = v * a + b;
            }
        }
    }
}

/// Lanes of the explicit accumulators below (so that sums vectorise without reassociation).
const L: usize = 16;

#[inline(always)]
fn dz_of(xv: f32, dyv: f32, sh: f32, rstd: f32, ga: f32, be: f32, silu: bool) -> (f32, f32) {
    let xh = (xv + sh) * rstd;
    let dz = if silu {
        let z = xh * ga + be;
        let sg = sigmoid(z);
        dyv * (sg * (1.0 + z * (1.0 - sg)))
    } else {
        dyv
    };
    (xh, dz)
}

multiversion! {
    /// First backward pass over a plane, elementwise: with x̂ = (x + sh)·rstd and
    /// z = γx̂ + β, `dz ← dy·act'(z)`.
    fn plane_dz(x: &[f32], dy: &[f32], dz: &mut [f32], sh: f32, rstd: f32, ga: f32, be: f32, silu: bool) {
        for ((&xv, &dyv), d) in x.iter().zip(dy).zip(dz.iter_mut()) {
            *d = dz_of(xv, dyv, sh, rstd, ga, be, silu).1;
        }
    }
}

/// First backward pass over a plane: `dz` (see [`plane_dz`]) into `dz`; returns
/// (Σ dz·x̂, Σ dz, Σ dz·γ, Σ dz·γ·x̂).
#[allow(clippy::too_many_arguments)]
fn plane_backward1(
    x: &[f32],
    dy: &[f32],
    dz: &mut [f32],
    sh: f32,
    rstd: f32,
    ga: f32,
    be: f32,
    silu: bool,
) -> [f64; 4] {
    plane_dz(x, dy, dz, sh, rstd, ga, be, silu);
    let (sx, s) = sums(x, dz, sh, rstd, false);
    [sx, s, s * f64::from(ga), sx * f64::from(ga)]
}

multiversion! {
    /// Second backward pass, elementwise: `dx ← (dz·γ − m1 − x̂·m2)·rstd`.
    fn plane_dx(x: &[f32], dx: &mut [f32], sh: f32, rstd: f32, ga: f32, m1: f32, m2: f32) {
        for (&xv, d) in x.iter().zip(dx.iter_mut()) {
            let xh = (xv + sh) * rstd;
            *d = (*d * ga - m1 - xh * m2) * rstd;
        }
    }
}

/// Second backward pass (see [`plane_dx`]); returns Σ dx.
fn plane_backward2(
    x: &[f32],
    dx: &mut [f32],
    sh: f32,
    rstd: f32,
    ga: f32,
    m1: f32,
    m2: f32,
) -> f64 {
    plane_dx(x, dx, sh, rstd, ga, m1, m2);
    sums(dx, dx, 0.0, 1.0, true).0
}

impl GroupNorm {
    fn per_group(&self) -> usize {
        self.c / self.groups * self.hw
    }

    /// Forward. `stats` receives (μ, 1/σ) per (image, group), for the backward pass.
    ///
    /// # Shapes
    /// `x`, `y`: `[n, c, hw]`; `shift`: `[n, c]`; `gamma`, `beta`: `[c]`; `stats`: `[n·groups, 2]`
    pub fn forward(
        &self,
        x: &[f32],
        shift: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        y: &mut [f32],
        stats: &mut [f32],
    ) {
        let (cg, hw) = (self.c / self.groups, self.hw);
        let len = self.per_group();
        assert!(
            self.c.is_multiple_of(self.groups)
                && x.len() >= self.n * self.c * hw
                && y.len() >= self.n * self.c * hw
                && stats.len() >= self.n * self.groups * 2,
            "group norm: bad shapes"
        );
        y[..self.n * self.c * hw]
            .par_chunks_mut(len)
            .zip(stats[..self.n * self.groups * 2].par_chunks_mut(2))
            .enumerate()
            .for_each(|(ng, (yg, st))| {
                let (i, g) = (ng / self.groups, ng % self.groups);
                let xg = &x[ng * len..(ng + 1) * len];
                let s = |cl: usize| shift.map_or(0.0, |s| s[i * self.c + g * cg + cl]);
                let (mut sum, mut sq) = (0f64, 0f64);
                for cl in 0..cg {
                    let (a, b) = plane_sums(&xg[cl * hw..(cl + 1) * hw], s(cl));
                    sum += a;
                    sq += b;
                }
                let mean = sum / len as f64;
                let var = (sq / len as f64 - mean * mean).max(0.0);
                let rstd = 1.0 / (var + self.eps).sqrt();
                st[0] = mean as f32;
                st[1] = rstd as f32;
                for cl in 0..cg {
                    let ch = g * cg + cl;
                    let a = (f64::from(gamma[ch]) * rstd) as f32;
                    let b = (f64::from(beta[ch])
                        - f64::from(gamma[ch]) * rstd * (mean - f64::from(s(cl))))
                        as f32;
                    plane_affine(
                        &xg[cl * hw..(cl + 1) * hw],
                        &mut yg[cl * hw..(cl + 1) * hw],
                        a,
                        b,
                        self.silu,
                    );
                }
            });
    }

    /// Backward: `dx` (and `dshift`, the per-(image, channel) sum of `dx`), `dgamma`, `dbeta`.
    ///
    /// # Shapes
    /// as [`GroupNorm::forward`]; `dshift`: `[n, c]`, `dgamma`, `dbeta`: `[c]`
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        shift: Option<&[f32]>,
        gamma: &[f32],
        beta: &[f32],
        stats: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        dshift: Option<&mut [f32]>,
        dgamma: &mut [f32],
        dbeta: &mut [f32],
    ) {
        let (cg, hw, c) = (self.c / self.groups, self.hw, self.c);
        let len = self.per_group();
        // Per (image, channel): Σ dz·x̂ and Σ dz (reduced over images afterwards), Σ dx.
        let mut pg = vec![0f64; self.n * c];
        let mut pb = vec![0f64; self.n * c];
        let mut ps = vec![0f32; self.n * c];
        dx[..self.n * c * hw]
            .par_chunks_mut(len)
            .zip(pg.par_chunks_mut(cg))
            .zip(pb.par_chunks_mut(cg))
            .zip(ps.par_chunks_mut(cg))
            .enumerate()
            .for_each(|(ng, (((dxg, pgg), pbg), psg))| {
                let (i, g) = (ng / self.groups, ng % self.groups);
                let (mean, rstd) = (stats[2 * ng], stats[2 * ng + 1]);
                let xg = &x[ng * len..(ng + 1) * len];
                let dyg = &dy[ng * len..(ng + 1) * len];
                let s = |cl: usize| shift.map_or(0.0, |s| s[i * c + g * cg + cl]);
                // First pass: dz = dy·act'(z); the group sums of dz·γ and dz·γ·x̂; the
                // per-channel sums for γ and β. dz is kept in dx for the second pass.
                let (mut s1, mut s2) = (0f64, 0f64);
                for cl in 0..cg {
                    let ch = g * cg + cl;
                    let r = cl * hw..(cl + 1) * hw;
                    let t = plane_backward1(
                        &xg[r.clone()],
                        &dyg[r.clone()],
                        &mut dxg[r],
                        s(cl) - mean,
                        rstd,
                        gamma[ch],
                        beta[ch],
                        self.silu,
                    );
                    pgg[cl] = t[0];
                    pbg[cl] = t[1];
                    s1 += t[2];
                    s2 += t[3];
                }
                let m1 = (s1 / len as f64) as f32;
                let m2 = (s2 / len as f64) as f32;
                // dx = (dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂))/σ.
                for cl in 0..cg {
                    let r = cl * hw..(cl + 1) * hw;
                    psg[cl] = plane_backward2(
                        &xg[r.clone()],
                        &mut dxg[r],
                        s(cl) - mean,
                        rstd,
                        gamma[g * cg + cl],
                        m1,
                        m2,
                    ) as f32;
                }
            });
        for ch in 0..c {
            dgamma[ch] = (0..self.n).map(|i| pg[i * c + ch]).sum::<f64>() as f32;
            dbeta[ch] = (0..self.n).map(|i| pb[i * c + ch]).sum::<f64>() as f32;
        }
        if let Some(ds) = dshift {
            ds[..self.n * c].copy_from_slice(&ps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn loss(gn: &GroupNorm, x: &[f32], s: &[f32], ga: &[f32], be: &[f32], g: &[f32]) -> f64 {
        let mut y = vec![0f32; x.len()];
        let mut st = vec![0f32; gn.n * gn.groups * 2];
        gn.forward(x, Some(s), ga, be, &mut y, &mut st);
        y.iter()
            .zip(g)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum()
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut r = Rng::new(3);
        for silu in [false, true] {
            let gn = GroupNorm {
                n: 2,
                c: 6,
                hw: 5,
                groups: 3,
                eps: 1e-6,
                silu,
            };
            let len = gn.n * gn.c * gn.hw;
            let rnd = |r: &mut Rng, n: usize, s: f64| -> Vec<f32> {
                (0..n).map(|_| (r.normal() * s) as f32).collect()
            };
            let x = rnd(&mut r, len, 1.0);
            let s = rnd(&mut r, gn.n * gn.c, 0.5);
            let ga = rnd(&mut r, gn.c, 1.0);
            let be = rnd(&mut r, gn.c, 1.0);
            let g = rnd(&mut r, len, 1.0);
            let mut y = vec![0f32; len];
            let mut st = vec![0f32; gn.n * gn.groups * 2];
            gn.forward(&x, Some(&s), &ga, &be, &mut y, &mut st);
            let (mut dx, mut ds, mut dg, mut db) = (
                vec![0f32; len],
                vec![0f32; gn.n * gn.c],
                vec![0f32; gn.c],
                vec![0f32; gn.c],
            );
            gn.backward(
                &x,
                Some(&s),
                &ga,
                &be,
                &st,
                &g,
                &mut dx,
                Some(&mut ds),
                &mut dg,
                &mut db,
            );
            let h = 1e-2f32;
            let check = |name: &str, v: &[f32], grad: &[f32], which: usize| {
                for j in 0..v.len() {
                    let mut p = v.to_vec();
                    let mut m = v.to_vec();
                    p[j] += h;
                    m[j] -= h;
                    let args = |t: &[f32]| match which {
                        0 => loss(&gn, t, &s, &ga, &be, &g),
                        1 => loss(&gn, &x, t, &ga, &be, &g),
                        2 => loss(&gn, &x, &s, t, &be, &g),
                        _ => loss(&gn, &x, &s, &ga, t, &g),
                    };
                    let fd = (args(&p) - args(&m)) / (2.0 * f64::from(h));
                    assert!(
                        (f64::from(grad[j]) - fd).abs() < 2e-2 * (1.0 + fd.abs()),
                        "{name}[{j}] silu {silu}: {} vs {fd}",
                        grad[j]
                    );
                }
            };
            check("dx", &x, &dx, 0);
            check("dshift", &s, &ds, 1);
            check("dgamma", &ga, &dg, 2);
            check("dbeta", &be, &db, 3);
        }
    }
}

//! The last layer of H stacked TEMI heads (DINO's head): L2-normalise each row of the
//! bottleneck, then multiply by a weight-normalised matrix —
//! `logits = (z/max(‖z‖, 1e-12)) · (g ⊙ v/‖v‖)` with the norm of `v` per output column —
//! forward and backward, one head per core, in one pass where burn needs about fifteen.
//!
//! Shapes: `z` `[H, n, b]`, `v` `[H, b, C]`, `g` `[H, C]` → logits `[H, n, C]`. As
//! `F.normalize` (eps 1e-12: a row whose norm is below it is divided by 1e-12 and its gradient
//! does not flow through the norm) and `torch._weight_norm` (no eps).

use rayon::prelude::*;

use crate::cpu::gemm_serial;

/// The shape of the layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeadsCosine {
    /// Heads H.
    pub heads: usize,
    /// Rows n.
    pub n: usize,
    /// Bottleneck width b.
    pub bottleneck: usize,
    /// Outputs C.
    pub clusters: usize,
}

const EPS: f32 = 1e-12;

impl HeadsCosine {
    fn check(&self, z: &[f32], v: &[f32], g: &[f32]) {
        let (h, n, b, c) = (self.heads, self.n, self.bottleneck, self.clusters);
        assert!(
            z.len() == h * n * b && v.len() == h * b * c && g.len() == h * c,
            "heads cosine: operand sizes do not match {self:?}"
        );
    }

    /// One head's normalised rows (into `zn`, returning each row's divisor) and weights
    /// (into `w`, returning `‖v‖` per column).
    fn prepare(
        &self,
        z: &[f32],
        v: &[f32],
        g: &[f32],
        zn: &mut [f32],
        w: &mut [f32],
    ) -> (Vec<f32>, Vec<f32>) {
        let (b, c) = (self.bottleneck, self.clusters);
        let mut r = Vec::with_capacity(self.n);
        for (zr, out) in z.chunks_exact(b).zip(zn.chunks_exact_mut(b)) {
            let norm = zr.iter().map(|x| x * x).sum::<f32>().sqrt().max(EPS);
            for (o, &x) in out.iter_mut().zip(zr) {
                *o = x / norm;
            }
            r.push(norm);
        }
        let mut vn = vec![0f32; c];
        for row in v.chunks_exact(c) {
            for (s, &x) in vn.iter_mut().zip(row) {
                *s += x * x;
            }
        }
        for s in vn.iter_mut() {
            *s = s.sqrt();
        }
        let scale: Vec<f32> = g.iter().zip(&vn).map(|(g, n)| g / n).collect();
        for (wr, vr) in w.chunks_exact_mut(c).zip(v.chunks_exact(c)) {
            for ((o, &x), &s) in wr.iter_mut().zip(vr).zip(&scale) {
                *o = x * s;
            }
        }
        (r, vn)
    }

    /// Logits `[H, n, C]` into `y`.
    pub fn forward(&self, z: &[f32], v: &[f32], g: &[f32], y: &mut [f32]) {
        self.check(z, v, g);
        let (n, b, c) = (self.n, self.bottleneck, self.clusters);
        assert!(y.len() == self.heads * n * c, "heads cosine: output size");
        if n * c == 0 {
            return;
        }
        y.par_chunks_mut(n * c).enumerate().for_each(|(h, y)| {
            let (mut zn, mut w) = (vec![0f32; n * b], vec![0f32; b * c]);
            self.prepare(
                &z[h * n * b..(h + 1) * n * b],
                &v[h * b * c..(h + 1) * b * c],
                &g[h * c..(h + 1) * c],
                &mut zn,
                &mut w,
            );
            gemm_serial(n, b, c, &zn, false, &w, false, y, false);
        });
    }

    /// Gradients of `z`, `v`, `g` from the logits' gradient `dy`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        z: &[f32],
        v: &[f32],
        g: &[f32],
        dy: &[f32],
        dz: &mut [f32],
        dv: &mut [f32],
        dg: &mut [f32],
    ) {
        self.check(z, v, g);
        let (n, b, c) = (self.n, self.bottleneck, self.clusters);
        assert!(
            dy.len() == self.heads * n * c
                && dz.len() == z.len()
                && dv.len() == v.len()
                && dg.len() == g.len(),
            "heads cosine backward: sizes"
        );
        if self.heads == 0 {
            return;
        }
        dz.par_chunks_mut(n * b.max(1))
            .zip(dv.par_chunks_mut((b * c).max(1)))
            .zip(dg.par_chunks_mut(c.max(1)))
            .enumerate()
            .for_each(|(h, ((dz, dv), dg))| {
                let (zh, vh, gh) = (
                    &z[h * n * b..(h + 1) * n * b],
                    &v[h * b * c..(h + 1) * b * c],
                    &g[h * c..(h + 1) * c],
                );
                let dyh = &dy[h * n * c..(h + 1) * n * c];
                let (mut zn, mut w) = (vec![0f32; n * b], vec![0f32; b * c]);
                let (r, vn) = self.prepare(zh, vh, gh, &mut zn, &mut w);
                // d(zn) = dy · wᵀ, then through the row normalisation.
                gemm_serial(n, c, b, dyh, false, &w, true, dz, false);
                for i in 0..n {
                    let (d, u) = (&mut dz[i * b..(i + 1) * b], &zn[i * b..(i + 1) * b]);
                    let raw = zh[i * b..(i + 1) * b]
                        .iter()
                        .map(|x| x * x)
                        .sum::<f32>()
                        .sqrt();
                    if raw > EPS {
                        let dot: f32 = d.iter().zip(u).map(|(a, b)| a * b).sum();
                        for (d, &u) in d.iter_mut().zip(u) {
                            *d = (*d - u * dot) / r[i];
                        }
                    } else {
                        for d in d.iter_mut() {
                            *d /= EPS;
                        }
                    }
                }
                // d(w) = znᵀ · dy (into dv first), then through w = g ⊙ v/‖v‖.
                gemm_serial(b, n, c, &zn, true, dyh, false, dv, false);
                dg.fill(0.0);
                for (k, row) in dv.chunks_exact(c).enumerate() {
                    for j in 0..c {
                        dg[j] += row[j] * vh[k * c + j] / vn[j];
                    }
                }
                for (k, row) in dv.chunks_exact_mut(c).enumerate() {
                    for j in 0..c {
                        let u = vh[k * c + j] / vn[j];
                        row[j] = gh[j] / vn[j] * (row[j] - u * dg[j]);
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn naive(l: &HeadsCosine, z: &[f32], v: &[f32], g: &[f32]) -> Vec<f64> {
        let (n, b, c) = (l.n, l.bottleneck, l.clusters);
        let mut y = vec![0f64; l.heads * n * c];
        for h in 0..l.heads {
            for i in 0..n {
                let zr: Vec<f64> = (0..b).map(|k| f64::from(z[(h * n + i) * b + k])).collect();
                let norm = zr.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
                for j in 0..c {
                    let vn = (0..b)
                        .map(|k| f64::from(v[(h * b + k) * c + j]).powi(2))
                        .sum::<f64>()
                        .sqrt();
                    let s: f64 = (0..b)
                        .map(|k| zr[k] / norm * f64::from(v[(h * b + k) * c + j]))
                        .sum();
                    y[(h * n + i) * c + j] = s * f64::from(g[h * c + j]) / vn;
                }
            }
        }
        y
    }

    #[test]
    fn forward_and_gradients_match_loops_and_differences() {
        let l = HeadsCosine {
            heads: 3,
            n: 5,
            bottleneck: 4,
            clusters: 7,
        };
        let mut rng = Rng::new(3);
        let mut r = |k: usize| -> Vec<f32> { (0..k).map(|_| rng.normal() as f32).collect() };
        let (z, v, g, dy) = (r(3 * 5 * 4), r(3 * 4 * 7), r(3 * 7), r(3 * 5 * 7));
        let mut y = vec![0f32; dy.len()];
        l.forward(&z, &v, &g, &mut y);
        for (a, b) in y.iter().zip(naive(&l, &z, &v, &g)) {
            assert!((f64::from(*a) - b).abs() < 1e-5);
        }
        let (mut dz, mut dv, mut dg) = (
            vec![0f32; z.len()],
            vec![0f32; v.len()],
            vec![0f32; g.len()],
        );
        l.backward(&z, &v, &g, &dy, &mut dz, &mut dv, &mut dg);
        let loss = |z: &[f32], v: &[f32], g: &[f32]| -> f64 {
            naive(&l, z, v, g)
                .iter()
                .zip(&dy)
                .map(|(y, &d)| y * f64::from(d))
                .sum()
        };
        for (which, grad) in [(0, &dz), (1, &dv), (2, &dg)] {
            for (i, &got) in grad.iter().enumerate() {
                let (mut a, mut b) = (
                    [z.clone(), v.clone(), g.clone()],
                    [z.clone(), v.clone(), g.clone()],
                );
                a[which][i] += 1e-2;
                b[which][i] -= 1e-2;
                let want = (loss(&a[0], &a[1], &a[2]) - loss(&b[0], &b[1], &b[2])) / 2e-2;
                assert!(
                    (f64::from(got) - want).abs() < 2e-3 * (1.0 + want.abs()),
                    "{which} {i}: {got} vs {want}"
                );
            }
        }
    }
}

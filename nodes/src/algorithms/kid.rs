//! Kernel Inception Distance (Bińkowski et al. 2018) as torch-fidelity 0.4 computes it
//! (`metric_kid.py`): the unbiased MMD² estimate with the cubic polynomial kernel
//! k(x, y) = (γ x·y + c₀)^d, γ = 1/D by default, over random subsets of both sets; mean and
//! (population) std over the subsets.

/// The polynomial kernel's parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PolyKernel {
    /// Degree d (3).
    pub degree: i32,
    /// γ (None: 1/D).
    pub gamma: Option<f64>,
    /// c₀ (1).
    pub coef0: f64,
}

/// Unbiased MMD² between two equally sized sets of rows (`[m, d]` each), torch-fidelity's
/// `mmd2(..., mmd_est="unbiased")`: (ΣK_XX + ΣK_YY without diagonals) / (m(m−1)) − 2ΣK_XY / m².
/// The three Gram matrices are f32 matrix products, as torch-fidelity's float32 numpy
/// `matmul` (oneDNN, the run-time BLAS or the `gemm` crate); the kernel and the sums in f64.
pub fn mmd2_unbiased(x: &[f32], y: &[f32], d: usize, k: PolyKernel) -> f64 {
    let m = x.len() / d.max(1);
    let gamma = k.gamma.unwrap_or(1.0 / d as f64);
    let mut g = vec![0f32; m * m];
    // Σ over the Gram matrix's kernel values, optionally without the diagonal.
    let mut sum = |a: &[f32], b: &[f32], skip_diagonal: bool| -> f64 {
        cedm_kernels::cpu::gemm(m, d, m, a, false, b, true, &mut g, false);
        let mut s = 0.0;
        for (idx, &v) in g.iter().enumerate() {
            if !(skip_diagonal && idx / m == idx % m) {
                s += (v as f64 * gamma + k.coef0).powi(k.degree);
            }
        }
        s
    };
    let xx = sum(x, x, true);
    let yy = sum(y, y, true);
    let xy = sum(x, y, false);
    let m = m as f64;
    (xx + yy) / (m * (m - 1.0)) - 2.0 * xy / (m * m)
}

/// KID's per-subset estimates: for subset s (stream s of `seed`), `size` rows drawn without
/// replacement from each of `x` (`[nx, d]`) and `y` (`[ny, d]`), their [`mmd2_unbiased`].
pub fn subset_mmds(
    x: &[f32],
    y: &[f32],
    d: usize,
    subsets: usize,
    size: usize,
    kernel: PolyKernel,
    seed: u64,
) -> Vec<f64> {
    let (nx, ny) = (x.len() / d.max(1), y.len() / d.max(1));
    let pick = |f: &[f32], idx: Vec<usize>| -> Vec<f32> {
        idx.iter()
            .flat_map(|&i| f[i * d..(i + 1) * d].to_vec())
            .collect()
    };
    (0..subsets)
        .map(|s| {
            let mut r = cedm_kernels::rng::Rng::stream(seed, s as u64);
            let a = pick(x, r.choose(nx, size));
            let b = pick(y, r.choose(ny, size));
            mmd2_unbiased(&a, &b, d, kernel)
        })
        .collect()
}

/// Bootstrap replicates of KID ([`subset_mmds`] averaged): replicate b resamples the rows of
/// `x` with replacement (stream b of `seed ^ BOOT_STREAM`; `y`, the reference, is held fixed),
/// then draws the same subset positions as the estimate (common random numbers, so replicates
/// differ by the resample alone) and averages their [`mmd2_unbiased`]; each value equals
/// [`mmd2_unbiased`] on the resampled rows themselves.
///
/// How it is cheap: with w_s the counts of x's rows in subset s of a replicate, the x–x term of
/// subset s is w_sᵀ K w_s − w_sᵀ diag K (pairs of distinct positions) and the x–y term is
/// w_sᵀ h_s, where K = k(x, x) and h_s = k(x, y_s) 1 do not depend on the replicate. So
/// [`KidBootstrap::new`] computes K (`nx²` f64 held) and every h_s once, and a replicate is one
/// f64 GEMM K·W over the subsets' count matrix W (`nx × subsets`) and dot products.
pub struct KidBootstrap {
    nx: usize,
    /// k(x, x), `[nx, nx]`.
    kxx: Vec<f64>,
    /// Per subset: positions into the resample.
    positions: Vec<Vec<usize>>,
    /// h_s, `[subsets, nx]`.
    h: Vec<f64>,
    /// The y–y sums of the subsets (no replicate changes them).
    yy: Vec<f64>,
    size: usize,
    seed: u64,
}

impl KidBootstrap {
    /// Prepare the replicates of the KID of `x` (`[nx, d]`) against `y` (`[ny, d]`) computed
    /// by [`subset_mmds`] with the same `subsets`, `size`, `kernel` and `seed`.
    pub fn new(
        x: &[f32],
        y: &[f32],
        d: usize,
        subsets: usize,
        size: usize,
        kernel: PolyKernel,
        seed: u64,
    ) -> KidBootstrap {
        use rayon::prelude::*;
        let (nx, ny) = (x.len() / d.max(1), y.len() / d.max(1));
        let gamma = kernel.gamma.unwrap_or(1.0 / d as f64);
        let k = |g: f32| (g as f64 * gamma + kernel.coef0).powi(kernel.degree);
        let mut g = vec![0f32; nx * nx];
        cedm_kernels::cpu::gemm(nx, d, nx, x, false, x, true, &mut g, false);
        let kxx: Vec<f64> = g.par_iter().map(|&v| k(v)).collect();
        drop(g);
        let mut gxy = vec![0f32; nx * ny];
        cedm_kernels::cpu::gemm(nx, d, ny, x, false, y, true, &mut gxy, false);
        let draws: Vec<(Vec<usize>, Vec<f64>, f64)> = (0..subsets)
            .into_par_iter()
            .map(|s| {
                let mut r = cedm_kernels::rng::Rng::stream(seed, s as u64);
                let a = r.choose(nx, size);
                let b = r.choose(ny, size);
                let h: Vec<f64> = (0..nx)
                    .map(|i| b.iter().map(|&c| k(gxy[i * ny + c])).sum())
                    .collect();
                let rows: Vec<f32> = b
                    .iter()
                    .flat_map(|&i| y[i * d..(i + 1) * d].iter().copied())
                    .collect();
                let mut gy = vec![0f32; size * size];
                cedm_kernels::cpu::gemm_serial(
                    size, d, size, &rows, false, &rows, true, &mut gy, false,
                );
                let yy: f64 = gy
                    .iter()
                    .enumerate()
                    .filter(|(idx, _)| idx / size != idx % size)
                    .map(|(_, &v)| k(v))
                    .sum();
                (a, h, yy)
            })
            .collect();
        let mut positions = Vec::with_capacity(subsets);
        let mut h = Vec::with_capacity(subsets * nx);
        let mut yy = Vec::with_capacity(subsets);
        for (a, hs, y2) in draws {
            positions.push(a);
            h.extend(hs);
            yy.push(y2);
        }
        KidBootstrap {
            nx,
            kxx,
            positions,
            h,
            yy,
            size,
            seed,
        }
    }

    /// Replicate `b`.
    pub fn replicate(&self, b: usize) -> f64 {
        let (nx, subsets) = (self.nx, self.positions.len());
        let mut r = cedm_kernels::rng::Rng::stream(self.seed ^ BOOT_STREAM, b as u64);
        let resample: Vec<usize> = (0..nx).map(|_| r.below(nx as u64) as usize).collect();
        // W^T, [subsets, nx]: the counts of each row in each subset.
        let mut wt = vec![0f64; subsets * nx];
        for (s, a) in self.positions.iter().enumerate() {
            for &p in a {
                wt[s * nx + resample[p]] += 1.0;
            }
        }
        // (K W)^T = W^T K (K symmetric), [subsets, nx].
        let mut kw = vec![0f64; subsets * nx];
        cedm_kernels::cpu::gemm(
            subsets, nx, nx, &wt, false, &self.kxx, false, &mut kw, false,
        );
        let m = self.size as f64;
        let mut total = 0.0;
        for s in 0..subsets {
            let w = &wt[s * nx..(s + 1) * nx];
            let (mut xx, mut xy) = (0.0, 0.0);
            for (i, &c) in w.iter().enumerate() {
                if c != 0.0 {
                    xx += c * (kw[s * nx + i] - self.kxx[i * nx + i]);
                    xy += c * self.h[s * nx + i];
                }
            }
            total += (xx + self.yy[s]) / (m * (m - 1.0)) - 2.0 * xy / (m * m);
        }
        total / subsets.max(1) as f64
    }
}

/// The stream family of the bootstrap's resamples (apart from the subsets' streams).
const BOOT_STREAM: u64 = 0xB007_5742_4B49_4400;

/// Mean and population std of a list.
pub fn mean_std_population(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(n: usize, d: usize, seed: u64, shift: f32) -> Vec<f32> {
        let mut r = cedm_kernels::rng::Rng::new(seed);
        (0..n * d).map(|_| r.normal() as f32 + shift).collect()
    }

    /// A replicate is KID on the resampled rows themselves, with the estimate's subsets.
    #[test]
    fn a_kid_replicate_is_kid_of_the_resampled_rows() {
        let (nx, ny, d, size, subsets, seed) = (60, 50, 16, 20, 4, 7);
        let x = feats(nx, d, 1, 0.0);
        let y = feats(ny, d, 2, 0.3);
        let k = PolyKernel {
            degree: 3,
            gamma: None,
            coef0: 1.0,
        };
        let boot = KidBootstrap::new(&x, &y, d, subsets, size, k, seed);
        let reps: Vec<f64> = (0..3).map(|b| boot.replicate(b)).collect();
        for (b, rep) in reps.iter().enumerate() {
            let mut r = cedm_kernels::rng::Rng::stream(seed ^ BOOT_STREAM, b as u64);
            let resample: Vec<usize> = (0..nx).map(|_| r.below(nx as u64) as usize).collect();
            let mut total = 0.0;
            for s in 0..subsets {
                let mut r = cedm_kernels::rng::Rng::stream(seed, s as u64);
                let a = r.choose(nx, size);
                let bb = r.choose(ny, size);
                let xa: Vec<f32> = a
                    .iter()
                    .flat_map(|&p| x[resample[p] * d..(resample[p] + 1) * d].to_vec())
                    .collect();
                let yb: Vec<f32> = bb
                    .iter()
                    .flat_map(|&i| y[i * d..(i + 1) * d].to_vec())
                    .collect();
                total += mmd2_unbiased(&xa, &yb, d, k);
            }
            let want = total / subsets as f64;
            // The f32 dot products come from GEMMs of different shapes, which may round
            // differently (≈1e-8 here).
            assert!(
                (rep - want).abs() <= 1e-6 * want.abs().max(1e-3),
                "{b}: {rep} vs {want}"
            );
        }
        // Different resamples, different replicates.
        assert!(reps.windows(2).any(|w| w[0] != w[1]));
    }
}

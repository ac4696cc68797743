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

/// Mean and population std of a list.
pub fn mean_std_population(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

//! Dense float64 linear algebra for the Fréchet distance: pivoted Cholesky, Householder
//! tridiagonalisation and implicit QL eigenvalues of symmetric matrices (products through
//! [`crate::cpu::gemm`]). Row-major throughout.

use rayon::prelude::*;

use crate::cpu::gemm;

/// Pivoted Cholesky of a symmetric positive semi-definite `a` (n×n): returns `l` (n×r,
/// row-major) with `a ≈ l·lᵀ`, stopping when the largest remaining pivot is below
/// `n · ε · max(diag)` (LAPACK `dpstrf`'s default tolerance). r is the numerical rank.
pub fn pivoted_cholesky(a: &[f64], n: usize) -> (Vec<f64>, usize) {
    assert_eq!(a.len(), n * n);
    let mut d: Vec<f64> = (0..n).map(|i| a[i * n + i]).collect();
    let max_diag = d.iter().cloned().fold(0.0f64, f64::max);
    let tol = n as f64 * f64::EPSILON * max_diag;
    // Columns of L stored as rows of `cols` (r×n) while building: column k is contiguous.
    let mut cols: Vec<Vec<f64>> = Vec::new();
    let mut done = vec![false; n];
    // Rows of L so far, as n vectors growing by one entry per step, for the dot products.
    let mut rows: Vec<Vec<f64>> = vec![Vec::new(); n];
    loop {
        let Some((j, &dj)) = d
            .iter()
            .enumerate()
            .filter(|(i, _)| !done[*i])
            .max_by(|x, y| x.1.total_cmp(y.1))
        else {
            break;
        };
        if dj.is_nan() || dj <= tol {
            break;
        }
        done[j] = true;
        let ljj = dj.sqrt();
        let rj = rows[j].clone();
        let col: Vec<f64> = (0..n)
            .into_par_iter()
            .map(|i| {
                if i == j {
                    ljj
                } else if done[i] {
                    0.0
                } else {
                    let s: f64 = rows[i].iter().zip(&rj).map(|(x, y)| x * y).sum();
                    (a[i * n + j] - s) / ljj
                }
            })
            .collect();
        for i in 0..n {
            if !done[i] {
                d[i] -= col[i] * col[i];
            }
            rows[i].push(col[i]);
        }
        cols.push(col);
        if cols.len() == n {
            break;
        }
    }
    let r = cols.len();
    let mut l = vec![0f64; n * r];
    for (k, col) in cols.iter().enumerate() {
        for i in 0..n {
            l[i * r + k] = col[i];
        }
    }
    (l, r)
}

/// Reduce a symmetric matrix (n×n, both triangles stored; destroyed) to tridiagonal form by
/// Householder reflections. Returns (diagonal, off-diagonal of length n−1).
pub fn tridiagonalize(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n);
    let mut diag = vec![0f64; n];
    let mut off = vec![0f64; n.saturating_sub(1)];
    let mut v = vec![0f64; n];
    let mut p = vec![0f64; n];
    for k in 0..n.saturating_sub(1) {
        diag[k] = a[k * n + k];
        let m0 = k + 1;
        // x = A[m0.., k]
        let xnorm2: f64 = (m0..n).map(|i| a[i * n + k] * a[i * n + k]).sum();
        let tail2: f64 = (m0 + 1..n).map(|i| a[i * n + k] * a[i * n + k]).sum();
        let x0 = a[m0 * n + k];
        if tail2 == 0.0 {
            off[k] = x0;
            continue;
        }
        let alpha = -x0.signum() * xnorm2.sqrt();
        for i in m0..n {
            v[i] = a[i * n + k];
        }
        v[m0] -= alpha;
        let vnorm2 = xnorm2 - x0 * x0 + v[m0] * v[m0];
        let tau = 2.0 / vnorm2;
        off[k] = alpha;
        // p = tau · A22 · v (rows in parallel)
        {
            let vv = &v[m0..n];
            let a_ro = &*a;
            p[m0..n].par_iter_mut().enumerate().for_each(|(ii, pi)| {
                let row = &a_ro[(m0 + ii) * n + m0..(m0 + ii + 1) * n];
                *pi = tau * row.iter().zip(vv).map(|(x, y)| x * y).sum::<f64>();
            });
        }
        let kk = 0.5 * tau * (m0..n).map(|i| v[i] * p[i]).sum::<f64>();
        for i in m0..n {
            p[i] -= kk * v[i]; // p is now w
        }
        // A22 -= v wᵀ + w vᵀ
        {
            let (vv, ww) = (&v[m0..n], &p[m0..n]);
            a[m0 * n..]
                .par_chunks_mut(n)
                .enumerate()
                .for_each(|(ii, row)| {
                    let (vi, wi) = (vv[ii], ww[ii]);
                    for (j, x) in row[m0..n].iter_mut().enumerate() {
                        *x -= vi * ww[j] + wi * vv[j];
                    }
                });
        }
    }
    if n > 0 {
        diag[n - 1] = a[(n - 1) * n + n - 1];
    }
    (diag, off)
}

/// Eigenvalues of a symmetric tridiagonal matrix (implicit QL with Wilkinson shifts).
///
/// # Errors
/// When an eigenvalue does not converge in 100 iterations (only with non-finite input).
pub fn tridiagonal_eigenvalues(diag: &[f64], off: &[f64]) -> Result<Vec<f64>, String> {
    let n = diag.len();
    let mut d = diag.to_vec();
    let mut e = vec![0f64; n];
    e[..off.len()].copy_from_slice(off);
    for l in 0..n {
        let mut iter = 0;
        loop {
            let mut m = l;
            while m + 1 < n {
                let dd = d[m].abs() + d[m + 1].abs();
                if e[m].abs() <= f64::EPSILON * dd {
                    break;
                }
                m += 1;
            }
            if m == l {
                break;
            }
            iter += 1;
            if iter > 100 {
                return Err(format!("eigenvalue {l} did not converge"));
            }
            let mut g = (d[l + 1] - d[l]) / (2.0 * e[l]);
            let mut r = g.hypot(1.0);
            g = d[m] - d[l] + e[l] / (g + r.copysign(g));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut deflated = false;
            let mut i = m;
            while i > l {
                i -= 1;
                let f = s * e[i];
                let b = c * e[i];
                r = f.hypot(g);
                e[i + 1] = r;
                if r == 0.0 {
                    d[i + 1] -= p;
                    e[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                g = d[i + 1] - p;
                r = (d[i] - g) * s + 2.0 * c * b;
                p = s * r;
                d[i + 1] = g + p;
                g = c * r - b;
            }
            if deflated {
                continue;
            }
            d[l] -= p;
            e[l] = g;
            e[m] = 0.0;
        }
    }
    Ok(d)
}

/// Eigenvalues of a symmetric matrix (n×n, row-major; copied).
///
/// # Errors
/// Non-convergence (non-finite input).
pub fn symmetric_eigenvalues(a: &[f64], n: usize) -> Result<Vec<f64>, String> {
    let mut m = a.to_vec();
    let (d, e) = tridiagonalize(&mut m, n);
    tridiagonal_eigenvalues(&d, &e)
}

/// `tr √(a·b)` for symmetric positive semi-definite `a`, `b` (n×n): with `a = l·lᵀ` (pivoted
/// Cholesky, rank r), the non-zero eigenvalues of `a·b` are those of the symmetric r×r matrix
/// `lᵀ·b·l`, so the trace is the sum of their square roots (tiny negative round-off clipped
/// to 0). This avoids the general (non-symmetric) matrix square root and its complex round-off.
///
/// # Errors
/// Non-convergence (non-finite input).
pub fn trace_sqrt_product(a: &[f64], b: &[f64], n: usize) -> Result<f64, String> {
    let (l, r) = pivoted_cholesky(a, n);
    if r == 0 {
        return Ok(0.0);
    }
    let mut bl = vec![0f64; n * r];
    gemm(n, n, r, b, false, &l, false, &mut bl, false);
    let mut m = vec![0f64; r * r];
    gemm(r, n, r, &l, true, &bl, false, &mut m, false);
    for i in 0..r {
        for j in 0..i {
            let s = 0.5 * (m[i * r + j] + m[j * r + i]);
            m[i * r + j] = s;
            m[j * r + i] = s;
        }
    }
    let ev = symmetric_eigenvalues(&m, r)?;
    Ok(ev.iter().map(|&x| x.max(0.0).sqrt()).sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_psd(n: usize, rank: usize, seed: u64) -> Vec<f64> {
        let mut s = seed;
        let mut next = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let x: Vec<f64> = (0..n * rank).map(|_| next()).collect();
        let mut a = vec![0f64; n * n];
        gemm(n, rank, n, &x, false, &x, true, &mut a, false);
        a
    }

    #[test]
    fn cholesky_reconstructs_and_finds_rank() {
        for (n, rank) in [(7, 7), (20, 5), (33, 40)] {
            let a = random_psd(n, rank, 3);
            let (l, r) = pivoted_cholesky(&a, n);
            assert_eq!(r, rank.min(n), "n={n} rank={rank}");
            let mut back = vec![0f64; n * n];
            gemm(n, r, n, &l, false, &l, true, &mut back, false);
            let err = a
                .iter()
                .zip(&back)
                .map(|(x, y)| (x - y).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "{err}");
        }
    }

    #[test]
    fn eigenvalues_match_known_spectra() {
        // diag(1..n) rotated by a Householder reflection keeps its spectrum.
        let n = 12;
        let v: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin() + 0.1).collect();
        let vv: f64 = v.iter().map(|x| x * x).sum();
        let h: Vec<f64> = (0..n * n)
            .map(|ij| f64::from(u8::from(ij / n == ij % n)) - 2.0 * v[ij / n] * v[ij % n] / vv)
            .collect();
        let mut dm = vec![0f64; n * n];
        for i in 0..n {
            dm[i * n + i] = (i + 1) as f64;
        }
        let mut t = vec![0f64; n * n];
        gemm(n, n, n, &h, false, &dm, false, &mut t, false);
        let mut a = vec![0f64; n * n];
        gemm(n, n, n, &t, false, &h, true, &mut a, false);
        let mut ev = symmetric_eigenvalues(&a, n).unwrap();
        ev.sort_by(f64::total_cmp);
        for (i, e) in ev.iter().enumerate() {
            assert!((e - (i + 1) as f64).abs() < 1e-12, "{ev:?}");
        }
        // A tridiagonal with a known closed form: 2 on the diagonal, −1 off it.
        let m = 9;
        let mut ev = tridiagonal_eigenvalues(&vec![2.0; m], &vec![-1.0; m - 1]).unwrap();
        ev.sort_by(f64::total_cmp);
        for (k, e) in ev.iter().enumerate() {
            let want = 2.0 - 2.0 * (std::f64::consts::PI * (k + 1) as f64 / (m + 1) as f64).cos();
            assert!((e - want).abs() < 1e-12);
        }
    }

    #[test]
    fn trace_sqrt_of_commuting_matrices() {
        // a = diag(a_i), b = diag(b_i): tr √(ab) = Σ √(a_i b_i); one zero in a.
        let n = 5;
        let (da, db) = ([4.0, 9.0, 0.0, 1.0, 2.0], [1.0, 4.0, 7.0, 16.0, 8.0]);
        let mut a = vec![0f64; n * n];
        let mut b = vec![0f64; n * n];
        for i in 0..n {
            a[i * n + i] = da[i];
            b[i * n + i] = db[i];
        }
        let t = trace_sqrt_product(&a, &b, n).unwrap();
        let want: f64 = da
            .iter()
            .zip(&db)
            .map(|(x, y): (&f64, &f64)| (x * y).sqrt())
            .sum();
        assert!((t - want).abs() < 1e-12, "{t} vs {want}");
    }
}

//! The Fréchet distance between two Gaussians ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂). The
//! trace of the square root is computed from symmetric eigenvalues
//! ([`cedm_kernels::linalg::trace_sqrt_product`]) rather than scipy's general `sqrtm`: the same
//! value for positive semi-definite Σ (agreement with scipy is a parity test), without complex
//! round-off. When the result is not finite, it is retried with 1e-6 added to both diagonals, as
//! dgm-eval does.

use cedm_engine::NodeError;
use cedm_kernels::linalg::trace_sqrt_product;

use crate::artifacts::stats::Stats;

/// The Fréchet distance between two Gaussians (see the module docs).
///
/// # Errors
/// Different dimensions, or non-finite statistics even after the eps retry.
pub fn frechet_distance(a: &Stats, b: &Stats) -> Result<f64, NodeError> {
    if a.d != b.d {
        return Err(NodeError::msg(format!(
            "statistics of different dimensions: {} and {}",
            a.d, b.d
        )));
    }
    let d = a.d;
    let diff: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let (ta, tb) = (trace(&a.sigma), trace(&b.sigma));
    let covmean = match trace_sqrt_product(&a.sigma, &b.sigma, d) {
        Ok(t) if t.is_finite() => t,
        _ => {
            let eps = 1e-6;
            let add = |s: &[f64]| {
                let mut s = s.to_vec();
                (0..d).for_each(|i| s[i * d + i] += eps);
                s
            };
            trace_sqrt_product(&add(&a.sigma), &add(&b.sigma), d).map_err(NodeError::msg)?
        }
    };
    let fd = diff + ta + tb - 2.0 * covmean;
    if !fd.is_finite() {
        return Err(NodeError::msg(
            "the Fréchet distance is not finite (NaN or infinite features?)",
        ));
    }
    Ok(fd)
}

/// A fixed reference Gaussian prepared for many Fréchet distances against (weighted) subsets
/// of one sample set — the repeats, bootstrap resamples, FD∞ points and per-cluster subsets of
/// `metrics/fd`. With Σ_r = L·Lᵀ (pivoted Cholesky, rank r, once) and the weighted centred
/// samples X (m rows, Σ_s = XᵀX), the non-zero eigenvalues of Σ_s·Σ_r are those of
/// (XL)ᵀ(XL) — or of (XL)(XL)ᵀ, m×m, when fewer rows than r — so each distance costs
/// m·d·r + min(m, r)³ instead of a d×d covariance and its d³ square root.
pub struct PreparedReference {
    d: usize,
    mu: Vec<f64>,
    trace: f64,
    /// L, d×r row-major.
    l: Vec<f64>,
    r: usize,
    stats: Stats,
}

impl PreparedReference {
    /// Prepare `reference`.
    pub fn new(reference: &Stats) -> PreparedReference {
        let d = reference.d;
        let (l, r) = cedm_kernels::linalg::pivoted_cholesky(&reference.sigma, d);
        PreparedReference {
            d,
            mu: reference.mu.clone(),
            trace: (0..d).map(|i| reference.sigma[i * d + i]).sum(),
            l,
            r,
            stats: reference.clone(),
        }
    }

    /// Dimension.
    pub fn dim(&self) -> usize {
        self.d
    }

    /// The Fréchet distance between the reference and the Gaussian of the rows `rows` of
    /// `feats` (`[n, d]`), row i counted `w` times (`(i, w)`, w ≥ 1; a bootstrap resample's
    /// multiplicities, or 1 each): μ = Σwx/W, Σ = Σw(x−μ)(x−μ)ᵀ/(W−1), as [`Stats`].
    ///
    /// # Errors
    /// Fewer than 2 rows in all, or non-finite values.
    pub fn distance(&self, feats: &[f32], rows: &[(usize, u32)]) -> Result<f64, NodeError> {
        use rayon::prelude::*;
        let (d, r) = (self.d, self.r);
        let total: f64 = rows.iter().map(|&(_, w)| f64::from(w)).sum();
        if total < 2.0 {
            return Err(NodeError::msg(format!(
                "a Fréchet distance needs at least 2 samples, got {total}"
            )));
        }
        let mut mu = vec![0f64; d];
        for &(i, w) in rows {
            let w = f64::from(w);
            mu.iter_mut()
                .zip(&feats[i * d..(i + 1) * d])
                .for_each(|(m, &x)| *m += w * f64::from(x));
        }
        mu.iter_mut().for_each(|m| *m /= total);
        let diff: f64 = mu
            .iter()
            .zip(&self.mu)
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        let m = rows.len();
        let small = m <= r;
        // Y = X·L in chunks of rows; kept whole (m×r) when m ≤ r, else G = YᵀY accumulated.
        let mut y_all = if small { vec![0f64; m * r] } else { Vec::new() };
        let mut g = vec![0f64; if small { m * m } else { r * r }];
        let mut trace_s = 0.0;
        let chunk = 1024;
        let mut x = vec![0f64; chunk.min(m) * d];
        let mut y = vec![0f64; chunk.min(m) * r];
        for (ci, block) in rows.chunks(chunk).enumerate() {
            let b = block.len();
            x[..b * d]
                .par_chunks_mut(d)
                .zip(block)
                .for_each(|(xr, &(i, w))| {
                    let s = (f64::from(w) / (total - 1.0)).sqrt();
                    xr.iter_mut()
                        .zip(&feats[i * d..(i + 1) * d])
                        .zip(&mu)
                        .for_each(|((o, &v), m)| *o = s * (f64::from(v) - m));
                });
            trace_s += x[..b * d].iter().map(|v| v * v).sum::<f64>();
            if r == 0 {
                continue;
            }
            let out = if small {
                &mut y_all[ci * chunk * r..(ci * chunk + b) * r]
            } else {
                &mut y[..b * r]
            };
            cedm_kernels::cpu::gemm(b, d, r, &x[..b * d], false, &self.l, false, out, false);
            if !small {
                cedm_kernels::cpu::gemm(
                    r,
                    b,
                    r,
                    &y[..b * r],
                    true,
                    &y[..b * r],
                    false,
                    &mut g,
                    true,
                );
            }
        }
        let covmean = if r == 0 {
            0.0
        } else {
            let k = if small {
                cedm_kernels::cpu::gemm(m, r, m, &y_all, false, &y_all, true, &mut g, false);
                m
            } else {
                r
            };
            sum_sqrt_eigenvalues(&mut g, k)
        };
        let fd = diff + trace_s + self.trace - 2.0 * covmean;
        if fd.is_finite() {
            return Ok(fd);
        }
        // The slow path, with its eps retry.
        let data: Vec<f32> = rows
            .iter()
            .flat_map(|&(i, w)| std::iter::repeat_n(&feats[i * d..(i + 1) * d], w as usize))
            .flatten()
            .copied()
            .collect();
        let s = Stats::from_features(&data, total as usize, d)?;
        frechet_distance(&s, &self.stats)
    }
}

/// Σ √max(λ, 0) over the eigenvalues λ of the k×k Gram matrix `g`, symmetrised first (NaN when
/// the eigensolver fails): tr √(Σ_s Σ_r) from Y = (X − μ)L, whichever of YYᵀ and YᵀY `g` is.
fn sum_sqrt_eigenvalues(g: &mut [f64], k: usize) -> f64 {
    for i in 0..k {
        for j in 0..i {
            let s = 0.5 * (g[i * k + j] + g[j * k + i]);
            g[i * k + j] = s;
            g[j * k + i] = s;
        }
    }
    cedm_kernels::linalg::symmetric_eigenvalues(g, k)
        .map(|ev| ev.iter().map(|&v| v.max(0.0).sqrt()).sum::<f64>())
        .unwrap_or(f64::NAN)
}

/// A sample set projected once onto a [`PreparedReference`]'s factor L: z_i = x_iᵀL (n×r, f64).
/// Centring is linear, Y = (X − μ)L = Z − 1·(μᵀL) with μᵀL = Σwz/W, so the distance of any
/// weighted subset of the same rows ([`PreparedReference::distance_projected`]: bootstrap
/// replicates) costs m·(d + r) + min(m, r)²·max(m, r) instead of the m·d·r of
/// [`PreparedReference::distance`].
pub struct Projection {
    n: usize,
    z: Vec<f64>,
}

impl PreparedReference {
    /// Project the first `n` rows of `feats` (`[n, d]`).
    pub fn project(&self, feats: &[f32], n: usize) -> Projection {
        let (d, r) = (self.d, self.r);
        let x: Vec<f64> = feats[..n * d].iter().map(|&v| f64::from(v)).collect();
        let mut z = vec![0f64; n * r];
        if r > 0 && n > 0 {
            cedm_kernels::cpu::gemm(n, d, r, &x, false, &self.l, false, &mut z, false);
        }
        Projection { n, z }
    }

    /// [`Self::distance`] of the weighted rows `rows` of `feats`, whose projection is `proj`
    /// (from [`Self::project`] of the same `feats`): the same value to round-off.
    ///
    /// # Errors
    /// Fewer than 2 rows in all, a row outside the projection, or non-finite values.
    pub fn distance_projected(
        &self,
        feats: &[f32],
        proj: &Projection,
        rows: &[(usize, u32)],
    ) -> Result<f64, NodeError> {
        let (d, r) = (self.d, self.r);
        let total: f64 = rows.iter().map(|&(_, w)| f64::from(w)).sum();
        if total < 2.0 {
            return Err(NodeError::msg(format!(
                "a Fréchet distance needs at least 2 samples, got {total}"
            )));
        }
        if let Some(&(i, _)) = rows.iter().find(|&&(i, _)| i >= proj.n) {
            return Err(NodeError::msg(format!(
                "row {i} is outside the {} projected rows",
                proj.n
            )));
        }
        let (mut mu, mut mu_l) = (vec![0f64; d], vec![0f64; r]);
        for &(i, w) in rows {
            let w = f64::from(w);
            mu.iter_mut()
                .zip(&feats[i * d..(i + 1) * d])
                .for_each(|(m, &x)| *m += w * f64::from(x));
            mu_l.iter_mut()
                .zip(&proj.z[i * r..(i + 1) * r])
                .for_each(|(m, &z)| *m += w * z);
        }
        mu.iter_mut().for_each(|m| *m /= total);
        mu_l.iter_mut().for_each(|m| *m /= total);
        let diff: f64 = mu
            .iter()
            .zip(&self.mu)
            .map(|(x, y)| (x - y) * (x - y))
            .sum();
        let mut trace_s = 0.0;
        for &(i, w) in rows {
            let ss: f64 = feats[i * d..(i + 1) * d]
                .iter()
                .zip(&mu)
                .map(|(&x, m)| (f64::from(x) - m).powi(2))
                .sum();
            trace_s += f64::from(w) * ss;
        }
        trace_s /= total - 1.0;
        let m = rows.len();
        let covmean = if r == 0 {
            0.0
        } else {
            let mut y = vec![0f64; m * r];
            for (yr, &(i, w)) in y.chunks_mut(r).zip(rows) {
                let s = (f64::from(w) / (total - 1.0)).sqrt();
                yr.iter_mut()
                    .zip(&proj.z[i * r..(i + 1) * r])
                    .zip(&mu_l)
                    .for_each(|((o, &z), ml)| *o = s * (z - ml));
            }
            let k = m.min(r);
            let mut g = vec![0f64; k * k];
            if m <= r {
                cedm_kernels::cpu::gemm(m, r, m, &y, false, &y, true, &mut g, false);
            } else {
                cedm_kernels::cpu::gemm(r, m, r, &y, true, &y, false, &mut g, false);
            }
            sum_sqrt_eigenvalues(&mut g, k)
        };
        let fd = diff + trace_s + self.trace - 2.0 * covmean;
        if fd.is_finite() {
            Ok(fd)
        } else {
            self.distance(feats, rows)
        }
    }
}

/// A bias-corrected percentile bootstrap interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower end.
    pub low: f64,
    /// Upper end.
    pub high: f64,
    /// Standard deviation of the replicates.
    pub std: f64,
    /// The bootstrap estimate of the bias, mean(replicates) − estimate.
    pub bias: f64,
}

/// The bootstrap interval of the mean FD over `runs` (row ranges of `feats`), whose value on
/// the full runs is `estimate`: `resamples` replicates, each run resampled with replacement
/// from its own rows (stream `b` of `seed` for replicate b). An FD replicate is biased upward —
/// a resample repeats about a third of its rows, which inflates the covariance term — so the
/// interval is the replicates' (1 ± `confidence`)/2 quantiles shifted down by the bootstrap
/// bias estimate mean(FD*) − FD (Efron & Tibshirani 1993, §10.6): the sampling spread of FD at
/// this N around the estimate, the reference held fixed. `tick(b)` after each replicate
/// returns false to stop (then `Ok(None)`); no resamples gives `Ok(None)` too.
///
/// # Errors
/// What [`PreparedReference::distance`] returns.
pub fn bootstrap_mean(
    prep: &PreparedReference,
    feats: &[f32],
    runs: &[std::ops::Range<usize>],
    estimate: f64,
    resamples: usize,
    seed: u64,
    confidence: f64,
    mut tick: impl FnMut(usize) -> bool,
) -> Result<Option<Interval>, NodeError> {
    let used = runs.iter().map(|r| r.end).max().unwrap_or(0);
    let proj = prep.project(feats, if resamples > 0 { used } else { 0 });
    let mut boots = Vec::with_capacity(resamples);
    for b in 0..resamples {
        let mut rng = cedm_kernels::rng::Rng::stream(seed, b as u64);
        let mut sum = 0.0;
        for r in runs {
            let mut counts = std::collections::BTreeMap::<usize, u32>::new();
            for _ in 0..r.len() {
                *counts
                    .entry(r.start + rng.below(r.len() as u64) as usize)
                    .or_default() += 1;
            }
            let rows: Vec<(usize, u32)> = counts.into_iter().collect();
            sum += prep.distance_projected(feats, &proj, &rows)?;
        }
        boots.push(sum / runs.len().max(1) as f64);
        if !tick(b + 1) {
            return Ok(None);
        }
    }
    Ok(bias_corrected_interval(&boots, estimate, confidence))
}

/// The percentile interval of bootstrap replicates `boots` of a statistic whose value is
/// `estimate`, shifted by the bootstrap estimate of the bias, mean(boots) − estimate (Efron &
/// Tibshirani 1993, §10.6); None without replicates.
pub fn bias_corrected_interval(boots: &[f64], estimate: f64, confidence: f64) -> Option<Interval> {
    if boots.is_empty() {
        return None;
    }
    let alpha = (1.0 - confidence) / 2.0;
    let m = boots.iter().sum::<f64>() / boots.len() as f64;
    let std = (boots.iter().map(|v| (v - m).powi(2)).sum::<f64>()
        / (boots.len().max(2) - 1) as f64)
        .sqrt();
    let bias = m - estimate;
    Some(Interval {
        low: quantile(boots, alpha) - bias,
        high: quantile(boots, 1.0 - alpha) - bias,
        std,
        bias,
    })
}

/// FD∞ (Chong & Forsyth 2020, `calculate_FID_infinity`): FD on random subsets (without
/// replacement, stream `u64::MAX` of `seed`) of the first `n` rows at `points` sizes
/// `linspace(min, n, points)` truncated to integers, then the intercept of the least-squares
/// line of FD against 1/N. Returns (FD∞, the (N, FD) points).
///
/// # Errors
/// `min` above `n`, or what [`PreparedReference::distance`] returns.
pub fn fd_infinity(
    prep: &PreparedReference,
    feats: &[f32],
    n: usize,
    points: usize,
    min: usize,
    seed: u64,
) -> Result<(f64, Vec<(usize, f64)>), NodeError> {
    if min > n || min < 2 || points < 2 {
        return Err(NodeError::msg(format!(
            "FD∞ needs 2 ≤ smallest subset ({min}) ≤ samples ({n}) and at least 2 sizes ({points})"
        )));
    }
    let mut rng = cedm_kernels::rng::Rng::stream(seed, u64::MAX);
    let mut pts = Vec::with_capacity(points);
    for i in 0..points {
        let size = (min as f64 + (n - min) as f64 * i as f64 / (points - 1) as f64) as usize;
        let rows: Vec<(usize, u32)> = rng.choose(n, size).into_iter().map(|j| (j, 1)).collect();
        pts.push((size, prep.distance(feats, &rows)?));
    }
    let x: Vec<f64> = pts.iter().map(|&(s, _)| 1.0 / s as f64).collect();
    let y: Vec<f64> = pts.iter().map(|&(_, v)| v).collect();
    Ok((linear_fit(&x, &y).0, pts))
}

/// `resamples` bootstrap replicates `f(b)` computed in parallel, in chunks so that `tick(done)`
/// (progress; false to stop, then `Ok(None)`) runs on the calling thread between them. Each
/// replicate draws from its own stream, so the result does not depend on the thread count.
///
/// # Errors
/// The first error of a replicate.
pub fn par_replicates<T: Send>(
    resamples: usize,
    mut tick: impl FnMut(usize) -> bool,
    f: impl Fn(usize) -> Result<T, NodeError> + Sync,
) -> Result<Option<Vec<T>>, NodeError> {
    use rayon::prelude::*;
    let chunk = rayon::current_num_threads().max(1) * 4;
    let mut out = Vec::with_capacity(resamples);
    while out.len() < resamples {
        let (r0, r1) = (out.len(), (out.len() + chunk).min(resamples));
        let done: Vec<T> = (r0..r1).into_par_iter().map(&f).collect::<Result<_, _>>()?;
        out.extend(done);
        if !tick(r1) {
            return Ok(None);
        }
    }
    Ok(Some(out))
}

/// The bootstrap interval of FD∞ ([`fd_infinity`] of the first `n` rows, value `estimate`):
/// `resamples` replicates, each the first `n` rows resampled with replacement (stream `b` of
/// `seed`), then the same fit over subsets of that resample (drawn without replacement from
/// its `n` draws, so a size-N point is a size-N sample of the resample), its intercept. The
/// replicates run in parallel, each from its own stream, so the result does not depend on the
/// thread count. Bias-corrected like [`bootstrap_mean`]; `Ok(None)` without resamples or when
/// `tick` (as [`par_replicates`]) says stop.
///
/// # Errors
/// What [`fd_infinity`] returns.
#[allow(clippy::too_many_arguments)]
pub fn bootstrap_infinity(
    prep: &PreparedReference,
    feats: &[f32],
    n: usize,
    points: usize,
    min: usize,
    estimate: f64,
    resamples: usize,
    seed: u64,
    confidence: f64,
    tick: impl FnMut(usize) -> bool,
) -> Result<Option<Interval>, NodeError> {
    if resamples == 0 {
        return Ok(None);
    }
    if min > n || min < 2 || points < 2 {
        return Err(NodeError::msg(format!(
            "FD∞ needs 2 ≤ smallest subset ({min}) ≤ samples ({n}) and at least 2 sizes ({points})"
        )));
    }
    let proj = prep.project(feats, n);
    let boots = par_replicates(resamples, tick, |b| {
        let mut rng = cedm_kernels::rng::Rng::stream(seed, b as u64);
        let draws: Vec<usize> = (0..n).map(|_| rng.below(n as u64) as usize).collect();
        let (mut x, mut y) = (Vec::with_capacity(points), Vec::with_capacity(points));
        for i in 0..points {
            let size = (min as f64 + (n - min) as f64 * i as f64 / (points - 1) as f64) as usize;
            let mut counts = std::collections::BTreeMap::<usize, u32>::new();
            for j in rng.choose(n, size) {
                *counts.entry(draws[j]).or_default() += 1;
            }
            let rows: Vec<(usize, u32)> = counts.into_iter().collect();
            x.push(1.0 / size as f64);
            y.push(prep.distance_projected(feats, &proj, &rows)?);
        }
        Ok(linear_fit(&x, &y).0)
    })?;
    Ok(boots.and_then(|b| bias_corrected_interval(&b, estimate, confidence)))
}

/// Bootstrap replicates of Fréchet distances of several disjoint row groups against their own
/// references (`metrics/fd`'s per-cluster distances): for group g, `resamples` replicates of
/// its rows resampled with replacement (stream `b` of `seed` draws every group of replicate b,
/// in order). Replicates run in parallel; the result does not depend on the thread count.
/// Returns `boots[g][b]`, or `Ok(None)` when `tick` (as [`par_replicates`]) says stop.
///
/// # Errors
/// What [`PreparedReference::distance_projected`] returns.
pub fn bootstrap_groups(
    groups: &[(&PreparedReference, &[usize])],
    feats: &[f32],
    resamples: usize,
    seed: u64,
    tick: impl FnMut(usize) -> bool,
) -> Result<Option<Vec<Vec<f64>>>, NodeError> {
    let d = groups.first().map_or(0, |g| g.0.dim());
    // Each group's rows gathered and projected once onto its own reference.
    let local: Vec<(Vec<f32>, Projection)> = groups
        .iter()
        .map(|(prep, rows)| {
            let data: Vec<f32> = rows
                .iter()
                .flat_map(|&i| feats[i * d..(i + 1) * d].iter().copied())
                .collect();
            let proj = prep.project(&data, rows.len());
            (data, proj)
        })
        .collect();
    let reps = par_replicates(resamples, tick, |b| {
        let mut rng = cedm_kernels::rng::Rng::stream(seed, b as u64);
        let mut out = Vec::with_capacity(groups.len());
        for ((prep, rows), (data, proj)) in groups.iter().zip(&local) {
            let m = rows.len();
            let mut counts = std::collections::BTreeMap::<usize, u32>::new();
            for _ in 0..m {
                *counts.entry(rng.below(m as u64) as usize).or_default() += 1;
            }
            let rows: Vec<(usize, u32)> = counts.into_iter().collect();
            out.push(prep.distance_projected(data, proj, &rows)?);
        }
        Ok(out)
    })?;
    let Some(reps) = reps else {
        return Ok(None);
    };
    Ok(Some(
        (0..groups.len())
            .map(|g| reps.iter().map(|r| r[g]).collect())
            .collect(),
    ))
}

/// Ordinary least squares of `y` on `x`: (intercept, slope).
pub fn linear_fit(x: &[f64], y: &[f64]) -> (f64, f64) {
    let n = x.len().max(1) as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let sxy: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let sxx: f64 = x.iter().map(|a| (a - mx) * (a - mx)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (my - slope * mx, slope)
}

/// The `q`-quantile of `v` with numpy's default (linear) interpolation.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feats(n: usize, d: usize, seed: u64, shift: f32) -> Vec<f32> {
        let mut r = cedm_kernels::rng::Rng::new(seed);
        (0..n * d)
            .map(|i| r.normal() as f32 * (1.0 + (i % d) as f32 * 0.1) + shift)
            .collect()
    }

    #[test]
    fn prepared_reference_agrees_with_the_direct_distance() {
        let d = 24;
        let reference = Stats::from_features(&feats(300, d, 1, 0.0), 300, d).unwrap();
        let prep = PreparedReference::new(&reference);
        // Fewer rows than d (the m×m path) and more (the r×r path), plain and weighted.
        // Two algorithms in f64 (a full eigendecomposition against a low-rank one): they agree
        // to ~1e-9 relative, the last digits depending on the GEMM provider's summation order.
        for n in [10, 200] {
            let x = feats(n, d, 2, 0.3);
            let direct =
                frechet_distance(&Stats::from_features(&x, n, d).unwrap(), &reference).unwrap();
            let rows: Vec<(usize, u32)> = (0..n).map(|i| (i, 1)).collect();
            let fast = prep.distance(&x, &rows).unwrap();
            assert!(
                (fast - direct).abs() < 1e-7 * direct.max(1.0),
                "{fast} {direct}"
            );
            // Multiplicities equal repeated rows.
            let w: Vec<(usize, u32)> = (0..n).map(|i| (i, 1 + (i % 3) as u32)).collect();
            let rep: Vec<f32> = w
                .iter()
                .flat_map(|&(i, k)| std::iter::repeat_n(&x[i * d..(i + 1) * d], k as usize))
                .flatten()
                .copied()
                .collect();
            let total = rep.len() / d;
            let direct =
                frechet_distance(&Stats::from_features(&rep, total, d).unwrap(), &reference)
                    .unwrap();
            let fast = prep.distance(&x, &w).unwrap();
            assert!(
                (fast - direct).abs() < 1e-7 * direct.max(1.0),
                "{fast} {direct}"
            );
            // The projected route: the same distance for any weighted subset of the rows (to the
            // round-off of √λ for the near-zero eigenvalues, as above).
            let proj = prep.project(&x, n);
            for rows in [&w, &rows, &w[..n / 2].to_vec()] {
                let (a, b) = (
                    prep.distance(&x, rows).unwrap(),
                    prep.distance_projected(&x, &proj, rows).unwrap(),
                );
                assert!((a - b).abs() < 1e-7 * a.max(1.0), "{a} {b}");
            }
            assert!(prep.distance_projected(&x, &proj, &[(n, 2)]).is_err());
        }
    }

    #[test]
    fn infinity_and_group_bootstraps_hold_their_estimates_whatever_the_threads() {
        let d = 8;
        let reference = Stats::from_features(&feats(400, d, 1, 0.0), 400, d).unwrap();
        let prep = PreparedReference::new(&reference);
        let n = 120;
        let x = feats(n, d, 3, 0.5);
        let (v, _) = fd_infinity(&prep, &x, n, 5, 20, 0).unwrap();
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                let inf = bootstrap_infinity(&prep, &x, n, 5, 20, v, 40, 0, 0.9, |_| true)
                    .unwrap()
                    .unwrap();
                let (a, b): (Vec<usize>, Vec<usize>) = ((0..60).collect(), (60..n).collect());
                let groups = [(&prep, a.as_slice()), (&prep, b.as_slice())];
                let g = bootstrap_groups(&groups, &x, 40, 0, |_| true)
                    .unwrap()
                    .unwrap();
                (inf, g)
            })
        };
        let (one, two) = (run(1), run(3));
        assert_eq!(one.0, two.0);
        assert_eq!(one.1, two.1);
        let (inf, g) = one;
        assert!(inf.low < v && v < inf.high && inf.std > 0.0, "{inf:?} {v}");
        assert_eq!((g.len(), g[0].len()), (2, 40));
        // Each group's replicates scatter around its own distance (biased up, as any FD's).
        for (k, rows) in [(0usize, 0..60), (1, 60..n)] {
            let r: Vec<(usize, u32)> = rows.map(|i| (i, 1)).collect();
            let est = prep.distance(&x, &r).unwrap();
            let c = bias_corrected_interval(&g[k], est, 0.9).unwrap();
            assert!(c.low < est && est < c.high && c.bias > 0.0, "{c:?} {est}");
        }
        // A stop request between chunks ends the bootstrap with nothing.
        assert!(
            bootstrap_infinity(&prep, &x, n, 5, 20, v, 40, 0, 0.9, |_| false)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn quantile_and_fit_follow_numpy_and_least_squares() {
        assert_eq!(quantile(&[3.0, 1.0, 2.0, 4.0], 0.5), 2.5);
        assert_eq!(quantile(&[1.0, 2.0], 0.025), 1.025);
        let (a, b) = linear_fit(&[1.0, 2.0, 3.0], &[3.0, 5.0, 7.0]);
        assert!((a - 1.0).abs() < 1e-12 && (b - 2.0).abs() < 1e-12);
    }
}

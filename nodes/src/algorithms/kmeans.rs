//! k-means (C-EDM's k-means label source), as scikit-learn's
//! `KMeans(algorithm="lloyd")` defines it: greedy k-means++ initialisation (2 + ⌊ln k⌋ local
//! trials), Lloyd iterations until the labels stop changing or the total squared centre shift
//! falls below `tol × mean feature variance`, empty clusters moved to the points farthest from
//! their centres, the best of `n_init` runs by inertia.
//!
//! The iterations are exact Lloyd steps accelerated with Elkan's bounds (Elkan 2003, "Using the
//! triangle inequality to accelerate k-means"): a point keeps an upper bound to its centre and a
//! lower bound to every other centre, moved by the centres' shifts each iteration; a distance is
//! computed only when the bounds cannot exclude that centre. The first assignment is one matrix
//! product per chunk; centre sums are updated from the points that moved. Results equal plain
//! Lloyd's (up to float ties). k-means++ reads each point once per step for all candidates (that
//! step is bound by memory).

use cedm_engine::NodeError;
use cedm_kernels::cpu::gemm;
use cedm_kernels::rng::Rng;
use rayon::prelude::*;

use crate::artifacts::features::Features;

/// A k-means result.
#[derive(Clone, Debug)]
pub struct KMeansResult {
    /// Cluster of each point.
    pub labels: Vec<u32>,
    /// Centres `[k, d]`.
    pub centers: Vec<f32>,
    /// Σ squared distances to the assigned centres.
    pub inertia: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Whether it converged before the cap.
    pub converged: bool,
    /// Point–centre distances computed per iteration (n·k without the bounds).
    pub recomputed: Vec<usize>,
}

fn sq_norms(x: &[f32], d: usize) -> Vec<f32> {
    x.par_chunks(d)
        .map(|r| r.iter().map(|v| v * v).sum())
        .collect()
}

/// Squared distances of points `rows` (`[r, d]`) to centres (`[k, d]`): `[r, k]`, clamped at 0.
fn dist_sq(rows: &[f32], rnorm: &[f32], centers: &[f32], cnorm: &[f32], d: usize, out: &mut [f32]) {
    let (r, k) = (rnorm.len(), cnorm.len());
    gemm(r, d, k, rows, false, centers, true, out, false);
    out.par_chunks_mut(k).enumerate().for_each(|(i, row)| {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (rnorm[i] - 2.0 * *v + cnorm[j]).max(0.0);
        }
    });
}

/// Squared distances of every point to a few candidate rows (`[t, d]`): `[t, n]`. Each point's
/// row is read once for all candidates (the step is bound by memory, not arithmetic).
fn dist_to_few(x: &[f32], xn: &[f32], d: usize, cand: &[f32], cn: &[f32], out: &mut [f32]) {
    let t = cn.len();
    let n = xn.len();
    let per: Vec<Vec<f32>> = x
        .par_chunks(d * 1024)
        .enumerate()
        .map(|(ci, xs)| {
            let rows = xs.len() / d;
            let mut o = vec![0f32; rows * t];
            let mut tmp = vec![0f32; t];
            for r in 0..rows {
                cedm_kernels::cpu::dots(&xs[r * d..(r + 1) * d], cand, &mut tmp);
                let i = ci * 1024 + r;
                for c in 0..t {
                    o[r * t + c] = (xn[i] - 2.0 * tmp[c] + cn[c]).max(0.0);
                }
            }
            o
        })
        .collect();
    let mut i = 0;
    for block in per {
        let rows = block.len() / t;
        for r in 0..rows {
            for c in 0..t {
                out[c * n + i + r] = block[r * t + c];
            }
        }
        i += rows;
    }
}

/// Greedy k-means++ (scikit-learn's `_kmeans_plusplus`).
fn kmeans_pp(x: &[f32], xn: &[f32], n: usize, d: usize, k: usize, rng: &mut Rng) -> Vec<f32> {
    let trials = 2 + (k as f64).ln() as usize;
    let mut centers = vec![0f32; k * d];
    let first = rng.below(n as u64) as usize;
    centers[..d].copy_from_slice(&x[first * d..(first + 1) * d]);
    let mut closest = vec![0f32; n];
    dist_to_few(
        x,
        xn,
        d,
        &x[first * d..(first + 1) * d],
        &xn[first..=first],
        &mut closest,
    );
    let mut pot: f64 = closest.iter().map(|&v| f64::from(v)).sum();
    let mut cand_d = vec![0f32; trials * n];
    let mut cum = vec![0f64; n];
    for c in 1..k {
        // Candidates sampled with probability ∝ D² (searchsorted on the cumulative sum).
        let mut acc = 0f64;
        for (cu, &v) in cum.iter_mut().zip(&closest) {
            acc += f64::from(v);
            *cu = acc;
        }
        let ids: Vec<usize> = (0..trials)
            .map(|_| {
                let r = rng.uniform() * pot;
                cum.partition_point(|&v| v < r).min(n - 1)
            })
            .collect();
        let mut cand = vec![0f32; trials * d];
        let mut cn = vec![0f32; trials];
        for (t, &id) in ids.iter().enumerate() {
            cand[t * d..(t + 1) * d].copy_from_slice(&x[id * d..(id + 1) * d]);
            cn[t] = xn[id];
        }
        dist_to_few(x, xn, d, &cand, &cn, &mut cand_d);
        let pots: Vec<f64> = cand_d
            .par_chunks_mut(n)
            .map(|row| {
                let mut s = 0f64;
                for (v, &cl) in row.iter_mut().zip(&closest) {
                    *v = v.min(cl);
                    s += f64::from(*v);
                }
                s
            })
            .collect();
        let best = pots
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap_or(0);
        pot = pots[best];
        closest.copy_from_slice(&cand_d[best * n..(best + 1) * n]);
        centers[c * d..(c + 1) * d].copy_from_slice(&x[ids[best] * d..(ids[best] + 1) * d]);
    }
    centers
}

/// Exact distance between a point and a centre from their squared norms and a dot product.
#[inline]
fn dist(x: &[f32], xn: f32, c: &[f32], cn: f32) -> f64 {
    f64::from((xn - 2.0 * cedm_kernels::cpu::dot(x, c) + cn).max(0.0)).sqrt()
}

/// One k-means run from given centres: exact Lloyd iterations with Elkan's bounds (Elkan 2003,
/// "Using the triangle inequality to accelerate k-means"): per point an upper bound to its own
/// centre and a lower bound to every other; a distance is computed only when the bounds cannot
/// rule the centre out. The first assignment is one chunked matrix product; the centre sums are
/// updated incrementally from the points that moved.
fn lloyd(
    x: &[f32],
    xn: &[f32],
    n: usize,
    d: usize,
    mut centers: Vec<f32>,
    max_iter: usize,
    tol: f64,
) -> KMeansResult {
    let k = centers.len() / d;
    let mut cnorm = sq_norms(&centers, d);
    let mut labels = vec![0u32; n];
    let mut upper = vec![0f64; n];
    let mut lower = vec![0f32; n * k];
    // Initial assignment: all distances.
    const CHUNK: usize = 2048;
    let mut dd = vec![0f32; CHUNK * k];
    for (ci, rows) in x.chunks(CHUNK * d).enumerate() {
        let r = rows.len() / d;
        dist_sq(
            rows,
            &xn[ci * CHUNK..ci * CHUNK + r],
            &centers,
            &cnorm,
            d,
            &mut dd[..r * k],
        );
        lower[ci * CHUNK * k..(ci * CHUNK + r) * k]
            .par_chunks_mut(k)
            .zip(labels[ci * CHUNK..ci * CHUNK + r].par_iter_mut())
            .zip(upper[ci * CHUNK..ci * CHUNK + r].par_iter_mut())
            .zip(dd[..r * k].par_chunks(k))
            .for_each(|(((lo, l), u), row)| {
                let mut best = (f32::INFINITY, 0usize);
                for (j, &v) in row.iter().enumerate() {
                    lo[j] = v.sqrt();
                    if v < best.0 {
                        best = (v, j);
                    }
                }
                *l = best.1 as u32;
                *u = f64::from(best.0).sqrt();
            });
    }
    let mut counts = vec![0usize; k];
    let mut sums = vec![0f64; k * d];
    for (i, row) in x.chunks_exact(d).enumerate() {
        let l = labels[i] as usize;
        counts[l] += 1;
        for (s, &v) in sums[l * d..(l + 1) * d].iter_mut().zip(row) {
            *s += f64::from(v);
        }
    }
    let mut recomputed = vec![n * k];
    let mut converged = false;
    let mut iterations = 0;
    for _ in 0..max_iter {
        iterations += 1;
        // M-step.
        let mut new_centers = centers.clone();
        for c in 0..k {
            if counts[c] > 0 {
                for j in 0..d {
                    new_centers[c * d + j] = (sums[c * d + j] / counts[c] as f64) as f32;
                }
            }
        }
        // Empty clusters take the points farthest from their centres (scikit-learn's
        // `_relocate_empty_clusters`), which leave their old clusters.
        let empty: Vec<usize> = (0..k).filter(|&c| counts[c] == 0).collect();
        if !empty.is_empty() {
            let mut far: Vec<(f64, usize)> = (0..n)
                .into_par_iter()
                .map(|i| {
                    let c = labels[i] as usize;
                    (
                        dist(
                            &x[i * d..(i + 1) * d],
                            xn[i],
                            &centers[c * d..(c + 1) * d],
                            cnorm[c],
                        ),
                        i,
                    )
                })
                .collect();
            far.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            for (&c, &(_, i)) in empty.iter().zip(&far) {
                let old = labels[i] as usize;
                if counts[old] > 1 {
                    counts[old] -= 1;
                    for j in 0..d {
                        sums[old * d + j] -= f64::from(x[i * d + j]);
                        new_centers[old * d + j] = (sums[old * d + j] / counts[old] as f64) as f32;
                    }
                    new_centers[c * d..(c + 1) * d].copy_from_slice(&x[i * d..(i + 1) * d]);
                    counts[c] = 1;
                    for j in 0..d {
                        sums[c * d + j] = f64::from(x[i * d + j]);
                    }
                    labels[i] = c as u32;
                    upper[i] = 0.0;
                }
            }
        }
        let shift: Vec<f64> = (0..k)
            .map(|c| {
                new_centers[c * d..(c + 1) * d]
                    .iter()
                    .zip(&centers[c * d..(c + 1) * d])
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum::<f64>()
                    .sqrt()
            })
            .collect();
        centers = new_centers;
        cnorm = sq_norms(&centers, d);
        // Centre-centre distances and s(c) = ½ min over other centres.
        let mut cc = vec![0f32; k * k];
        dist_sq(&centers, &cnorm, &centers, &cnorm, d, &mut cc);
        let half: Vec<f32> = cc.iter().map(|v| 0.5 * v.sqrt()).collect();
        let s_half: Vec<f64> = (0..k)
            .map(|c| {
                (0..k)
                    .filter(|&j| j != c)
                    .map(|j| f64::from(half[c * k + j]))
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        let shift32: Vec<f32> = shift.iter().map(|&v| v as f32).collect();
        // E-step: per point, Elkan's tests; a small relative margin guards against f32 rounding.
        const M: f64 = 1.0 - 1e-5;
        let results: Vec<(u32, usize)> = labels
            .par_iter()
            .zip(upper.par_iter_mut())
            .zip(lower.par_chunks_mut(k))
            .enumerate()
            .map(|(i, ((&l, u), lo))| {
                for (lv, &sh) in lo.iter_mut().zip(&shift32) {
                    *lv = (*lv - sh).max(0.0);
                }
                let mut a = l as usize;
                *u += shift[a];
                let mut computed = 0;
                if *u <= s_half[a] * M {
                    return (a as u32, computed);
                }
                let xi = &x[i * d..(i + 1) * d];
                let mut tight = false;
                for c in 0..k {
                    if c == a || *u <= f64::from(lo[c]) * M || *u <= f64::from(half[a * k + c]) * M
                    {
                        continue;
                    }
                    if !tight {
                        *u = dist(xi, xn[i], &centers[a * d..(a + 1) * d], cnorm[a]);
                        lo[a] = *u as f32;
                        computed += 1;
                        tight = true;
                        if *u <= f64::from(lo[c]) * M || *u <= f64::from(half[a * k + c]) * M {
                            continue;
                        }
                    }
                    let dc = dist(xi, xn[i], &centers[c * d..(c + 1) * d], cnorm[c]);
                    computed += 1;
                    lo[c] = dc as f32;
                    if dc < *u {
                        a = c;
                        *u = dc;
                    }
                }
                (a as u32, computed)
            })
            .collect();
        let mut changed = false;
        let mut n_comp = 0;
        for (i, &(a, comp)) in results.iter().enumerate() {
            n_comp += comp;
            let old = labels[i];
            if a != old {
                changed = true;
                let (o, nw) = (old as usize, a as usize);
                counts[o] -= 1;
                counts[nw] += 1;
                let row = &x[i * d..(i + 1) * d];
                for j in 0..d {
                    let v = f64::from(row[j]);
                    sums[o * d + j] -= v;
                    sums[nw * d + j] += v;
                }
                labels[i] = a;
            }
        }
        recomputed.push(n_comp);
        if !changed {
            converged = true;
            break;
        }
        let shift_tot: f64 = shift.iter().map(|s| s * s).sum();
        if shift_tot <= tol {
            converged = true;
            break;
        }
    }
    let inertia: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let c = labels[i] as usize;
            x[i * d..(i + 1) * d]
                .iter()
                .zip(&centers[c * d..(c + 1) * d])
                .map(|(a, b)| f64::from(a - b).powi(2))
                .sum::<f64>()
        })
        .sum();
    KMeansResult {
        labels,
        centers,
        inertia,
        iterations,
        converged,
        recomputed,
    }
}

/// k-means on `f` (see the module docs).
///
/// # Errors
/// When k is 0 or exceeds the number of points.
pub fn kmeans(
    f: &Features,
    k: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
) -> Result<KMeansResult, NodeError> {
    let (n, d) = (f.n, f.d);
    if k == 0 || k > n {
        return Err(NodeError::msg(format!(
            "k = {k} needs 1 ≤ k ≤ number of points ({n})"
        )));
    }
    let x = &f.data;
    let xn = sq_norms(x, d);
    // scikit-learn's tolerance: tol × mean over features of their variance.
    let mut mean = vec![0f64; d];
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= n as f64);
    let mut var = 0f64;
    for row in x.chunks_exact(d) {
        for (m, &v) in mean.iter().zip(row) {
            var += (f64::from(v) - m).powi(2);
        }
    }
    let tol = tol * var / (n * d) as f64;
    let mut best: Option<KMeansResult> = None;
    for run in 0..n_init.max(1) {
        let mut rng = Rng::stream(seed, run as u64);
        let init = kmeans_pp(x, &xn, n, d, k, &mut rng);
        let r = lloyd(x, &xn, n, d, init, max_iter, tol);
        if best.as_ref().is_none_or(|b| r.inertia < b.inertia) {
            best = Some(r);
        }
    }
    best.ok_or_else(|| NodeError::msg("no k-means run"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain Lloyd from the same initial centres (no bounds), for comparison.
    fn naive(x: &[f32], n: usize, d: usize, mut c: Vec<f32>, iters: usize) -> Vec<u32> {
        let k = c.len() / d;
        let mut labels = vec![0u32; n];
        for _ in 0..=iters {
            for i in 0..n {
                let mut best = (f64::INFINITY, 0);
                for j in 0..k {
                    let dist: f64 = (0..d)
                        .map(|t| f64::from(x[i * d + t] - c[j * d + t]).powi(2))
                        .sum();
                    if dist < best.0 {
                        best = (dist, j);
                    }
                }
                labels[i] = best.1 as u32;
            }
            let mut sums = vec![0f64; k * d];
            let mut cnt = vec![0usize; k];
            for i in 0..n {
                let l = labels[i] as usize;
                cnt[l] += 1;
                for t in 0..d {
                    sums[l * d + t] += f64::from(x[i * d + t]);
                }
            }
            for j in 0..k {
                if cnt[j] > 0 {
                    for t in 0..d {
                        c[j * d + t] = (sums[j * d + t] / cnt[j] as f64) as f32;
                    }
                }
            }
        }
        labels
    }

    fn blobs(n: usize, d: usize, k: usize, seed: u64) -> Vec<f32> {
        let mut r = Rng::new(seed);
        let centers: Vec<f32> = (0..k * d).map(|_| (r.normal() * 10.0) as f32).collect();
        (0..n)
            .flat_map(|i| {
                let c = i % k;
                let cs = centers[c * d..(c + 1) * d].to_vec();
                cs.into_iter()
                    .map(|v| v + r.normal() as f32)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn bounded_lloyd_equals_plain_lloyd() {
        let (n, d, k) = (600, 7, 6);
        let x = blobs(n, d, k, 1);
        let xn = sq_norms(&x, d);
        let mut rng = Rng::new(3);
        let init = kmeans_pp(&x, &xn, n, d, k, &mut rng);
        let r = lloyd(&x, &xn, n, d, init.clone(), 100, 0.0);
        let want = naive(&x, n, d, init, r.iterations);
        assert_eq!(r.labels, want);
        assert!(r.converged);
        // Later iterations compute only a few distances.
        assert!(
            r.recomputed.last().copied().unwrap_or(n * k) < n * k / 10,
            "{:?}",
            r.recomputed
        );
    }

    #[test]
    fn recovers_separated_blobs_and_keeps_no_cluster_empty() {
        let (n, d, k) = (900, 5, 9);
        let x = blobs(n, d, k, 2);
        let f = Features { n, d, data: x };
        let r = kmeans(&f, k, 3, 300, 1e-4, 0).unwrap();
        let mut counts = vec![0usize; k];
        for &l in &r.labels {
            counts[l as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        // Points generated from one blob share a cluster.
        for b in 0..k {
            let first = r.labels[b];
            let same = (0..n)
                .filter(|i| i % k == b)
                .filter(|&i| r.labels[i] == first)
                .count();
            assert!(same >= n / k - 2, "blob {b}: {same}");
        }
    }
}

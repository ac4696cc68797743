//! k-means (C-EDM's k-means label source), as scikit-learn's
//! `KMeans(algorithm="lloyd")` defines it: greedy k-means++ initialisation (2 + ⌊ln k⌋ local
//! trials), Lloyd iterations until the labels stop changing or the total squared centre shift
//! falls below `tol × mean feature variance`, empty clusters moved to the points farthest from
//! their centres, the best of `n_init` runs by inertia.
//!
//! The iterations are exact Lloyd steps accelerated with Hamerly's bounds (Hamerly 2010): a point
//! keeps an upper bound to its centre and one lower bound to all others, moved by the centres'
//! shifts each iteration; the points the bounds cannot settle are assigned by one chunked matrix
//! product over their gathered rows. Centre sums are updated from the points that moved. Results
//! equal plain Lloyd's (up to float ties). k-means++ reads each point once per step for all candidates (that
//! step is bound by memory).

use rayon::prelude::*;

use crate::cpu::gemm;
use crate::rng::Rng;

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
    // One product X·Cᵀ ([n, t]): it reads X once, at memory speed.
    let mut dots = vec![0f32; n * t];
    gemm(n, d, t, x, false, cand, true, &mut dots, false);
    out[..t * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(c, row)| {
            for (i, o) in row.iter_mut().enumerate() {
                *o = (xn[i] - 2.0 * dots[i * t + c] + cn[c]).max(0.0);
            }
        });
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

/// The nearest and second-nearest centre of the points `idx`, by chunked matrix products over
/// their gathered rows: `labels[i]`, `upper[i]` (distance to the nearest), `lower[i]` (to the
/// second nearest). Ties go to the lower centre index.
#[allow(clippy::too_many_arguments)]
fn assign_exact(
    x: &[f32],
    xn: &[f32],
    d: usize,
    centers: &[f32],
    cnorm: &[f32],
    idx: &[usize],
    labels: &mut [u32],
    upper: &mut [f64],
    lower: &mut [f64],
) {
    let k = cnorm.len();
    const CHUNK: usize = 2048;
    let mut rows = vec![0f32; CHUNK.min(idx.len()) * d];
    let mut rn = vec![0f32; CHUNK.min(idx.len())];
    let mut dd = vec![0f32; CHUNK.min(idx.len()) * k];
    for chunk in idx.chunks(CHUNK) {
        let r = chunk.len();
        rows[..r * d]
            .par_chunks_mut(d)
            .zip(chunk.par_iter())
            .for_each(|(dst, &i)| dst.copy_from_slice(&x[i * d..(i + 1) * d]));
        for (v, &i) in rn.iter_mut().zip(chunk) {
            *v = xn[i];
        }
        dist_sq(
            &rows[..r * d],
            &rn[..r],
            centers,
            cnorm,
            d,
            &mut dd[..r * k],
        );
        let best: Vec<(u32, f64, f64)> = dd[..r * k]
            .par_chunks(k)
            .map(|row| {
                let (mut b1, mut b2) = ((f32::INFINITY, 0usize), f32::INFINITY);
                for (j, &v) in row.iter().enumerate() {
                    if v < b1.0 {
                        b2 = b1.0;
                        b1 = (v, j);
                    } else if v < b2 {
                        b2 = v;
                    }
                }
                (b1.1 as u32, f64::from(b1.0).sqrt(), f64::from(b2).sqrt())
            })
            .collect();
        for (&i, &(l, u, lo)) in chunk.iter().zip(&best) {
            labels[i] = l;
            upper[i] = u;
            lower[i] = lo;
        }
    }
}

/// Exact distance between a point and a centre from their squared norms and a dot product.
#[inline]
fn dist(x: &[f32], xn: f32, c: &[f32], cn: f32) -> f64 {
    f64::from((xn - 2.0 * crate::cpu::dot(x, c) + cn).max(0.0)).sqrt()
}

/// One k-means run from given centres: exact Lloyd iterations with Hamerly's bounds (Hamerly
/// 2010, "Making k-means even faster"): per point an upper bound to its centre and a lower bound
/// to every other, moved by the centres' shifts each iteration. A point is skipped when its upper
/// bound is at most the larger of its lower bound and half the distance from its centre to the
/// nearest other centre; the points left are assigned exactly, their rows gathered for one
/// chunked matrix product with all centres (a distance at a time would be several times slower,
/// and early on nearly every point is left). The centre sums are updated from the points that
/// moved.
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
    let mut lower = vec![0f64; n];
    let all: Vec<usize> = (0..n).collect();
    assign_exact(
        x,
        xn,
        d,
        &centers,
        &cnorm,
        &all,
        &mut labels,
        &mut upper,
        &mut lower,
    );
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
        // s(c) = ½ the distance from c to its nearest other centre.
        let mut cc = vec![0f32; k * k];
        dist_sq(&centers, &cnorm, &centers, &cnorm, d, &mut cc);
        let s_half: Vec<f64> = (0..k)
            .map(|c| {
                (0..k)
                    .filter(|&j| j != c)
                    .map(|j| 0.5 * f64::from(cc[c * k + j]).sqrt())
                    .fold(f64::INFINITY, f64::min)
            })
            .collect();
        // The largest and second-largest shift: a point's lower bound (to every centre but its
        // own) falls by at most the largest shift among the other centres.
        let (mut m1, mut m1c, mut m2) = (0f64, usize::MAX, 0f64);
        for (c, &sh) in shift.iter().enumerate() {
            if sh > m1 {
                m2 = m1;
                m1 = sh;
                m1c = c;
            } else if sh > m2 {
                m2 = sh;
            }
        }
        // E-step: move the bounds, keep the points they settle (a small relative margin guards
        // against f32 rounding), assign the others exactly.
        const M: f64 = 1.0 - 1e-5;
        let old = labels.clone();
        let todo: Vec<usize> = upper
            .par_iter_mut()
            .zip(lower.par_iter_mut())
            .zip(labels.par_iter())
            .enumerate()
            .filter_map(|(i, ((u, lo), &l))| {
                let a = l as usize;
                *u += shift[a];
                *lo -= if a == m1c { m2 } else { m1 };
                (*u > lo.max(s_half[a]) * M).then_some(i)
            })
            .collect();
        assign_exact(
            x,
            xn,
            d,
            &centers,
            &cnorm,
            &todo,
            &mut labels,
            &mut upper,
            &mut lower,
        );
        let mut changed = false;
        for i in todo.iter().copied().filter(|&i| labels[i] != old[i]) {
            changed = true;
            let (o, nw) = (old[i] as usize, labels[i] as usize);
            counts[o] -= 1;
            counts[nw] += 1;
            let row = &x[i * d..(i + 1) * d];
            for j in 0..d {
                let v = f64::from(row[j]);
                sums[o * d + j] -= v;
                sums[nw * d + j] += v;
            }
        }
        recomputed.push(todo.len() * k);
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

/// k-means of the `n` rows of `x` (`[n, d]`, see the module docs).
///
/// # Errors
/// When k is 0 or exceeds the number of points.
#[allow(clippy::too_many_arguments)]
pub fn kmeans(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    n_init: usize,
    max_iter: usize,
    tol: f64,
    seed: u64,
) -> Result<KMeansResult, String> {
    assert!(x.len() >= n * d, "kmeans: {} values for {n}×{d}", x.len());
    if k == 0 || k > n {
        return Err(format!("k = {k} needs 1 ≤ k ≤ number of points ({n})"));
    }
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
    best.ok_or_else(|| "no k-means run".to_string())
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
        let r = kmeans(&x, n, d, k, 3, 300, 1e-4, 0).unwrap();
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

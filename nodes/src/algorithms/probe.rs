//! A k-nearest-neighbour classifier on features, as scikit-learn's
//! `KNeighborsClassifier(n_neighbors=k)` (uniform weights, Euclidean distance) fitted on
//! L2-normalised features — so neighbours by cosine similarity — with its tie rule: among
//! classes with the most votes, the smallest label (`scipy.stats.mode`). The probe of
//! `metrics/probe` (classification accuracy of samples, CAS-style). [`Logistic`] is the
//! other probe: scikit-learn's standardised logistic regression.

use rayon::prelude::*;

/// Label values as class ids: the sorted distinct values of `truth` → `0..classes` (the EDM's
/// ids for the same labels).
pub fn class_ids(truth: &[i64]) -> std::collections::BTreeMap<i64, i64> {
    let mut values = truth.to_vec();
    values.sort_unstable();
    values.dedup();
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (v, i as i64))
        .collect()
}

/// The majority class of each cluster among the rows it holds (`clusters[i]` ≥ 0 and the class
/// id `truth[i]` of row i; a tie goes to the smallest class; a cluster without rows to class 0):
/// what a C-EDM sample conditioned on that cluster is checked against.
pub fn cluster_majority(clusters: &[i64], truth: &[i64], classes: usize) -> Vec<i64> {
    let k = clusters.iter().copied().max().map_or(0, |m| m.max(-1) + 1) as usize;
    let mut counts = vec![vec![0usize; classes]; k];
    for (&c, &t) in clusters.iter().zip(truth) {
        if c >= 0 && (t as usize) < classes {
            counts[c as usize][t as usize] += 1;
        }
    }
    counts
        .iter()
        .map(|row| {
            let best = row.iter().copied().max().unwrap_or(0);
            row.iter().position(|&v| v == best).unwrap_or(0) as i64
        })
        .collect()
}

/// The conditional samples (condition ≥ 0; −1 is unconditional) and the target each is checked
/// against, `target_of[condition]` — its class, or its cluster's majority class (`target` names
/// which, `ids` what the condition ids are, for the error).
///
/// # Errors
/// No conditional sample, or a condition outside `target_of`.
pub fn scored_targets(
    conditions: &[i64],
    target_of: &[i64],
    target: &str,
    ids: &str,
) -> Result<(Vec<usize>, Vec<i64>), String> {
    let scored: Vec<usize> = (0..conditions.len())
        .filter(|&i| conditions[i] >= 0)
        .collect();
    if scored.is_empty() {
        return Err(
            "every sample is unconditional (condition −1): a probe checks conditional samples"
                .into(),
        );
    }
    if let Some(&bad) = scored
        .iter()
        .find(|&&i| conditions[i] as usize >= target_of.len())
    {
        return Err(format!(
            "condition {} of sample {bad} is not one of the {} {}: is `clusters` the EDM's label source?",
            conditions[bad],
            target_of.len(),
            if target == "condition" {
                ids
            } else {
                "clusters"
            }
        ));
    }
    let targets = scored
        .iter()
        .map(|&i| target_of[conditions[i] as usize])
        .collect();
    Ok((scored, targets))
}

/// How often predictions hit their targets.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    /// Share of hits, ×100.
    pub accuracy: f64,
    /// Per target class: items and share of hits ×100.
    pub per_class: Vec<(i64, usize, f64)>,
}

/// Score predictions `pred[i]` against `target[i]`.
pub fn score(pred: &[i64], target: &[i64]) -> Score {
    let mut per: std::collections::BTreeMap<i64, (usize, usize)> = Default::default();
    let mut hits = 0usize;
    for (&p, &t) in pred.iter().zip(target) {
        let e = per.entry(t).or_default();
        e.0 += 1;
        if p == t {
            e.1 += 1;
            hits += 1;
        }
    }
    Score {
        accuracy: 100.0 * hits as f64 / pred.len().max(1) as f64,
        per_class: per
            .into_iter()
            .map(|(c, (n, h))| (c, n, 100.0 * h as f64 / n as f64))
            .collect(),
    }
}

/// Predicted class of each query row (`[nq, d]`) from the labelled rows (`[nt, d]`, labels in
/// `0..classes`). Both are L2-normalised here.
pub fn knn_predict(
    train: &[f32],
    labels: &[i64],
    queries: &[f32],
    d: usize,
    k: usize,
    classes: usize,
) -> Vec<i64> {
    let t = cedm_kernels::knn::l2_normalized(train, d);
    let q = cedm_kernels::knn::l2_normalized(queries, d);
    let (nt, nq) = (t.len() / d.max(1), q.len() / d.max(1));
    let k = k.min(nt).max(1);
    let block = 256;
    let mut out = Vec::with_capacity(nq);
    let mut s = vec![0f32; block * nt];
    for a in (0..nq).step_by(block) {
        let b = block.min(nq - a);
        cedm_kernels::cpu::gemm(
            b,
            d,
            nt,
            &q[a * d..(a + b) * d],
            false,
            &t,
            true,
            &mut s[..b * nt],
            false,
        );
        let preds: Vec<i64> = s[..b * nt]
            .par_chunks(nt)
            .map(|row| {
                // The k most similar (ties by index), then the vote.
                let mut idx: Vec<usize> = (0..nt).collect();
                let cmp = |x: &usize, y: &usize| row[*y].total_cmp(&row[*x]).then(x.cmp(y));
                if k < nt {
                    idx.select_nth_unstable_by(k - 1, cmp);
                }
                let mut votes = vec![0usize; classes.max(1)];
                for &i in &idx[..k] {
                    if let Some(v) = votes.get_mut(labels[i] as usize) {
                        *v += 1;
                    }
                }
                let best = votes.iter().copied().max().unwrap_or(0);
                votes.iter().position(|&v| v == best).unwrap_or(0) as i64
            })
            .collect();
        out.extend(preds);
    }
    out
}

/// A multinomial logistic-regression probe, as scikit-learn's
/// `make_pipeline(StandardScaler(), LogisticRegression(C=c))`: the features standardised with
/// the training rows' mean and (population) standard deviation, then softmax regression with an
/// L2 penalty on the weights (not the intercepts), fitted to its optimum by L-BFGS in f64. The
/// objective is strictly convex, so any solver that converges finds scikit-learn's solution.
pub struct Logistic {
    d: usize,
    classes: usize,
    mean: Vec<f64>,
    scale: Vec<f64>,
    /// `[classes, d]`, on standardised features.
    w: Vec<f64>,
    b: Vec<f64>,
    /// L-BFGS iterations used.
    pub iterations: usize,
}

impl Logistic {
    /// Fit on `x` (`[n, d]`) with labels in `0..classes`; `c` is scikit-learn's `C` (inverse
    /// regularisation strength). Stops when the largest gradient entry of the mean loss is
    /// below `tol` or after `max_iter` iterations.
    pub fn fit(
        x: &[f32],
        labels: &[i64],
        d: usize,
        classes: usize,
        c: f64,
        tol: f64,
        max_iter: usize,
    ) -> Logistic {
        let n = labels.len();
        let k = classes.max(1);
        let mut mean = vec![0f64; d];
        let mut var = vec![0f64; d];
        for row in x.chunks_exact(d.max(1)).take(n) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        for row in x.chunks_exact(d.max(1)).take(n) {
            for ((s, &v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v as f64 - m) * (v as f64 - m);
            }
        }
        // StandardScaler: a constant feature keeps scale 1.
        let scale: Vec<f64> = var
            .iter()
            .map(|s| {
                let sd = (s / n.max(1) as f64).sqrt();
                if sd > 10.0 * f64::EPSILON { sd } else { 1.0 }
            })
            .collect();
        let xs = standardise(x, &mean, &scale, d);
        let mut model = Logistic {
            d,
            classes: k,
            mean,
            scale,
            w: vec![0.0; k * d],
            b: vec![0.0; k],
            iterations: 0,
        };
        if n == 0 {
            return model;
        }
        let dim = k * d + k;
        // f(θ) = mean cross-entropy + ‖W‖² / (2 C n): scikit-learn's C·Σ loss + ½‖W‖², scaled.
        let lambda = 1.0 / (c * n as f64);
        let eval = |theta: &[f64], grad: &mut [f64]| -> f64 {
            let (w, b) = theta.split_at(k * d);
            let mut z = vec![0f64; n * k];
            cedm_kernels::cpu::gemm(n, d, k, &xs, false, w, true, &mut z, false);
            let mut loss = 0f64;
            for (i, zi) in z.chunks_exact_mut(k).enumerate() {
                for (v, bj) in zi.iter_mut().zip(b) {
                    *v += bj;
                }
                let mx = zi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = zi.iter().map(|v| (v - mx).exp()).sum();
                let lse = mx + sum.ln();
                loss += lse - zi[labels[i] as usize];
                // z becomes (softmax − onehot) / n.
                for (j, v) in zi.iter_mut().enumerate() {
                    let p = (*v - lse).exp();
                    *v = (p - f64::from(j as i64 == labels[i])) / n as f64;
                }
            }
            let (gw, gb) = grad.split_at_mut(k * d);
            cedm_kernels::cpu::gemm(k, n, d, &z, true, &xs, false, gw, false);
            let mut reg = 0f64;
            for (g, &wv) in gw.iter_mut().zip(w) {
                *g += lambda * wv;
                reg += wv * wv;
            }
            gb.iter_mut().for_each(|g| *g = 0.0);
            for zi in z.chunks_exact(k) {
                for (g, v) in gb.iter_mut().zip(zi) {
                    *g += v;
                }
            }
            loss / n as f64 + 0.5 * lambda * reg
        };
        let mut theta = vec![0f64; dim];
        model.iterations = lbfgs(&mut theta, eval, tol, max_iter);
        model.w = theta[..k * d].to_vec();
        model.b = theta[k * d..].to_vec();
        model
    }

    /// Class probabilities of each query row, `[nq, classes]`.
    pub fn proba(&self, q: &[f32]) -> Vec<f64> {
        let (d, k) = (self.d, self.classes);
        let nq = q.len() / d.max(1);
        let qs = standardise(q, &self.mean, &self.scale, d);
        let mut z = vec![0f64; nq * k];
        cedm_kernels::cpu::gemm(nq, d, k, &qs, false, &self.w, true, &mut z, false);
        for zi in z.chunks_exact_mut(k) {
            for (v, bj) in zi.iter_mut().zip(&self.b) {
                *v += bj;
            }
            let mx = zi.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            zi.iter_mut().for_each(|v| *v = (*v - mx).exp());
            let s: f64 = zi.iter().sum();
            zi.iter_mut().for_each(|v| *v /= s);
        }
        z
    }

    /// Predicted class of each query row (the most probable; ties to the smaller label).
    pub fn predict(&self, q: &[f32]) -> Vec<i64> {
        self.proba(q)
            .chunks_exact(self.classes)
            .map(|p| {
                let mut best = 0;
                for (j, &v) in p.iter().enumerate() {
                    if v > p[best] {
                        best = j;
                    }
                }
                best as i64
            })
            .collect()
    }

    /// The weights on standardised features, `[classes, d]` (scikit-learn's `coef_`).
    pub fn coef(&self) -> &[f64] {
        &self.w
    }
}

fn standardise(x: &[f32], mean: &[f64], scale: &[f64], d: usize) -> Vec<f64> {
    x.chunks_exact(d.max(1))
        .flat_map(|row| {
            row.iter()
                .zip(mean.iter().zip(scale))
                .map(|(&v, (m, s))| (v as f64 - m) / s)
        })
        .collect()
}

/// Minimise a smooth function by L-BFGS (10 pairs, backtracking Armijo line search) from
/// `theta`; `eval` returns f and writes ∇f. Returns the iterations used.
fn lbfgs(
    theta: &mut [f64],
    mut eval: impl FnMut(&[f64], &mut [f64]) -> f64,
    tol: f64,
    max_iter: usize,
) -> usize {
    const M: usize = 10;
    let dim = theta.len();
    let mut g = vec![0f64; dim];
    let mut f = eval(theta, &mut g);
    let mut hist: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let mut trial = vec![0f64; dim];
    let mut g_new = vec![0f64; dim];
    for it in 0..max_iter {
        if g.iter().fold(0f64, |m, v| m.max(v.abs())) <= tol {
            return it;
        }
        // Two-loop recursion: the search direction −H∇f.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            q.iter_mut().zip(y).for_each(|(qv, yv)| *qv -= a * yv);
            alphas.push(a);
        }
        let gamma = hist
            .back()
            .map_or(1.0 / dot(&g, &g).sqrt().max(1.0), |(s, y, _)| {
                dot(s, y) / dot(y, y)
            });
        q.iter_mut().for_each(|v| *v *= gamma);
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let bcoef = rho * dot(y, &q);
            q.iter_mut()
                .zip(s)
                .for_each(|(qv, sv)| *qv += (a - bcoef) * sv);
        }
        let mut slope = -dot(&g, &q);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from the gradient.
            hist.clear();
            q = g.clone();
            slope = -dot(&g, &q);
        }
        let mut step = 1.0;
        let mut f_new;
        loop {
            for ((t, th), d) in trial.iter_mut().zip(theta.iter()).zip(&q) {
                *t = th - step * d;
            }
            f_new = eval(&trial, &mut g_new);
            if f_new <= f + 1e-4 * step * slope || step < 1e-20 {
                break;
            }
            step *= 0.5;
        }
        if f_new > f {
            return it;
        }
        let s: Vec<f64> = trial.iter().zip(theta.iter()).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 * dot(&y, &y).max(f64::MIN_POSITIVE) {
            if hist.len() == M {
                hist.pop_front();
            }
            hist.push_back((s, y, 1.0 / sy));
        }
        theta.copy_from_slice(&trial);
        std::mem::swap(&mut g, &mut g_new);
        let converged = (f - f_new).abs() <= 1e-15 * f.abs().max(1.0);
        f = f_new;
        if converged {
            return it + 1;
        }
    }
    max_iter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_fit_reaches_a_stationary_point() {
        // Two overlapping blobs in 3-d, 3 classes; the fitted model's gradient is ~0 (checked by
        // refitting from the solution: no iterations needed).
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut s = 1u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f64 / (1u64 << 31) as f64) - 0.5
        };
        for i in 0..90 {
            let c = i % 3;
            y.push(c as i64);
            for j in 0..3 {
                x.push((r() * 2.0 + if j == c { 1.0 } else { 0.0 }) as f32);
            }
        }
        let m = Logistic::fit(&x, &y, 3, 3, 1.0, 1e-10, 10_000);
        assert!(
            m.iterations > 0 && m.iterations < 10_000,
            "{}",
            m.iterations
        );
        let acc = m.predict(&x).iter().zip(&y).filter(|(a, b)| a == b).count();
        assert!(acc > 60, "{acc}");
    }

    #[test]
    fn votes_follow_the_nearest_rows_and_ties_go_to_the_smaller_label() {
        // Two clusters on the unit circle, labels 0 and 1.
        let train = [1.0, 0.0, 0.9, 0.1, 0.0, 1.0, 0.1, 0.9];
        let labels = [0, 0, 1, 1];
        let q = [1.0, 0.05, 0.05, 1.0];
        assert_eq!(knn_predict(&train, &labels, &q, 2, 1, 2), vec![0, 1]);
        // k = 4: two votes each, the smaller label wins.
        assert_eq!(knn_predict(&train, &labels, &q, 2, 4, 2), vec![0, 0]);
    }
}

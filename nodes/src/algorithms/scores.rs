//! Clustering scores against ground truth, as the TEMI / self-classifier evaluation
//! computes it (`utils.compute_metrics`): NMI (arithmetic mean), adjusted MI, adjusted Rand
//! index — scikit-learn's definitions, special cases included — and ACC by Hungarian matching
//! on the `K × K` count matrix (K = max id + 1), with clusters matched to non-existent classes
//! under over-clustering re-mapped to their majority class.

use std::collections::BTreeMap;

use serde::Serialize;

/// Scores of a clustering (fractions in [0, 1]; ×100 for the paper's tables).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Scores {
    /// Accuracy under the Hungarian matching (majority mapping for extra clusters).
    pub acc: f64,
    /// Normalised mutual information (arithmetic mean normaliser).
    pub nmi: f64,
    /// Adjusted mutual information (arithmetic).
    pub ami: f64,
    /// Adjusted Rand index.
    pub ari: f64,
}

/// Contingency table of two labelings over their distinct values (sorted), with marginals.
struct Contingency {
    n: usize,
    cells: BTreeMap<(usize, usize), u64>,
    a: Vec<u64>,
    b: Vec<u64>,
}

fn contingency(truth: &[i64], pred: &[i64]) -> Contingency {
    let index = |v: &[i64]| -> (BTreeMap<i64, usize>, Vec<usize>) {
        let mut u: Vec<i64> = v.to_vec();
        u.sort_unstable();
        u.dedup();
        let m: BTreeMap<i64, usize> = u.iter().enumerate().map(|(i, &x)| (x, i)).collect();
        let idx = v.iter().map(|x| m[x]).collect();
        (m, idx)
    };
    let (mt, ti) = index(truth);
    let (mp, pi) = index(pred);
    let mut cells = BTreeMap::new();
    let mut a = vec![0u64; mt.len()];
    let mut b = vec![0u64; mp.len()];
    for (&i, &j) in ti.iter().zip(&pi) {
        *cells.entry((i, j)).or_insert(0) += 1;
        a[i] += 1;
        b[j] += 1;
    }
    Contingency {
        n: truth.len(),
        cells,
        a,
        b,
    }
}

fn entropy(counts: &[u64]) -> f64 {
    let n: f64 = counts.iter().map(|&c| c as f64).sum();
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * (c as f64).ln() + p * n.ln()
        })
        .sum()
}

fn mutual_info(c: &Contingency) -> f64 {
    // scikit-learn's mutual_info_score from the contingency table.
    let n = c.n as f64;
    let mut mi = 0.0;
    for (&(i, j), &v) in &c.cells {
        let v = v as f64;
        let t = (v / n) * (v.ln() - n.ln())
            + (v / n) * (-(c.a[i] as f64 * c.b[j] as f64).ln() + n.ln() + n.ln());
        mi += if t.abs() < f64::EPSILON { 0.0 } else { t };
    }
    mi.max(0.0)
}

/// scikit-learn's `expected_mutual_information`.
fn expected_mi(c: &Contingency) -> f64 {
    let (a, b, n) = (&c.a, &c.b, c.n as i64);
    if a.len() == 1 || b.len() == 1 {
        return 0.0;
    }
    let nf = n as f64;
    let lg = |x: i64| libm::lgamma(x as f64);
    let mut emi = 0.0;
    for &ai in a {
        let ai = ai as i64;
        for &bj in b {
            let bj = bj as i64;
            let start = 1.max(ai - n + bj);
            let end = ai.min(bj);
            let gln_const = lg(ai + 1) + lg(bj + 1) + lg(n - ai + 1) + lg(n - bj + 1) - lg(n + 1);
            for nij in start..=end {
                let nijf = nij as f64;
                let term2 = (nf * nijf).ln() - (ai as f64).ln() - (bj as f64).ln();
                let gln = gln_const
                    - lg(nij + 1)
                    - lg(ai - nij + 1)
                    - lg(bj - nij + 1)
                    - lg(n - ai - bj + nij + 1);
                emi += (nijf / nf) * term2 * gln.exp();
            }
        }
    }
    emi
}

/// Normalised mutual information (arithmetic), as `sklearn.metrics.normalized_mutual_info_score`.
pub fn nmi(truth: &[i64], pred: &[i64]) -> f64 {
    let c = contingency(truth, pred);
    if (c.a.len() == 1 && c.b.len() == 1) || c.n == 0 {
        return 1.0;
    }
    let mi = mutual_info(&c);
    if mi == 0.0 {
        return 0.0;
    }
    let norm = (0.5 * (entropy(&c.a) + entropy(&c.b))).max(f64::EPSILON);
    mi / norm
}

/// Adjusted mutual information (arithmetic), as `sklearn.metrics.adjusted_mutual_info_score`.
pub fn ami(truth: &[i64], pred: &[i64]) -> f64 {
    let c = contingency(truth, pred);
    if (c.a.len() == 1 && c.b.len() == 1) || c.n == 0 {
        return 1.0;
    }
    let mi = mutual_info(&c);
    let emi = expected_mi(&c);
    let norm = 0.5 * (entropy(&c.a) + entropy(&c.b));
    let mut den = norm - emi;
    den = if den < 0.0 {
        den.min(-f64::EPSILON)
    } else {
        den.max(f64::EPSILON)
    };
    (mi - emi) / den
}

/// Adjusted Rand index, as `sklearn.metrics.adjusted_rand_score`.
pub fn ari(truth: &[i64], pred: &[i64]) -> f64 {
    let c = contingency(truth, pred);
    let n = c.n as f64;
    let sum_sq: f64 = c.cells.values().map(|&v| (v as f64).powi(2)).sum();
    let sum_a2: f64 = c.a.iter().map(|&v| (v as f64).powi(2)).sum();
    let sum_b2: f64 = c.b.iter().map(|&v| (v as f64).powi(2)).sum();
    // pair_confusion_matrix
    let c11 = sum_sq - n;
    let c01 = sum_b2 - sum_sq;
    let c10 = sum_a2 - sum_sq;
    let c00 = n * n - c01 - c10 - sum_sq;
    let (tn, fp, fnn, tp) = (c00, c01, c10, c11);
    if fnn == 0.0 && fp == 0.0 {
        return 1.0;
    }
    2.0 * (tp * tn - fnn * fp) / ((tp + fnn) * (fnn + tn) + (tp + fp) * (fp + tn))
}

/// Minimum-cost assignment of a square matrix (Hungarian algorithm with potentials, O(n³)):
/// `col[row]`. Ties go to the lowest column, as the scan order finds them.
pub fn hungarian(cost: &[i64], n: usize) -> Vec<usize> {
    // 1-based potentials formulation (Kuhn–Munkres with Dijkstra-like updates).
    let inf = i64::MAX / 4;
    let mut u = vec![0i64; n + 1];
    let mut v = vec![0i64; n + 1];
    let mut p = vec![0usize; n + 1];
    let mut way = vec![0usize; n + 1];
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0usize;
        let mut minv = vec![inf; n + 1];
        let mut used = vec![false; n + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let mut delta = inf;
            let mut j1 = 0usize;
            for j in 1..=n {
                if !used[j] {
                    let cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=n {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut col = vec![0usize; n];
    for j in 1..=n {
        if p[j] > 0 {
            col[p[j] - 1] = j - 1;
        }
    }
    col
}

/// The one-to-one mapping of clusters to classes that agrees with the most items (Hungarian on
/// the `clusters × classes` contingency matrix, padded to a square with empty rows or columns:
/// SciPy's `linear_sum_assignment(m, maximize=True)` on the rectangle). `pred` in
/// `0..clusters`, `truth` in `0..classes`; the class of each cluster, `None` for clusters left
/// over when there are more clusters than classes. Also returns the items it matches.
///
/// # Panics
/// If an id is out of its range (callers check).
pub fn one_to_one(
    truth: &[i64],
    pred: &[i64],
    clusters: usize,
    classes: usize,
) -> (Vec<Option<usize>>, i64) {
    let n = clusters.max(classes).max(1);
    let mut m = vec![0i64; n * n];
    for (&t, &p) in truth.iter().zip(pred) {
        m[p as usize * n + t as usize] += 1;
    }
    let max = m.iter().copied().max().unwrap_or(0);
    let cost: Vec<i64> = m.iter().map(|&v| max - v).collect();
    let col = hungarian(&cost, n);
    let matched = (0..clusters).map(|r| m[r * n + col[r]]).sum();
    let mapping = (0..clusters)
        .map(|r| (col[r] < classes).then_some(col[r]))
        .collect();
    (mapping, matched)
}

/// Clustering accuracy as TEMI's `compute_metrics`.
pub fn acc(truth: &[i64], pred: &[i64]) -> f64 {
    let k = (truth.iter().chain(pred).copied().max().unwrap_or(0) + 1).max(1) as usize;
    let mut m = vec![0i64; k * k];
    for (&t, &p) in truth.iter().zip(pred) {
        m[p as usize * k + t as usize] += 1;
    }
    let max = m.iter().copied().max().unwrap_or(0);
    let cost: Vec<i64> = m.iter().map(|&v| max - v).collect();
    let mut assign = hungarian(&cost, k);
    let classes: std::collections::BTreeSet<i64> = truth.iter().copied().collect();
    let preds: std::collections::BTreeSet<i64> = pred.iter().copied().collect();
    if preds.len() > classes.len() {
        for &c in &preds {
            let c = c as usize;
            if !classes.contains(&(assign[c] as i64)) {
                let row = &m[c * k..(c + 1) * k];
                // numpy argmax: the first maximum.
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0usize, i64::MIN),
                        |acc, (j, &v)| if v > acc.1 { (j, v) } else { acc },
                    );
                assign[c] = best.0;
            }
        }
    }
    let hit: i64 = (0..k).map(|r| m[r * k + assign[r]]).sum();
    hit as f64 / truth.len().max(1) as f64
}

/// All four scores.
///
/// # Panics
/// If the labelings differ in length or hold negative ids.
pub fn scores(truth: &[i64], pred: &[i64]) -> Scores {
    assert_eq!(truth.len(), pred.len());
    Scores {
        acc: acc(truth, pred),
        nmi: nmi(truth, pred),
        ami: ami(truth, pred),
        ari: ari(truth, pred),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hungarian_finds_the_minimum() {
        let cost = [4, 1, 3, 2, 0, 5, 3, 2, 2];
        let a = hungarian(&cost, 3);
        let total: i64 = (0..3).map(|r| cost[r * 3 + a[r]]).sum();
        assert_eq!(total, 5);
    }

    #[test]
    fn perfect_and_permuted_clusterings() {
        let t = [0, 0, 1, 1, 2, 2];
        let p = [5, 5, 3, 3, 9, 9];
        let s = scores(&t, &p);
        assert!(
            (s.acc - 1.0).abs() < 1e-12
                && (s.nmi - 1.0).abs() < 1e-12
                && (s.ari - 1.0).abs() < 1e-12
                && (s.ami - 1.0).abs() < 1e-12
        );
    }
}

//! Precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020)
//! of generated features against real ones, as the `prdc` package 0.2 computes them
//! (`prdc/prdc.py` `compute_prdc`): each real (fake) point's radius is the Euclidean distance to
//! its k-th nearest neighbour in its own set (the (k+1)-th smallest distance, itself included);
//! precision = share of fakes inside some real ball, recall = share of reals inside some fake
//! ball, density = mean over fakes of (real balls containing it)/k, coverage = share of reals
//! whose nearest fake is inside its ball. Strict `<` comparisons, as the reference.

use rayon::prelude::*;

/// The four numbers.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prdc {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// Density.
    pub density: f64,
    /// Coverage.
    pub coverage: f64,
}

/// Euclidean distances `[a.rows, b.rows]`: √(|x|² + |y|² − 2x·y) with the products in f64
/// (one matrix product), clamped at 0 as scikit-learn's `euclidean_distances`.
pub fn pairwise(a: &[f32], b: &[f32], d: usize) -> Vec<f64> {
    let d = d.max(1);
    let (na, nb) = (a.len() / d, b.len() / d);
    let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
    let b64: Vec<f64> = b.iter().map(|&v| v as f64).collect();
    let sq =
        |v: &[f64]| -> Vec<f64> { v.chunks(d).map(|r| r.iter().map(|x| x * x).sum()).collect() };
    let (sa, sb) = (sq(&a64), sq(&b64));
    let mut g = vec![0f64; na * nb];
    cedm_kernels::cpu::gemm(na, d, nb, &a64, false, &b64, true, &mut g, false);
    g.par_chunks_mut(nb.max(1))
        .enumerate()
        .for_each(|(i, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = (sa[i] + sb[j] - 2.0 * *v).max(0.0).sqrt();
            }
        });
    g
}

/// Each row's distance to its k-th nearest other row (`get_kth_value(d, k + 1)`).
pub fn kth_neighbour_radii(x: &[f32], d: usize, k: usize) -> Vec<f64> {
    let n = x.len() / d.max(1);
    let dist = pairwise(x, x, d);
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut r = dist[i * n..(i + 1) * n].to_vec();
            let kk = k.min(n - 1);
            r.select_nth_unstable_by(kk, f64::total_cmp);
            r[kk]
        })
        .collect()
}

/// PRDC with one k for all four (the reference's `nearest_k`).
pub fn prdc(real: &[f32], fake: &[f32], d: usize, k: usize) -> Prdc {
    let (nr, nf) = (real.len() / d.max(1), fake.len() / d.max(1));
    let rr = kth_neighbour_radii(real, d, k);
    let fr = kth_neighbour_radii(fake, d, k);
    let rf = pairwise(real, fake, d); // [nr, nf]
    let mut inside_any = vec![false; nf];
    let mut count = vec![0usize; nf];
    let (mut recall, mut coverage) = (0usize, 0usize);
    for i in 0..nr {
        let row = &rf[i * nf..(i + 1) * nf];
        let mut min = f64::INFINITY;
        let mut rec = false;
        for (j, &v) in row.iter().enumerate() {
            if v < rr[i] {
                inside_any[j] = true;
                count[j] += 1;
            }
            rec |= v < fr[j];
            min = min.min(v);
        }
        recall += rec as usize;
        coverage += (min < rr[i]) as usize;
    }
    Prdc {
        precision: inside_any.iter().filter(|&&b| b).count() as f64 / nf.max(1) as f64,
        recall: recall as f64 / nr.max(1) as f64,
        density: count.iter().sum::<usize>() as f64 / (k as f64 * nf.max(1) as f64),
        coverage: coverage as f64 / nr.max(1) as f64,
    }
}

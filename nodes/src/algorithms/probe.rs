//! A k-nearest-neighbour classifier on features, as scikit-learn's
//! `KNeighborsClassifier(n_neighbors=k)` (uniform weights, Euclidean distance) fitted on
//! L2-normalised features — so neighbours by cosine similarity — with its tie rule: among
//! classes with the most votes, the smallest label (`scipy.stats.mode`). The probe of
//! `metrics/probe` (classification accuracy of samples, CAS-style).

use rayon::prelude::*;

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

#[cfg(test)]
mod tests {
    use super::*;

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

//! Exact k nearest neighbours by cosine similarity (TEMI's `knn.pt`, paper §b): features
//! L2-normalised, similarities by blocked matrix products, the item itself excluded, neighbours
//! sorted by similarity (descending), ties by index (ascending).

use rayon::prelude::*;

use crate::cpu::gemm;

/// The neighbours of every item: `indices[i·k..]`, `sims[i·k..]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Neighbours {
    /// Neighbours per item.
    pub k: usize,
    /// Neighbour indices, row-major `[n, k]`.
    pub indices: Vec<i64>,
    /// Similarities, row-major `[n, k]`.
    pub sims: Vec<f32>,
}

/// Why [`knn`] returned no neighbours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KnnError {
    /// k is 0 or not below the number of items.
    BadK(String),
    /// `on_block` asked to stop.
    Stopped,
}

/// Rows scaled to unit L2 norm (rows of zero norm stay zero), the norm accumulated in f64.
pub fn l2_normalized(x: &[f32], d: usize) -> Vec<f32> {
    let mut data = x.to_vec();
    for row in data.chunks_exact_mut(d.max(1)) {
        let norm = row
            .iter()
            .map(|v| f64::from(*v) * f64::from(*v))
            .sum::<f64>()
            .sqrt();
        if norm > 0.0 {
            let inv = (1.0 / norm) as f32;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
    data
}

/// A bounded best-k list kept sorted (descending similarity, ascending index).
#[derive(Clone)]
struct TopK {
    k: usize,
    thr: f32,
    items: Vec<(f32, u32)>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            thr: f32::NEG_INFINITY,
            items: Vec::with_capacity(k + 1),
        }
    }

    #[inline]
    fn better(a: (f32, u32), b: (f32, u32)) -> bool {
        a.0 > b.0 || (a.0 == b.0 && a.1 < b.1)
    }

    /// Offer a candidate; cheap rejection against the current k-th similarity first.
    #[inline]
    fn offer(&mut self, s: f32, j: u32) {
        // `>=` keeps equal similarities for the index tie-break below.
        if s >= self.thr {
            self.push(s, j);
        }
    }

    fn push(&mut self, s: f32, j: u32) {
        if self.items.len() == self.k && !Self::better((s, j), self.items[self.k - 1]) {
            return;
        }
        let pos = self.items.partition_point(|&x| Self::better(x, (s, j)));
        self.items.insert(pos, (s, j));
        self.items.truncate(self.k);
        if self.items.len() == self.k {
            self.thr = self.items[self.k - 1].0;
        }
    }
}

/// Exact k-NN by cosine (or dot product when `normalize` is false), self excluded.
///
/// The similarity matrix is symmetric, so only its upper block triangle is computed: block row
/// I (rows a..a+b) is multiplied with rows a..n, and each product serves both the rows of I and,
/// transposed, the rows after it. That halves the matrix products, which dominate the time.
/// `on_block(done_rows)` is called after each block (progress); returning false stops.
///
/// # Errors
/// When k ≥ n, or when stopped.
pub fn knn(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    normalize: bool,
    block: usize,
    mut on_block: impl FnMut(usize) -> bool,
) -> Result<Neighbours, KnnError> {
    if k == 0 || k >= n {
        return Err(KnnError::BadK(format!(
            "k = {k} needs 1 ≤ k < number of items ({n})"
        )));
    }
    let data = if normalize {
        l2_normalized(&x[..n * d], d)
    } else {
        x[..n * d].to_vec()
    };
    let block = block.max(1);
    let mut heaps = vec![TopK::new(k); n];
    let mut s = vec![0f32; block * n];
    let mut a = 0;
    while a < n {
        let b = block.min(n - a);
        let m = n - a;
        // S = X[a..a+b] · X[a..n]ᵀ  (b × m)
        gemm(
            b,
            d,
            m,
            &data[a * d..(a + b) * d],
            false,
            &data[a * d..],
            true,
            &mut s[..b * m],
            false,
        );
        let s = &s[..b * m];
        let (mine, later) = heaps[a..].split_at_mut(b);
        // Rows of this block: every column from a on (earlier columns came in transposed).
        mine.par_iter_mut().enumerate().for_each(|(r, top)| {
            let i = a + r;
            for (c, &v) in s[r * m..(r + 1) * m].iter().enumerate() {
                if a + c != i {
                    top.offer(v, (a + c) as u32);
                }
            }
        });
        // Rows after the block receive this block's columns: S transposed, read tile by tile so
        // that each tile's rows stay in cache.
        const TILE: usize = 64;
        later
            .par_chunks_mut(TILE)
            .enumerate()
            .for_each(|(t, tops)| {
                let c0 = b + t * TILE;
                for r in 0..b {
                    let row = &s[r * m + c0..r * m + c0 + tops.len()];
                    for (top, &v) in tops.iter_mut().zip(row) {
                        top.offer(v, (a + r) as u32);
                    }
                }
            });
        a += b;
        if !on_block(a) {
            return Err(KnnError::Stopped);
        }
    }
    let mut indices = vec![0i64; n * k];
    let mut sims = vec![0f32; n * k];
    for (i, top) in heaps.iter().enumerate() {
        for (t, (sv, j)) in top.items.iter().enumerate() {
            indices[i * k + t] = i64::from(*j);
            sims[i * k + t] = *sv;
        }
    }
    Ok(Neighbours { k, indices, sims })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    fn exact_sims(x: &[f32], n: usize, d: usize, i: usize) -> Vec<f64> {
        let x = l2_normalized(x, d);
        let row = |j: usize| &x[j * d..(j + 1) * d];
        (0..n)
            .map(|j| {
                row(i)
                    .iter()
                    .zip(row(j))
                    .map(|(a, b)| f64::from(*a) * f64::from(*b))
                    .sum()
            })
            .collect()
    }

    #[test]
    fn matches_brute_force_with_duplicates() {
        let mut r = Rng::new(5);
        let (n, d, k) = (301, 17, 10);
        let mut data: Vec<f32> = (0..n * d).map(|_| r.normal() as f32).collect();
        // Exact duplicates and a scaled copy (same cosine).
        for (dst, src) in [(7usize, 3usize), (8, 3), (100, 200)] {
            let row: Vec<f32> = data[src * d..(src + 1) * d].to_vec();
            data[dst * d..(dst + 1) * d].copy_from_slice(&row);
        }
        let row: Vec<f32> = data[50 * d..51 * d].iter().map(|v| v * 3.0).collect();
        data[51 * d..52 * d].copy_from_slice(&row);
        for block in [1, 7, 64, 1000] {
            let got = knn(&data, n, d, k, true, block, |_| true).unwrap();
            for i in 0..n {
                // Brute force in f64: the returned set must be a true top-k (up to ties within
                // f32 rounding), in non-increasing order of similarity, without i itself.
                let ex = exact_sims(&data, n, d, i);
                let g: Vec<usize> = got.indices[i * k..(i + 1) * k]
                    .iter()
                    .map(|&x| x as usize)
                    .collect();
                assert!(!g.contains(&i), "self in row {i}");
                let gs: Vec<f64> = g.iter().map(|&j| ex[j]).collect();
                assert!(
                    gs.windows(2).all(|p| p[0] >= p[1] - 1e-6),
                    "row {i}: order {gs:?}"
                );
                let kth = gs[k - 1];
                for j in (0..n).filter(|&j| j != i && !g.contains(&j)) {
                    assert!(
                        ex[j] <= kth + 1e-6,
                        "row {i} block {block}: missed {j} ({} > {kth})",
                        ex[j]
                    );
                }
                for (t, &j) in g.iter().enumerate() {
                    assert!((f64::from(got.sims[i * k + t]) - ex[j]).abs() < 1e-5);
                }
            }
            // Duplicates find each other first, with similarity 1, ties by index.
            assert_eq!(got.indices[3 * k..3 * k + 2], [7, 8]);
            assert!((got.sims[3 * k] - 1.0).abs() < 1e-5);
            assert_eq!(got.indices[50 * k], 51);
        }
    }

    #[test]
    fn k_must_be_below_n() {
        assert!(knn(&[1.0; 6], 3, 2, 3, true, 8, |_| true).is_err());
    }
}

//! Training batches: which images a step sees (a seeded permutation per epoch, so no order is
//! stored and a resumed run takes the same steps), EDM's augmentation, labels with
//! classifier-free dropout, σ and the noise — all from cedm's generator seeded by (seed, step).

use cedm_kernels::rng::Rng;

use super::step::Batch;
use crate::artifacts::images::ImageSet;
use crate::models::edm::augment::{AUGMENT_DIM, AugmentConfig, augment};
use crate::models::edm::precond::loss_weight;

/// What a step's batch is drawn from.
pub struct Loader<'a> {
    /// The training images.
    pub set: &'a ImageSet,
    /// Conditioning label of each image (remapped to `0..label_dim`), if conditional.
    pub labels: Option<&'a [i64]>,
    /// Label dimension.
    pub label_dim: usize,
    /// Augmentation probability (0: no augmentation, no augmentation labels).
    pub augment_p: f64,
    /// Probability of dropping a label.
    pub p_uncond: f64,
    /// The run's seed.
    pub seed: u64,
    /// Images per step.
    pub batch: usize,
}

/// A step's batch on the host (see [`Batch`] for the layout).
pub struct HostBatch {
    x: Vec<f32>,
    noise: Vec<f32>,
    labels: Vec<f32>,
    aug: Vec<f32>,
    weights: Vec<f32>,
    sigma: Vec<f64>,
    shape: [usize; 3],
    label_dim: usize,
    aug_dim: usize,
}

impl HostBatch {
    /// The batch as the training step reads it.
    pub fn view(&self) -> Batch<'_> {
        Batch {
            x: &self.x,
            noise: &self.noise,
            labels: &self.labels,
            aug: &self.aug,
            weights: &self.weights,
            sigma: &self.sigma,
            shape: self.shape,
            label_dim: self.label_dim,
            aug_dim: self.aug_dim,
        }
    }
}

impl Loader<'_> {
    /// The batch of step `step`: every draw derives from (seed, step), so resuming repeats it
    /// exactly.
    pub fn batch(&self, step: u64) -> HostBatch {
        let (b, set, dim) = (self.batch, self.set, self.label_dim);
        let (c, h, w) = (set.c, set.h, set.w);
        let il = c * h * w;
        let aug_cfg = AugmentConfig { p: self.augment_p };
        let mut rng = Rng::stream(self.seed, step);
        let epoch_len = set.n as u64;
        let mut xb = Vec::with_capacity(b * il);
        let mut ab = Vec::with_capacity(b * AUGMENT_DIM);
        let mut lb = vec![0f32; b * dim];
        for r in 0..b {
            // Sampling with replacement by position in a per-epoch permutation.
            let g = step * b as u64 + r as u64;
            let ep = g / epoch_len;
            let i = permuted(
                g % epoch_len,
                epoch_len,
                self.seed ^ ep.wrapping_mul(0x9E37_79B9),
            );
            let img: Vec<f32> = set
                .image(i as usize)
                .iter()
                .map(|&v| f32::from(v) / 127.5 - 1.0)
                .collect();
            if self.augment_p > 0.0 {
                let (a, l) = augment(&img, c, h, w, &aug_cfg, &mut rng);
                xb.extend(a);
                ab.extend_from_slice(&l);
            } else {
                xb.extend(img);
            }
            if let Some(ls) = self.labels
                && !(self.p_uncond > 0.0 && rng.uniform() < self.p_uncond)
            {
                lb[r * dim + ls[i as usize] as usize] = 1.0;
            }
        }
        let sigma: Vec<f64> = (0..b).map(|_| (rng.normal() * 1.2 - 1.2).exp()).collect();
        let noise: Vec<f32> = (0..b * il)
            .map(|j| (rng.normal() * sigma[j / il]) as f32)
            .collect();
        let weights: Vec<f32> = sigma.iter().map(|&s| loss_weight(s) as f32).collect();
        HostBatch {
            x: xb,
            noise,
            labels: lb,
            aug: ab,
            weights,
            sigma,
            shape: [c, h, w],
            label_dim: dim,
            aug_dim: if self.augment_p > 0.0 { AUGMENT_DIM } else { 0 },
        }
    }
}

/// Position `i` of a seeded pseudo-random permutation of `0..n` (a Feistel-style bijection by
/// cycle walking), so batches need no stored order and resume exactly.
pub fn permuted(i: u64, n: u64, seed: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let round = |x: u64, r: u64| -> u64 {
        let mut z = x ^ seed ^ r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (z ^ (z >> 29)) & mask
    };
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for k in 0..4 {
            let t = l ^ round(r, k);
            l = r;
            r = t;
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 7, 100, 1000] {
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = permuted(i, n, 42);
                assert!(j < n && !seen[j as usize], "n {n}");
                seen[j as usize] = true;
            }
        }
    }
}

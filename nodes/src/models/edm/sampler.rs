//! EDM's deterministic Heun sampler (paper Algorithm 2; reference NVlabs/edm
//! `generate.py::edm_sampler` with `S_churn = 0`): t_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} −
//! σ_max^{1/ρ}))^ρ, t_N = 0, ρ = 7, σ ∈ [0.002, 80]; x_0 = z·t_0; Euler step then the
//! 2nd-order correction except on the last step; time steps and the update arithmetic in
//! float64 (the network runs in float32).

use burn::tensor::{Device, Tensor, TensorData};
use cedm_engine::NodeError;
use cedm_kernels::rng::Rng;

use super::precond::denoise;
use super::songunet::SongUNet;
use crate::device::to_host;

/// EDM's time steps (N values plus the final 0), in float64.
pub fn time_steps(steps: usize, sigma_min: f64, sigma_max: f64, rho: f64) -> Vec<f64> {
    let mut t: Vec<f64> = (0..steps)
        .map(|i| {
            let a = sigma_max.powf(1.0 / rho);
            let b = sigma_min.powf(1.0 / rho);
            let frac = if steps > 1 {
                i as f64 / (steps - 1) as f64
            } else {
                0.0
            };
            (a + frac * (b - a)).powf(rho)
        })
        .collect();
    t.push(0.0);
    t
}

/// Deterministic Heun sampling (`S_churn = 0`) from latents `z` (`[n, c, r, r]` standard normal,
/// float64), with a denoiser `d(x, σ) -> D(x; σ)` evaluated in float32. Returns float64 samples.
///
/// # Errors
/// What the denoiser returns.
pub fn heun_sample<E>(
    z: &[f64],
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
    mut d: impl FnMut(&[f64], f64) -> Result<Vec<f64>, E>,
    mut on_step: impl FnMut(usize),
) -> Result<Vec<f64>, E> {
    let t = time_steps(steps, sigma_min, sigma_max, rho);
    let mut x: Vec<f64> = z.iter().map(|v| v * t[0]).collect();
    for i in 0..steps {
        let (tc, tn) = (t[i], t[i + 1]);
        let den = d(&x, tc)?;
        let dc: Vec<f64> = x.iter().zip(&den).map(|(xi, di)| (xi - di) / tc).collect();
        let xn: Vec<f64> = x
            .iter()
            .zip(&dc)
            .map(|(xi, di)| xi + (tn - tc) * di)
            .collect();
        if i < steps - 1 {
            let den2 = d(&xn, tn)?;
            x = x
                .iter()
                .zip(&xn)
                .zip(dc.iter().zip(&den2))
                .map(|((xi, xni), (d1, dn))| {
                    let d2 = (xni - dn) / tn;
                    xi + (tn - tc) * (0.5 * d1 + 0.5 * d2)
                })
                .collect();
        } else {
            x = xn;
        }
        on_step(i + 1);
    }
    Ok(x)
}

/// float64 samples in [−1, 1] → uint8 as EDM writes PNGs: clip(x·127.5 + 128, 0, 255).
pub fn to_uint8(x: &[f64]) -> Vec<u8> {
    x.iter()
        .map(|v| (v * 127.5 + 128.0).clamp(0.0, 255.0) as u8)
        .collect()
}

/// The condition of the sample with seed `seed` drawn from q(c) ∝ `weights` (the training label
/// frequencies, C-EDM's rule) or, with `uniform`, uniformly over `weights.len()` labels. A
/// per-seed stream of its own (latents use another), so a sample's condition does not depend on
/// the batch or the node it falls in: `edm/sample` and the figures draw the same condition for
/// the same seed.
pub fn seeded_condition(seed: u64, weights: &[f64], uniform: bool) -> usize {
    let mut r = Rng::stream(0x5EED_0000, seed);
    if uniform {
        r.below(weights.len() as u64) as usize
    } else {
        r.weighted(weights)
    }
}

/// The sampler's settings.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    /// Heun steps N.
    pub steps: usize,
    /// σ_min.
    pub sigma_min: f64,
    /// σ_max.
    pub sigma_max: f64,
    /// ρ.
    pub rho: f64,
    /// Classifier-free guidance weight w: D = (1+w)·D(x|c) − w·D(x|∅).
    pub guidance: f64,
    /// Samples per network call.
    pub batch_size: usize,
}

impl Sampler {
    /// EDM's deterministic sampler (σ 0.002 → 80, ρ 7, no guidance) with `steps` Heun steps.
    pub fn edm(steps: usize, batch_size: usize) -> Sampler {
        Sampler {
            steps,
            sigma_min: 0.002,
            sigma_max: 80.0,
            rho: 7.0,
            guidance: 0.0,
            batch_size,
        }
    }
}

/// Generate samples with given seeds and labels (None = unconditional / zero label).
///
/// Sample k's latents come from cedm's generator seeded by `(seed_stream, seed_k)`, so a
/// sample does not depend on the batch it falls in. `on_batch(done)` returns false to stop.
///
/// # Errors
/// A failed device read, or [`NodeError::Interrupted`] when stopped.
#[allow(clippy::too_many_arguments)]
pub fn generate(
    net: &SongUNet,
    dev: &Device,
    shape: (usize, usize, usize),
    label_dim: usize,
    items: &[(u64, Option<usize>)],
    p: &Sampler,
    seed_stream: u64,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, NodeError> {
    let (c, h, w) = shape;
    let il = c * h * w;
    let mut out = Vec::with_capacity(items.len() * il);
    let mut done = 0;
    for chunk in items.chunks(p.batch_size.max(1)) {
        let b = chunk.len();
        let mut z = Vec::with_capacity(b * il);
        for &(s, _) in chunk {
            let mut r = Rng::stream(seed_stream, s);
            z.extend((0..il).map(|_| r.normal()));
        }
        let mut lab = vec![0f32; b * label_dim];
        for (i, &(_, l)) in chunk.iter().enumerate() {
            if let Some(l) = l {
                lab[i * label_dim + l] = 1.0;
            }
        }
        let labels = (label_dim > 0)
            .then(|| Tensor::<2>::from_data(TensorData::new(lab.clone(), [b, label_dim]), dev));
        let d = |x: &[f64], sigma: f64| -> Result<Vec<f64>, NodeError> {
            let xt = Tensor::<4>::from_data(
                TensorData::new(
                    x.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
                    [b, c, h, w],
                ),
                dev,
            );
            let sig = vec![sigma; b];
            let cond = to_host(denoise(net, xt.clone(), &sig, labels.clone(), None, false))?;
            Ok(if p.guidance != 0.0 && label_dim > 0 {
                let zero = Tensor::<2>::zeros([b, label_dim], dev);
                let unc = to_host(denoise(net, xt, &sig, Some(zero), None, false))?;
                cond.iter()
                    .zip(&unc)
                    .map(|(a, u)| (1.0 + p.guidance) * f64::from(*a) - p.guidance * f64::from(*u))
                    .collect()
            } else {
                cond.into_iter().map(f64::from).collect()
            })
        };
        // On a pool worker: the network's many short parallel operations then start there
        // (cedm_kernels::cpu::on_pool).
        let x = cedm_kernels::cpu::on_pool(|| {
            heun_sample(&z, p.steps, p.sigma_min, p.sigma_max, p.rho, d, |_| {})
        })?;
        out.extend(to_uint8(&x));
        done += b;
        if !on_batch(done) {
            return Err(NodeError::Interrupted);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_steps_match_edm() {
        let t = time_steps(18, 0.002, 80.0, 7.0);
        assert_eq!(t.len(), 19);
        assert!((t[0] - 80.0).abs() < 1e-9);
        assert!((t[17] - 0.002).abs() < 1e-12);
        assert_eq!(t[18], 0.0);
        assert!(t.windows(2).all(|w| w[0] > w[1]));
    }
}

//! EDM (Karras et al. 2022): preconditioning, training loss, and the deterministic Heun sampler
//! (paper Algorithm 2; reference NVlabs/edm `training/networks.py::EDMPrecond`,
//! `training/loss.py::EDMLoss`, `generate.py::edm_sampler`).
//!
//! - Preconditioning, σ_data = 0.5: c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²),
//!   c_in = 1/√(σ²+σ_d²), c_noise = ln(σ)/4; D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise).
//! - Loss: ln σ ~ N(P_mean = −1.2, P_std = 1.2), λ(σ) = (σ²+σ_d²)/(σσ_d)², per pixel
//!   λ‖D(y+n; σ) − y‖², summed over pixels and averaged over the batch (EDM's
//!   `loss.sum() / batch`).
//! - Sampler: t_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, t_N = 0, ρ = 7,
//!   σ ∈ [0.002, 80]; x_0 = z·t_0; Euler step then the 2nd-order correction except on the last
//!   step; time steps and the update arithmetic in float64 (the network runs in float32).

use burn::tensor::{Tensor, TensorData};

use crate::models::songunet::SongUNet;

/// σ_data of the preconditioning.
pub const SIGMA_DATA: f64 = 0.5;

/// (c_skip, c_out, c_in, c_noise) for σ.
pub fn precond(sigma: f64) -> (f64, f64, f64, f64) {
    let s2 = sigma * sigma;
    let d2 = SIGMA_DATA * SIGMA_DATA;
    (
        d2 / (s2 + d2),
        sigma * SIGMA_DATA / (s2 + d2).sqrt(),
        1.0 / (s2 + d2).sqrt(),
        sigma.ln() / 4.0,
    )
}

/// The loss weight λ(σ) = (σ² + σ_d²)/(σ σ_d)².
pub fn loss_weight(sigma: f64) -> f64 {
    (sigma * sigma + SIGMA_DATA * SIGMA_DATA) / (sigma * SIGMA_DATA).powi(2)
}

/// The denoiser D(x; σ, labels, aug) with EDM's preconditioning, per-sample σ.
///
/// # Shapes
/// `x`: `[n, c, r, r]`, `sigma`: `[n]` → `[n, c, r, r]`
pub fn denoise(
    net: &SongUNet,
    x: Tensor<4>,
    sigma: &[f64],
    labels: Option<Tensor<2>>,
    aug: Option<Tensor<2>>,
    train: bool,
) -> Tensor<4> {
    let dev = x.device();
    let n = sigma.len();
    let mut cs = Vec::with_capacity(n);
    let mut co = Vec::with_capacity(n);
    let mut ci = Vec::with_capacity(n);
    let mut cn = Vec::with_capacity(n);
    for &s in sigma {
        let (a, b, c, d) = precond(s);
        cs.push(a as f32);
        co.push(b as f32);
        ci.push(c as f32);
        cn.push(d as f32);
    }
    let col = |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [n, 1, 1, 1]), &dev);
    let (cs, co, ci) = (col(cs), col(co), col(ci));
    let cnoise = Tensor::<1>::from_data(TensorData::new(cn, [n]), &dev);
    let f = net.forward(x.clone() * ci, cnoise, labels, aug, train);
    x * cs + f * co
}

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
pub fn heun_sample(
    z: &[f64],
    steps: usize,
    sigma_min: f64,
    sigma_max: f64,
    rho: f64,
    mut d: impl FnMut(&[f64], f64) -> Vec<f64>,
    mut on_step: impl FnMut(usize),
) -> Vec<f64> {
    let t = time_steps(steps, sigma_min, sigma_max, rho);
    let mut x: Vec<f64> = z.iter().map(|v| v * t[0]).collect();
    for i in 0..steps {
        let (tc, tn) = (t[i], t[i + 1]);
        let den = d(&x, tc);
        let dc: Vec<f64> = x.iter().zip(&den).map(|(xi, di)| (xi - di) / tc).collect();
        let xn: Vec<f64> = x
            .iter()
            .zip(&dc)
            .map(|(xi, di)| xi + (tn - tc) * di)
            .collect();
        if i < steps - 1 {
            let den2 = d(&xn, tn);
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
    x
}

/// float64 samples in [−1, 1] → uint8 as EDM writes PNGs: clip(x·127.5 + 128, 0, 255).
pub fn to_uint8(x: &[f64]) -> Vec<u8> {
    x.iter()
        .map(|v| (v * 127.5 + 128.0).clamp(0.0, 255.0) as u8)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preconditioning_hand_values() {
        // σ = 0.5 = σ_d: c_skip = 0.5, c_out = 0.25/√0.5, c_in = 1/√0.5, c_noise = ln 0.5 / 4.
        let (a, b, c, d) = precond(0.5);
        assert!((a - 0.5).abs() < 1e-15);
        assert!((b - 0.25 / 0.5f64.sqrt()).abs() < 1e-15);
        assert!((c - 1.0 / 0.5f64.sqrt()).abs() < 1e-15);
        assert!((d - 0.5f64.ln() / 4.0).abs() < 1e-15);
        // λ(σ_d) = 2σ_d²/σ_d⁴ = 8; λ(1) = 1.25/0.25 = 5.
        assert!((loss_weight(0.5) - 8.0).abs() < 1e-12);
        assert!((loss_weight(1.0) - 5.0).abs() < 1e-12);
        // c_skip² σ_d² + c_out²… the effective training target has unit variance: c_out² + c_skip²σ²… (EDM eq. 8)
        for s in [0.002, 0.1, 1.0, 80.0] {
            let (cs, co, ci, _) = precond(s);
            assert!((ci * ci * (s * s + SIGMA_DATA * SIGMA_DATA) - 1.0).abs() < 1e-12);
            // λ = 1/c_out² by EDM's choice.
            assert!((loss_weight(s) * co * co - 1.0).abs() < 1e-9, "{s}");
            assert!(cs > 0.0 && cs < 1.0);
        }
    }

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

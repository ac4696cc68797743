//! EDM's preconditioning and training loss (Karras et al. 2022; reference NVlabs/edm
//! `training/networks.py::EDMPrecond`, `training/loss.py::EDMLoss`).
//!
//! - Preconditioning, σ_data = 0.5: c_skip = σ_d²/(σ²+σ_d²), c_out = σσ_d/√(σ²+σ_d²),
//!   c_in = 1/√(σ²+σ_d²), c_noise = ln(σ)/4; D(x; σ) = c_skip·x + c_out·F(c_in·x, c_noise).
//! - Loss: ln σ ~ N(P_mean = −1.2, P_std = 1.2), λ(σ) = (σ²+σ_d²)/(σσ_d)², per pixel
//!   λ‖D(y+n; σ) − y‖², summed over pixels and averaged over the batch (EDM's
//!   `loss.sum() / batch`).

use burn::tensor::{Tensor, TensorData};

use super::songunet::SongUNet;

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
}

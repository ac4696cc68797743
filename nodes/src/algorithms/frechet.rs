//! The Fréchet distance between two Gaussians ‖μ₁−μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂). The
//! trace of the square root is computed from symmetric eigenvalues
//! ([`cedm_kernels::linalg::trace_sqrt_product`]) rather than scipy's general `sqrtm`: the same
//! value for positive semi-definite Σ (agreement with scipy is a parity test), without complex
//! round-off. When the result is not finite, it is retried with 1e-6 added to both diagonals, as
//! dgm-eval does.

use cedm_engine::NodeError;
use cedm_kernels::linalg::trace_sqrt_product;

use crate::artifacts::stats::Stats;

/// The Fréchet distance between two Gaussians (see the module docs).
///
/// # Errors
/// Different dimensions, or non-finite statistics even after the eps retry.
pub fn frechet_distance(a: &Stats, b: &Stats) -> Result<f64, NodeError> {
    if a.d != b.d {
        return Err(NodeError::msg(format!(
            "statistics of different dimensions: {} and {}",
            a.d, b.d
        )));
    }
    let d = a.d;
    let diff: f64 = a.mu.iter().zip(&b.mu).map(|(x, y)| (x - y) * (x - y)).sum();
    let trace = |s: &[f64]| (0..d).map(|i| s[i * d + i]).sum::<f64>();
    let (ta, tb) = (trace(&a.sigma), trace(&b.sigma));
    let covmean = match trace_sqrt_product(&a.sigma, &b.sigma, d) {
        Ok(t) if t.is_finite() => t,
        _ => {
            let eps = 1e-6;
            let add = |s: &[f64]| {
                let mut s = s.to_vec();
                (0..d).for_each(|i| s[i * d + i] += eps);
                s
            };
            trace_sqrt_product(&add(&a.sigma), &add(&b.sigma), d).map_err(NodeError::msg)?
        }
    };
    let fd = diff + ta + tb - 2.0 * covmean;
    if !fd.is_finite() {
        return Err(NodeError::msg(
            "the Fréchet distance is not finite (NaN or infinite features?)",
        ));
    }
    Ok(fd)
}

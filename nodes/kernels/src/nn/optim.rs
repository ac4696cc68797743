//! Optimiser updates in one pass over each parameter, in place: Adam as `torch.optim.Adam`
//! computes it, with `torch.optim.AdamW`'s decoupled weight decay when asked for, and the EMA of
//! weights. The arithmetic is the same sequence of
//! f32 operations burn's tensor ops performed before (so results equal theirs bit for bit),
//! only without ten temporary tensors per parameter.

use rayon::prelude::*;

/// One Adam step's scalars.
#[derive(Clone, Copy, Debug)]
pub struct AdamStep {
    /// Learning rate.
    pub lr: f64,
    /// β1.
    pub beta1: f64,
    /// β2.
    pub beta2: f64,
    /// ε.
    pub eps: f64,
    /// The step number (from 1), for the bias corrections.
    pub step: u64,
    /// Decoupled weight decay (AdamW: `p ← p·(1 − lr·λ)` before the step); 0 for plain Adam.
    pub weight_decay: f64,
}

const CHUNK: usize = 1 << 14;

/// `p ← p·(1 − lr·λ)` when λ > 0, then `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p − m/(√v/√(1−β2ᵗ) + ε)·lr/(1−β1ᵗ)`.
pub fn adam(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: AdamStep) {
    assert!(
        g.len() == p.len() && m.len() == p.len() && v.len() == p.len(),
        "adam: lengths differ"
    );
    let t = s.step as i32;
    let b1 = s.beta1 as f32;
    let b2 = s.beta2 as f32;
    let c1 = (1.0 - s.beta1) as f32;
    let c2 = (1.0 - s.beta2) as f32;
    let sqrt_bc2 = (1.0 - s.beta2.powi(t)).sqrt() as f32;
    let eps = s.eps as f32;
    let step = (s.lr / (1.0 - s.beta1.powi(t))) as f32;
    let decay = (s.weight_decay > 0.0).then_some((1.0 - s.lr * s.weight_decay) as f32);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| {
            if let Some(d) = decay {
                for p in p.iter_mut() {
                    *p *= d;
                }
            }
            for i in 0..p.len() {
                let gi = g[i];
                m[i] = m[i] * b1 + gi * c1;
                v[i] = v[i] * b2 + gi * gi * c2;
                let denom = v[i].sqrt() / sqrt_bc2 + eps;
                p[i] -= m[i] / denom * step;
            }
        });
}

/// `ema ← p + (ema − p)·β`.
pub fn ema(ema: &mut [f32], p: &[f32], beta: f64) {
    assert!(ema.len() == p.len(), "ema: lengths differ");
    let b = beta as f32;
    ema.par_chunks_mut(CHUNK)
        .zip(p.par_chunks(CHUNK))
        .for_each(|(e, p)| {
            for (e, &p) in e.iter_mut().zip(p) {
                *e = p + (*e - p) * b;
            }
        });
}

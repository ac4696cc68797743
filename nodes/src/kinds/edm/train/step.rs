//! One EDM training step: loss, backward (with mixed precision's casts and loss scaling),
//! data parallel over several devices; the loss scale's bookkeeping.

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::models::edm::precond::denoise;
use crate::models::edm::songunet::SongUNet;
use crate::models::params::{Adam, assign, flat, grads};

/// Dynamic loss scaling for f16 (torch.cuda.amp.GradScaler's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// The current scale.
    pub scale: f64,
    /// Good steps since the last change.
    pub good: u64,
    /// Skipped steps in a row, and in total.
    pub skipped_run: u64,
    /// Skipped steps in total.
    pub skipped: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale {
            scale: 65536.0,
            good: 0,
            skipped_run: 0,
            skipped: 0,
        }
    }
}

impl LossScale {
    const GROWTH_INTERVAL: u64 = 2000;

    /// The initial scale for images of `pixels` values: GradScaler's 2¹⁶ is meant for a loss
    /// that averages; EDM's sums over the pixels, so start at 2¹⁵ / pixels (a power of two, ≥ 1).
    pub fn for_pixels(pixels: usize) -> LossScale {
        let e = (32768.0 / pixels.max(1) as f64).log2().floor().max(0.0);
        LossScale {
            scale: 2f64.powf(e),
            ..LossScale::default()
        }
    }
    /// Skipped steps in a row after which training stops.
    pub const MAX_SKIPPED_RUN: u64 = 50;

    /// Record a step's outcome: finite gradients keep (or after enough good steps, double) the
    /// scale; otherwise the step is skipped and the scale halved.
    pub fn update(&mut self, finite: bool) {
        if finite {
            self.good += 1;
            self.skipped_run = 0;
            if self.good >= Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good = 0;
            }
        } else {
            self.scale /= 2.0;
            self.good = 0;
            self.skipped_run += 1;
            self.skipped += 1;
        }
    }
}

/// One training batch on the host, row-major per sample.
pub struct Batch<'a> {
    /// Clean images in [−1, 1], `[b, c, h, w]`.
    pub x: &'a [f32],
    /// Noise n ~ N(0, σ²), `[b, c, h, w]`.
    pub noise: &'a [f32],
    /// One-hot labels (zeros: no condition), `[b, label_dim]`.
    pub labels: &'a [f32],
    /// Augmentation labels, `[b, aug_dim]`.
    pub aug: &'a [f32],
    /// Loss weights λ(σ), `[b]`.
    pub weights: &'a [f32],
    /// Noise levels σ, `[b]`.
    pub sigma: &'a [f64],
    /// `[c, h, w]`.
    pub shape: [usize; 3],
    /// Label dimension (0: unconditional).
    pub label_dim: usize,
    /// Augmentation label dimension (0: no augmentation).
    pub aug_dim: usize,
}

/// One optimiser step exactly as `edm/train` takes it (loss, backward, with `half` the
/// mixed-precision casts, unscaling and the finiteness check; Adam; no EMA), for `cedm bench
/// edm`. `device` is the autodiff device `net` lives on. Returns the updated network and the
/// loss.
pub fn bench_step(
    net: SongUNet,
    device: &Device,
    adam: &mut Adam,
    half: Option<FloatDType>,
    bt: &Batch<'_>,
    lr: f64,
) -> Result<(SongUNet, f32), String> {
    let scale = if half == Some(FloatDType::F16) {
        1024.0
    } else {
        1.0
    };
    let (lv, gs) = data_parallel_step(&net, device, &[], half, scale, bt, 0)?;
    let gs: Vec<Option<Tensor<1>>> = if scale == 1.0 {
        gs
    } else {
        gs.into_iter().map(|g| g.map(|g| g / scale)).collect()
    };
    if half.is_some() && !all_finite(&gs)? {
        return Ok((net, f32::NAN));
    }
    let new = adam.update(flat(&net), gs, lr);
    Ok((assign(net, new, true), lv))
}

/// Forward and backward of samples `lo..hi` of the batch on `net`'s device: the loss (the
/// shard's part of the batch mean) and the gradients in f32, multiplied by `scale`. With `half`,
/// the network runs on a copy of the f32 weights cast to that type (its output is cast back to
/// f32 for the preconditioning and the loss).
fn shard_step(
    net: &SongUNet,
    half: Option<FloatDType>,
    scale: f64,
    bt: &Batch<'_>,
    lo: usize,
    hi: usize,
    dev: &Device,
) -> Result<(f32, Vec<Option<Tensor<1>>>), String> {
    let [c, h, w] = bt.shape;
    let (il, m, total) = (c * h * w, hi - lo, bt.sigma.len());
    let y = Tensor::<4>::from_data(
        TensorData::new(bt.x[lo * il..hi * il].to_vec(), [m, c, h, w]),
        dev,
    );
    let n = Tensor::<4>::from_data(
        TensorData::new(bt.noise[lo * il..hi * il].to_vec(), [m, c, h, w]),
        dev,
    );
    let lt = (bt.label_dim > 0).then(|| {
        Tensor::<2>::from_data(
            TensorData::new(
                bt.labels[lo * bt.label_dim..hi * bt.label_dim].to_vec(),
                [m, bt.label_dim],
            ),
            dev,
        )
    });
    let at = (bt.aug_dim > 0).then(|| {
        Tensor::<2>::from_data(
            TensorData::new(
                bt.aug[lo * bt.aug_dim..hi * bt.aug_dim].to_vec(),
                [m, bt.aug_dim],
            ),
            dev,
        )
    });
    let wt = Tensor::<4>::from_data(
        TensorData::new(bt.weights[lo..hi].to_vec(), [m, 1, 1, 1]),
        dev,
    );
    let sigma = &bt.sigma[lo..hi];
    let run = |net: &SongUNet| {
        let d = denoise(
            net,
            y.clone() + n.clone(),
            sigma,
            lt.clone(),
            at.clone(),
            true,
        );
        let loss = ((d - y.clone()).powf_scalar(2.0) * wt.clone()).sum() / total as f64;
        let g = if scale == 1.0 {
            loss.backward()
        } else {
            (loss.clone() * scale).backward()
        };
        let lv = read_scalar(loss.inner())?;
        Ok((lv, grads(net, &g)))
    };
    match half {
        None => run(net),
        Some(hd) => {
            let hnet = assign(
                net.clone(),
                flat(net).into_iter().map(|t| t.cast(hd)).collect(),
                true,
            );
            let (lv, gs) = run(&hnet)?;
            Ok((
                lv,
                gs.into_iter()
                    .map(|g| g.map(|g| g.cast(FloatDType::F32)))
                    .collect(),
            ))
        }
    }
}

/// Read a one-element tensor back, turning a device failure into an error (burn's
/// `into_scalar` panics).
pub fn read_scalar(t: Tensor<1>) -> Result<f32, String> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| format!("the device failed: {e}"))?
        .first()
        .copied()
        .ok_or_else(|| "empty read-back".to_string())
}

/// Whether the device computes in `half`: a tiny cast, product and read-back (Vulkan through
/// OpenGL fallbacks and some drivers lack WGSL's f16 extension).
pub fn supports(dev: &Device, half: FloatDType) -> Result<(), String> {
    let d = dev.clone();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let t = Tensor::<1>::from_floats([1.0f32, 2.0], &d).cast(half);
        read_scalar((t.clone() * t).sum().cast(FloatDType::F32))
    }))
    .map_err(|_| "panicked".to_string())?
    .and_then(|v| {
        if v == 5.0 {
            Ok(())
        } else {
            Err(format!("1²+2² came back as {v}"))
        }
    })
}

/// A step's loss and gradients (on the master's device, scaled by `scale`): on one device, or
/// data parallel — the batch split into contiguous shards, one per device, each replica a copy
/// of the master weights computing its shard on a thread of its own, the gradients summed on
/// the master's device (the loss is a batch mean, so the sum of the shards' gradients is the
/// whole batch's gradient, up to floating-point order).
pub fn data_parallel_step(
    net: &SongUNet,
    master: &Device,
    replicas: &[Device],
    half: Option<FloatDType>,
    scale: f64,
    bt: &Batch<'_>,
    seed: u64,
) -> Result<(f32, Vec<Option<Tensor<1>>>), String> {
    let b = bt.sigma.len();
    let k = replicas.len() + 1;
    let bounds: Vec<(usize, usize)> = (0..k).map(|i| (i * b / k, (i + 1) * b / k)).collect();
    master.seed(seed);
    if replicas.is_empty() {
        // On a worker of the CPU kernels' thread pool: the many short parallel operations of
        // a step then start from a pool thread instead of waking the pool from outside each
        // time (25 000 context switches fewer per 40 quickstart steps, ~3% faster).
        return cedm_kernels::cpu::on_pool(|| shard_step(net, half, scale, bt, 0, b, master));
    }
    let copies: Vec<SongUNet> = replicas
        .iter()
        .map(|d| {
            d.seed(seed ^ 0x5851_F42D_4C95_7F2D);
            let inner = d.clone().inner();
            assign(
                net.clone(),
                flat(net).into_iter().map(|t| t.to_device(&inner)).collect(),
                true,
            )
        })
        .collect();
    let (mut lv, mut gs, others) = std::thread::scope(|s| {
        let handles: Vec<_> = copies
            .iter()
            .zip(replicas)
            .zip(&bounds[1..])
            .map(|((m, d), &(lo, hi))| s.spawn(move || shard_step(m, half, scale, bt, lo, hi, d)))
            .collect();
        let first = shard_step(net, half, scale, bt, bounds[0].0, bounds[0].1, master);
        let others: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        first.map(|(lv, gs)| (lv, gs, others))
    })?;
    let inner = master.clone().inner();
    for (k, r) in others.into_iter().enumerate() {
        let (l, g) = r.map_err(|_| format!("the replica on device {} panicked", k + 1))??;
        lv += l;
        for (acc, gi) in gs.iter_mut().zip(g) {
            *acc = match (acc.take(), gi) {
                (Some(a), Some(gi)) => Some(a + gi.to_device(&inner)),
                (a, gi) => a.or_else(|| gi.map(|t| t.to_device(&inner))),
            };
        }
    }
    Ok((lv, gs))
}

/// Whether every gradient entry is finite (one read-back: a non-finite or overflowing entry
/// makes the sum of squares non-finite).
pub fn all_finite(gs: &[Option<Tensor<1>>]) -> Result<bool, String> {
    let sq: Vec<Tensor<1>> = gs
        .iter()
        .flatten()
        .map(|g| g.clone().powf_scalar(2.0).sum())
        .collect();
    if sq.is_empty() {
        return Ok(true);
    }
    Ok(read_scalar(Tensor::cat(sq, 0).sum())?.is_finite())
}

//! `edm/train`: train an EDM denoiser (SongUNet, DDPM++) conditioned on cluster labels, ground
//! truth, or nothing — C-EDM's training (EDM's `training_loop.py` with C-EDM's pseudo-labels).
//!
//! Per step: a batch of images (x/127.5 − 1), EDM's augmentation pipe (with probability
//! `augment_p`; its 9-d label conditions the network), ln σ ~ N(−1.2, 1.2²), n ~ N(0, σ²),
//! loss λ(σ)‖D(y+n; σ, c) − y‖² summed over pixels and averaged over the batch; Adam (β 0.9 /
//! 0.999, ε 1e-8) with the learning rate ramped linearly over `lr_rampup_kimg` (EDM computes
//! it from the images seen *before* the step, so the first step has lr 0); EMA with half-life
//! `ema_halflife_kimg`, ramped as min(half-life, 0.05 × images seen). Labels are one-hot over the
//! used clusters (label_dim = C_u, as C-EDM remaps raw ids with `torch.unique`), scaled by
//! √label_dim inside the network; with `p_uncond` a label is zeroed for classifier-free
//! guidance.
//!
//! Randomness (batch order, σ, noise, augmentation) comes from cedm's seeded generator per step
//! and dropout from the backend's generator re-seeded per step, so a run resumed from its
//! checkpoint takes the same steps as one that was not interrupted. Checkpoints (network, EMA,
//! Adam state, images seen, loss log) go to the node's work directory every
//! `checkpoint_every_kimg`, and when the run is asked to stop (Ctrl-C, Slurm's warning signal).
//!
//! Precision (`precision`): `fp32`, or mixed precision — f32 master weights, Adam state and EMA,
//! with the forward and backward pass run on f16 (or bf16) copies of the weights, as the paper
//! trains in FP16. burn 0.22 has no autocast, so the cast is explicit: each step the weights are
//! cast to the half type, the network computes in it, its output is cast back to f32 for the
//! preconditioning and the loss, and the half-precision gradients are cast to f32 and unscaled.
//! f16 uses dynamic loss scaling (PyTorch GradScaler's rule: halve and skip the step when a
//! gradient or the loss is not finite, double after 2000 good steps; it starts at 2¹⁵ / pixels
//! rather than 2¹⁶ because EDM's loss sums over pixels); the scale is part of the checkpoint. `auto` (the default) is f16 on GPUs and fp32 on the CPU.
//!
//! The kind composes three parts: [`loader`] (which images, augmentation, labels, σ and noise a
//! step sees), [`step`] (loss and gradients, mixed precision, data parallel) and [`checkpoint`].
//!
//! Port differences: EDM replaces NaN/±inf gradients by 0/±1e5 before the step; here a
//! non-finite loss stops a full-precision run instead (mixed precision skips the step and lowers
//! the loss scale, and stops after 50 skipped steps in a row).

use std::num::NonZeroUsize;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor};
use cedm_engine::{
    BatchDefaults, DeviceSpec, Kind, NodeError, ParamError, Resources, RunContext, Slot,
    Trajectory, rules,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::artifacts::labels::{LabelInfo, read_labels};
use crate::artifacts::network::{LossPoint, TrainingLog, save_network};
use crate::artifacts::plot::line_png;
use crate::artifacts::write_json;
use crate::device::{Compute, compute};
use crate::models::edm::augment::AUGMENT_DIM;
use crate::models::edm::songunet::{SongUNet, SongUNetConfig};
use crate::models::params::{Adam, assign, flat};
use crate::params::nz;

pub mod checkpoint;
pub mod loader;
pub mod step;

use checkpoint::Progress;
use loader::Loader;
use step::{LossScale, all_finite, data_parallel_step, supports};

/// Network architecture preset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// 32 channels, [1, 2, 2], 1 block, attention at 8 px: trains on a CPU.
    Small,
    /// EDM's CIFAR-10 DDPM++: 128 channels, [2, 2, 2], 4 blocks, attention at 16 px.
    Cifar,
    /// EDM's FFHQ-64 DDPM++: 128 channels, [1, 2, 2, 2], 4 blocks, attention at 16 px.
    Ffhq64,
}

/// Numeric precision of training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f16 mixed precision on GPUs, fp32 on the CPU.
    #[default]
    Auto,
    /// Everything in f32.
    Fp32,
    /// f32 master weights; forward/backward in f16 with dynamic loss scaling.
    Fp16,
    /// f32 master weights; forward/backward in bf16 (no loss scaling needed; not on wgpu).
    Bf16,
}

impl Precision {
    fn is_auto(&self) -> bool {
        *self == Precision::Auto
    }

    /// The half type of the forward/backward pass on this device, if any.
    pub fn half(self, comp: &Compute) -> Option<FloatDType> {
        match (self, comp) {
            (Precision::Auto, Compute::Gpu(..)) | (Precision::Fp16, _) => Some(FloatDType::F16),
            (Precision::Bf16, _) => Some(FloatDType::BF16),
            _ => None,
        }
    }
}

/// Params of `edm/train` (defaults: C-EDM's CIFAR settings, seed Table 4).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Architecture: `small`, `cifar`, `ffhq64`. Default: `cifar`.
    #[serde(default = "cifar")]
    pub model: Preset,
    /// Override the preset's base channels.
    #[serde(default)]
    pub model_channels: Option<usize>,
    /// Override the preset's channel multipliers.
    #[serde(default)]
    pub channel_mult: Option<Vec<usize>>,
    /// Override the preset's blocks per resolution.
    #[serde(default)]
    pub num_blocks: Option<usize>,
    /// Override the preset's attention resolutions.
    #[serde(default)]
    pub attn_resolutions: Option<Vec<usize>>,
    /// Dropout (C-EDM: 0.13 CIFAR, 0.05 FFHQ). Default: the preset's.
    #[serde(default)]
    pub dropout: Option<f64>,
    /// Training length in thousands of images (C-EDM's script: 100 000 = 100 Mimg). Default: 100000.
    #[serde(default = "d_duration")]
    pub duration_kimg: f64,
    /// Images per step (C-EDM CIFAR: 1024; FFHQ: 512). Default: 1024.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
    /// Adam learning rate (CIFAR 1e-3, FFHQ 2e-4). Default: 1e-3.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Linear learning-rate ramp in kimg. Default: 10000.
    #[serde(default = "d_rampup")]
    pub lr_rampup_kimg: f64,
    /// EMA half-life in kimg (EDM's `--ema`, in Mimg there). Default: 500.
    #[serde(default = "d_ema")]
    pub ema_halflife_kimg: f64,
    /// EMA ramp-up ratio (half-life ≤ ratio × images seen). Default: 0.05.
    #[serde(default = "d_ema_ratio")]
    pub ema_rampup_ratio: f64,
    /// Augmentation probability p (CIFAR 0.12, FFHQ 0.15; 0 turns the pipe and its labels off). Default: 0.12.
    #[serde(default = "d_aug")]
    pub augment_p: f64,
    /// Probability of dropping a label (for classifier-free guidance). Default: 0.
    #[serde(default)]
    pub p_uncond: f64,
    /// Seed. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// Checkpoint period in kimg (not part of the key). Default: a tenth of the duration.
    #[serde(default)]
    pub checkpoint_every_kimg: Option<f64>,
    /// Publish a snapshot every this many kimg: the result a run of that duration gives (EMA
    /// network, labels, training log), cached under that run's key, with the training state for
    /// a longer run to resume from (EDM's `--snap`; C-EDM's script: every 20 000 kimg). Not part
    /// of the key. Default: none (only the final result, which a longer run also resumes from).
    #[serde(default)]
    pub snapshot_kimg: Option<f64>,
    /// Loss-curve resolution: one point (the mean loss per pixel) every this many kimg, plus the
    /// last, partial interval (EDM's `--tick`, 50 kimg by default). Independent of the duration,
    /// so that a run's log is a prefix of a longer run's. Default: 50.
    #[serde(default = "d_log_every")]
    pub log_every_kimg: f64,
    /// `auto` (f16 mixed precision on GPUs, fp32 on the CPU), `fp32`, `fp16` or `bf16`.
    /// Default: auto.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Train data parallel over these devices (e.g. `[cuda:0, cuda:1]`): the batch is split
    /// across them and the gradients summed on the first. Empty: the run's device. Not part of
    /// the key (results equal one device's up to floating-point order). Default: [].
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

fn cifar() -> Preset {
    Preset::Cifar
}
fn d_duration() -> f64 {
    100_000.0
}
fn d_batch() -> NonZeroUsize {
    const { nz(1024) }
}
fn d_lr() -> f64 {
    1e-3
}
fn d_rampup() -> f64 {
    10_000.0
}
fn d_ema() -> f64 {
    500.0
}
fn d_ema_ratio() -> f64 {
    0.05
}
fn d_aug() -> f64 {
    0.12
}
fn d_log_every() -> f64 {
    50.0
}

impl Params {
    /// The network configuration for images of `res` px, `c` channels and `label_dim` labels.
    pub fn network(&self, res: usize, c: usize, label_dim: usize) -> SongUNetConfig {
        let mut cfg = match self.model {
            Preset::Small => SongUNetConfig::small(res, c, label_dim),
            Preset::Cifar => SongUNetConfig {
                img_resolution: res,
                in_channels: c,
                ..SongUNetConfig::cifar(label_dim)
            },
            Preset::Ffhq64 => SongUNetConfig {
                img_resolution: res,
                in_channels: c,
                ..SongUNetConfig::ffhq64(label_dim)
            },
        };
        if let Some(v) = self.model_channels {
            cfg.model_channels = v;
        }
        if let Some(v) = &self.channel_mult {
            cfg.channel_mult.clone_from(v);
        }
        if let Some(v) = self.num_blocks {
            cfg.num_blocks = v;
        }
        if let Some(v) = &self.attn_resolutions {
            cfg.attn_resolutions.clone_from(v);
        }
        if let Some(v) = self.dropout {
            cfg.dropout = v;
        }
        cfg.augment_dim = if self.augment_p > 0.0 { AUGMENT_DIM } else { 0 };
        cfg
    }
}

/// The `edm/train` kind.
pub struct EdmTrain;

impl Kind for EdmTrain {
    const KIND: &'static str = "edm/train";
    // 2: the CPU's custom convolution, group norm, resampling and fused Adam (floats summed in
    // another order); outputs differ in the last bits. 3: the loss log every `log_every_kimg`
    // (was a fixed number of points per duration), so that runs form trajectories. 4: the label
    // info (network metadata, labels.json) records the requested C of a cluster label source.
    const VERSION: u32 = 4;
    const ABOUT: &'static str = "Train an EDM denoiser (SongUNet DDPM++) conditioned on cluster labels, ground truth or nothing; EMA weights, loss curve";
    const INPUTS: &'static [Slot] = &[
        Slot::one("images", "the training images (data/*)"),
        Slot::optional(
            "labels",
            "cluster labels (cluster/*) or an image artifact with ground truth; omit for unconditional",
        ),
    ];
    const UNKEYED: &'static [&'static str] = &["devices", "checkpoint_every_kimg", "snapshot_kimg"];
    // Every step depends on the images seen before it, never on the duration (the lr ramp, the
    // EMA ramp, the log interval, the per-step randomness): a run to L is the prefix of any
    // longer run, so the engine resumes longer runs from cached snapshots.
    const TRAJECTORY: Option<Trajectory> = Some(Trajectory {
        length: "duration_kimg",
        state: "checkpoint.safetensors",
    });
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems: Vec<ParamError> = [
            rules::positive("duration_kimg", p.duration_kimg),
            rules::within("augment_p", p.augment_p, 0.0, 1.0),
            rules::within("p_uncond", p.p_uncond, 0.0, 1.0),
        ]
        .into_iter()
        .flatten()
        .collect();
        if p.channel_mult.as_ref().is_some_and(Vec::is_empty) {
            problems.push(ParamError::invalid(
                "channel_mult",
                "needs at least one level",
            ));
        }
        // Sizes from params, against caps far above any EDM (an impossible network is an
        // error here, not an overflow or an out-of-memory abort mid-run).
        let mult = p.channel_mult.as_deref().unwrap_or_default();
        if mult.len() > 12 || mult.iter().any(|&m| m == 0 || m > 64) {
            problems.push(ParamError::invalid(
                "channel_mult",
                "needs 1 to 12 levels, each multiplier in 1..=64",
            ));
        }
        let mc = p.model_channels.unwrap_or(128);
        problems.extend(rules::product_at_most(
            &[
                ("model_channels", mc),
                ("channel_mult", mult.iter().copied().max().unwrap_or(1)),
            ],
            1 << 14,
        ));
        problems.extend(rules::at_least("model_channels", mc, 1));
        problems.extend(rules::at_most("num_blocks", p.num_blocks.unwrap_or(1), 64));
        problems.extend(rules::at_most("batch_size", p.batch_size.get(), 1 << 16));
        problems.extend(rules::positive("log_every_kimg", p.log_every_kimg));
        if p.log_every_kimg > 0.0 && p.duration_kimg / p.log_every_kimg > f64::from(1u32 << 20) {
            problems.push(ParamError::invalid(
                "log_every_kimg",
                format!(
                    "gives {:.0} log points for {} kimg; at most {}",
                    p.duration_kimg / p.log_every_kimg,
                    p.duration_kimg,
                    1u32 << 20
                ),
            ));
        }
        if let Some(s) = p.snapshot_kimg {
            problems.extend(rules::positive("snapshot_kimg", s));
            if s > 0.0 && p.duration_kimg / s > 10_000.0 {
                problems.push(ParamError::invalid(
                    "snapshot_kimg",
                    format!("gives {:.0} snapshots; at most 10 000", p.duration_kimg / s),
                ));
            }
        }
        if !(p.duration_kimg <= 1e9) {
            problems.push(ParamError::invalid("duration_kimg", "must be at most 1e9"));
        }
        problems
    }

    fn resources(p: &Params) -> Resources {
        Resources {
            gpus: p.devices.len().max(1) as u32,
            gpu_mem_mb: None,
        }
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 64, 2880)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let levels = p
            .channel_mult
            .as_ref()
            .map(Vec::len)
            .unwrap_or(match p.model {
                Preset::Ffhq64 => 4,
                _ => 3,
            });
        if set.h != set.w || set.h % (1 << (levels - 1)) != 0 {
            return Err(NodeError::msg(format!(
                "images are {}×{}; the network needs square images whose side divides by {} (pad or resize in the data node)",
                set.h,
                set.w,
                1 << (levels - 1)
            )));
        }
        let (labels, info) = match ctx.input("labels") {
            Some(a) => {
                let (l, i) = read_labels(a, set.n)?;
                (Some(l), i)
            }
            None => (None, LabelInfo::none()),
        };
        let cfg = p.network(set.h, set.c, info.dim);
        let specs = if p.devices.is_empty() {
            vec![ctx.device()]
        } else {
            p.devices.clone()
        };
        let computes = specs
            .iter()
            .map(|d| compute(*d))
            .collect::<Result<Vec<_>, _>>()?;
        let comp = computes[0].clone();
        let dev = comp.device().clone();
        crate::device::watch_memory(ctx, &comp);
        let ad = dev.clone().autodiff();
        let work = ctx.work_dir()?.to_path_buf();
        let ckpt = work.join("checkpoint.safetensors");
        let (mut net, mut ema, mut adam, mut ck) = if ckpt.exists() {
            let r = checkpoint::load(&ckpt, &cfg, &dev, &ad)?;
            ctx.log(format!(
                "resuming from the checkpoint at {:.1} kimg",
                r.3.nimg as f64 / 1000.0
            ));
            r
        } else {
            let net = cfg.init(p.seed, &ad);
            let ema = cfg.init(p.seed, &dev);
            let adam = Adam::new(&flat(&net), 0.9, 0.999, 1e-8);
            (
                net,
                ema,
                adam,
                Progress {
                    nimg: 0,
                    log: Vec::new(),
                    acc: (0.0, 0),
                    scale: LossScale::for_pixels(set.c * set.h * set.w),
                },
            )
        };
        let b = p.batch_size.get();
        let total = (p.duration_kimg * 1000.0).round() as u64;
        let steps_total = total.div_ceil(b as u64);
        let ck_every = (p.checkpoint_every_kimg.unwrap_or(p.duration_kimg / 10.0) * 1000.0)
            .max(b as f64) as u64;
        let log_every = ((p.log_every_kimg * 1000.0).round() as u64).max(1);
        // Snapshots at multiples of snapshot_kimg, each published as the run to that duration
        // (which ends at the first step at or past it, as this loop does).
        let snap_every = p.snapshot_kimg.map(|s| s * 1000.0);
        let mut next_snap = snap_every.map(|s| (ck.nimg as f64 / s).floor() + 1.0);
        let half_dtype = half_precision(&p, &computes, ctx)?;
        // Data parallel: replicas on the other listed devices (the first holds the master
        // weights, Adam and the EMA).
        let replicas: Vec<Device> = computes[1..]
            .iter()
            .map(|c| c.device().clone().autodiff())
            .collect();
        ctx.log(format!(
            "EDM on {} ({}): {} images {}×{}×{}, label_dim {} ({}), {} parameters, {steps_total} steps of {b}",
            comp.describe(),
            match half_dtype {
                None => "fp32".to_string(),
                Some(h) => format!("mixed precision {h:?}, f32 master weights"),
            } + &if replicas.is_empty() {
                String::new()
            } else {
                format!(
                    ", data parallel over {}",
                    p.devices.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )
            },
            set.n,
            set.c,
            set.h,
            set.w,
            info.dim,
            info.source,
            net.num_params()
        ));
        let pixels = (set.c * set.h * set.w) as f64;
        let loader = Loader {
            set: &set,
            labels: labels.as_deref(),
            label_dim: info.dim,
            augment_p: p.augment_p,
            p_uncond: p.p_uncond,
            seed: p.seed,
            batch: b,
        };
        let t0 = std::time::Instant::now();
        let start_nimg = ck.nimg;
        let mut next_log = (ck.nimg / log_every + 1) * log_every;
        let mut next_ck = (ck.nimg / ck_every + 1) * ck_every;
        while ck.nimg < total {
            if ctx.should_stop() {
                checkpoint::save(&work, &net, &ema, &adam, &ck)?;
                ctx.log(format!(
                    "stopped at {:.1} kimg; checkpoint saved",
                    ck.nimg as f64 / 1000.0
                ));
                return Err(NodeError::Interrupted);
            }
            let step = ck.nimg / b as u64;
            let batch = loader.batch(step);
            let seed = p.seed ^ step.wrapping_mul(0xA24B_AED4_963E_E407);
            let scale = match half_dtype {
                Some(FloatDType::F16) => ck.scale.scale,
                _ => 1.0,
            };
            let (lv, gs) =
                data_parallel_step(&net, &ad, &replicas, half_dtype, scale, &batch.view(), seed)
                    .map_err(|e| {
                        NodeError::msg(format!(
                            "training step at {:.1} kimg: {e}",
                            ck.nimg as f64 / 1000.0
                        ))
                    })?;
            let gs = match half_dtype {
                None => {
                    if !lv.is_finite() {
                        return Err(NodeError::msg(format!(
                            "loss is {lv} at {:.1} kimg; stopping (lower lr?)",
                            ck.nimg as f64 / 1000.0
                        )));
                    }
                    Some(gs)
                }
                Some(_) => {
                    let gs: Vec<Option<Tensor<1>>> =
                        gs.into_iter().map(|g| g.map(|g| g / scale)).collect();
                    let ok = lv.is_finite() && all_finite(&gs).map_err(NodeError::msg)?;
                    ck.scale.update(ok);
                    if ck.scale.skipped_run >= LossScale::MAX_SKIPPED_RUN {
                        return Err(NodeError::msg(format!(
                            "{} mixed-precision steps in a row had a non-finite loss or gradient (loss scale now {:e}) at {:.1} kimg; use `precision: fp32` or `bf16`",
                            ck.scale.skipped_run,
                            ck.scale.scale,
                            ck.nimg as f64 / 1000.0
                        )));
                    }
                    ok.then_some(gs)
                }
            };
            let lr = p.lr * (ck.nimg as f64 / (p.lr_rampup_kimg * 1000.0).max(1e-8)).min(1.0);
            if let Some(gs) = gs {
                let new = adam.update(flat(&net), gs, lr);
                net = assign(net, new, true);
            }
            // EMA (EDM: half-life ramped by the images seen before this step).
            let mut half = p.ema_halflife_kimg * 1000.0;
            if p.ema_rampup_ratio > 0.0 {
                half = half.min(ck.nimg as f64 * p.ema_rampup_ratio);
            }
            let beta = 0.5f64.powf(b as f64 / half.max(1e-8));
            ema = ema_update(ema, &net, beta);
            ck.nimg += b as u64;
            if lv.is_finite() {
                ck.acc.0 += f64::from(lv) / pixels;
                ck.acc.1 += 1;
            }
            if ck.nimg >= next_log {
                if ck.acc.1 > 0 {
                    ck.log
                        .push((ck.nimg as f64 / 1000.0, ck.acc.0 / ck.acc.1 as f64));
                }
                ck.acc = (0.0, 0);
                next_log = (ck.nimg / log_every + 1) * log_every;
            }
            let rate = (ck.nimg - start_nimg) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            // Live curves (`cedm watch`, `--json` progress fields); the loss scale only where
            // one is used (f16).
            let mut live = vec![
                ("loss", f64::from(lv) / pixels),
                ("lr", lr),
                ("img_per_s", rate),
                ("kimg", ck.nimg as f64 / 1000.0),
            ];
            if matches!(half_dtype, Some(FloatDType::F16)) {
                live.push(("loss_scale", ck.scale.scale));
            }
            ctx.scalars(ck.nimg as f64, "img", &live, ck.nimg >= total);
            ctx.progress(
                ck.nimg.min(total),
                Some(total),
                "img",
                Some(format!("loss {:.4}", f64::from(lv) / pixels)),
            );
            if let (Some(every), Some(k)) = (snap_every, next_snap.as_mut())
                && ck.nimg as f64 >= (*k * every).round()
                && ck.nimg < total
            {
                // The duration this state is the result of, written as a person would
                // (k × snapshot_kimg without float noise: 3 × 0.1 is 0.3).
                let kimg: f64 = format!("{:.6}", *k * every / 1000.0).parse().unwrap_or(0.0);
                while ck.nimg as f64 >= (*k * every).round() {
                    *k += 1.0;
                }
                checkpoint::save(&work, &net, &ema, &adam, &ck)?;
                ctx.snapshot(
                    kimg,
                    &|dir| write_outputs(dir, &ema, &cfg, &info, &ck),
                    Some(&ckpt),
                )?;
                next_ck = (ck.nimg / ck_every + 1) * ck_every;
            }
            if ck.nimg >= next_ck && ck.nimg < total {
                checkpoint::save(&work, &net, &ema, &adam, &ck)?;
                next_ck += ck_every;
            }
        }
        // The final state: what a longer run of this trajectory resumes from.
        checkpoint::save(&work, &net, &ema, &adam, &ck)?;
        let secs = t0.elapsed().as_secs_f64();
        if half_dtype.is_some() {
            ctx.stat("loss_scale", ck.scale.scale);
            ctx.stat("skipped_steps", ck.scale.skipped as f64);
        }
        ctx.stat("train_seconds", secs);
        ctx.stat("img_per_s", (ck.nimg - start_nimg) as f64 / secs.max(1e-9));
        ctx.log(format!(
            "{:.1} kimg in {secs:.0} s, final loss {:.4}",
            ck.nimg as f64 / 1000.0,
            ck.log.last().map(|l| l.1).unwrap_or(f64::NAN)
        ));
        write_outputs(ctx.out_dir(), &ema, &cfg, &info, &ck)
    }
}

/// The EMA of the network's weights: `ema ← net + (ema − net)·β`.
fn ema_update(ema: SongUNet, net: &SongUNet, beta: f64) -> SongUNet {
    let new: Vec<Tensor<1>> = flat(net)
        .into_iter()
        .zip(flat(&ema))
        .map(|(pn, pe)| crate::ops::ema(pe, pn, beta))
        .collect();
    assign(ema, new, false)
}

/// The half type of the forward/backward pass, after checking that every device computes in it
/// (`auto` falls back to fp32 on a device that does not; an explicit half type fails).
fn half_precision(
    p: &Params,
    computes: &[Compute],
    ctx: &RunContext<'_>,
) -> Result<Option<FloatDType>, NodeError> {
    let Some(h) = p.precision.half(&computes[0]) else {
        return Ok(None);
    };
    for c in computes {
        if let Err(e) = supports(c.device(), h) {
            // Device errors run to dozens of lines; the useful one says what is missing.
            let e = e
                .lines()
                .map(str::trim)
                .find(|l| l.contains("not supported") || l.contains("unsupported"))
                .or_else(|| e.lines().next())
                .unwrap_or("")
                .to_string();
            if p.precision == Precision::Auto {
                ctx.log(format!(
                    "{} cannot compute in {h:?} ({e}); training in fp32",
                    c.describe()
                ));
                return Ok(None);
            }
            return Err(NodeError::msg(format!(
                "precision {:?}: {} cannot compute in {h:?} ({e}); use `precision: fp32`",
                p.precision,
                c.describe()
            )));
        }
    }
    Ok(Some(h))
}

/// The outputs: the EMA network, its labels, the training log and the loss curve.
fn write_outputs(
    dir: &Path,
    ema: &SongUNet,
    cfg: &SongUNetConfig,
    info: &LabelInfo,
    ck: &Progress,
) -> Result<(), NodeError> {
    // The log so far and the last, partial interval (not kept in the state: a longer run goes
    // on accumulating that interval).
    let mut log = ck.log.clone();
    if ck.acc.1 > 0 {
        log.push((ck.nimg as f64 / 1000.0, ck.acc.0 / ck.acc.1 as f64));
    }
    save_network(
        &dir.join("network.safetensors"),
        ema,
        cfg,
        info,
        ck.nimg as f64 / 1000.0,
    )?;
    write_json(&dir.join("labels.json"), info)?;
    write_json(
        &dir.join("training.json"),
        &TrainingLog {
            kimg: ck.nimg as f64 / 1000.0,
            loss: log
                .iter()
                .map(|&(kimg, loss)| LossPoint { kimg, loss })
                .collect(),
            network: cfg.clone(),
            parameters: ema.num_params(),
        },
    )?;
    line_png(
        &dir.join("loss.png"),
        "EDM training loss (per pixel) vs kimg",
        &log,
        640,
        360,
    )
}

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
//! Port differences: EDM replaces NaN/±inf gradients by 0/±1e5 before the step; here a
//! non-finite loss stops a full-precision run instead (mixed precision skips the step and lowers
//! the loss scale, and stops after 50 skipped steps in a row).

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use cedm_engine::{
    Artifact, Checked, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::augment::{AUGMENT_DIM, AugmentConfig, augment};
use crate::clusters::ClusterLabels;
use crate::device::{Compute, compute};
use crate::edm::{denoise, loss_weight};
use crate::images::ImageSet;
use crate::io::{DType, TensorOut, Tensors, le_bytes, write_json, write_safetensors};
use crate::models::params::{Adam, assign, flat, grads};
use crate::models::songunet::{SongUNet, SongUNetConfig};
use crate::rng::Rng;

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

/// Dynamic loss scaling for f16 (torch.cuda.amp.GradScaler's defaults).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
struct LossScale {
    scale: f64,
    /// Good steps since the last change.
    good: u64,
    /// Skipped steps in a row, and in total.
    skipped_run: u64,
    skipped: u64,
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
    fn for_pixels(pixels: usize) -> LossScale {
        let e = (32768.0 / pixels.max(1) as f64).log2().floor().max(0.0);
        LossScale {
            scale: 2f64.powf(e),
            ..LossScale::default()
        }
    }
    const MAX_SKIPPED_RUN: u64 = 50;

    /// Record a step's outcome: finite gradients keep (or after enough good steps, double) the
    /// scale; otherwise the step is skipped and the scale halved.
    fn update(&mut self, finite: bool) {
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
    pub batch_size: usize,
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
    /// Checkpoint period in kimg. Default: a tenth of the duration.
    #[serde(default)]
    pub checkpoint_every_kimg: Option<f64>,
    /// Loss-curve resolution: points in the training log. Default: 200.
    #[serde(default = "d_points")]
    pub log_points: usize,
    /// `auto` (f16 mixed precision on GPUs, fp32 on the CPU), `fp32`, `fp16` or `bf16`.
    /// Default: auto.
    #[serde(default, skip_serializing_if = "Precision::is_auto")]
    pub precision: Precision,
    /// Train data parallel over these devices (e.g. `[cuda:0, cuda:1]`): the batch is split
    /// across them and the gradients summed on the first. Empty: the run's device. Not part of
    /// the key (results equal one device's up to floating-point order). Default: [].
    #[serde(default)]
    pub devices: Vec<String>,
}

fn cifar() -> Preset {
    Preset::Cifar
}
fn d_duration() -> f64 {
    100_000.0
}
fn d_batch() -> usize {
    1024
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
fn d_points() -> usize {
    200
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

/// Conditioning labels of the training images: remapped ids in `0..dim`, counts per id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelInfo {
    /// Label dimension (0 = unconditional).
    pub dim: usize,
    /// Images per label (q(c) = counts / N).
    pub counts: Vec<i64>,
    /// Where the labels came from (`cluster/temi`, `data/idx` ground truth, `none`).
    pub source: String,
}

/// Read the labels input: a cluster artifact, or an image artifact's ground truth.
///
/// # Errors
/// When the artifact has neither, or its count differs from `n`.
pub fn read_labels(a: &Artifact, n: usize) -> Result<(Vec<i64>, LabelInfo), NodeError> {
    let (labels, source) = if a.files.contains_key("clusters.safetensors") {
        (ClusterLabels::read(a)?.labels, a.record.kind.clone())
    } else if let Ok(p) = a.path("labels.safetensors") {
        let raw = Tensors::open(p)?.i64("labels")?.data;
        let mut u = raw.clone();
        u.sort_unstable();
        u.dedup();
        let idx: BTreeMap<i64, i64> = u.iter().enumerate().map(|(i, &v)| (v, i as i64)).collect();
        (
            raw.iter().map(|v| idx[v]).collect(),
            format!("{} ground truth", a.record.kind),
        )
    } else {
        return Err(NodeError::msg(format!(
            "input `labels` ({}) has neither cluster labels nor ground-truth labels",
            a.record.kind
        )));
    };
    if labels.len() != n {
        return Err(NodeError::msg(format!(
            "{} labels for {n} training images",
            labels.len()
        )));
    }
    let dim = labels
        .iter()
        .copied()
        .max()
        .map(|m| m as usize + 1)
        .unwrap_or(0);
    let mut counts = vec![0i64; dim];
    for &l in &labels {
        counts[l as usize] += 1;
    }
    Ok((
        labels,
        LabelInfo {
            dim,
            counts,
            source,
        },
    ))
}

/// Save a network (EMA weights) with its configuration.
///
/// # Errors
/// I/O errors.
pub fn save_network(
    path: &Path,
    net: &SongUNet,
    cfg: &SongUNetConfig,
    labels: &LabelInfo,
    kimg: f64,
) -> Result<(), NodeError> {
    let named = net.named_params();
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = named
        .iter()
        .map(|(k, (s, v))| (k.clone(), s.clone(), le_bytes(v)))
        .collect();
    let tensors: Vec<TensorOut<'_>> = bytes
        .iter()
        .map(|(n, s, b)| TensorOut {
            name: n,
            dtype: DType::F32,
            shape: s.clone(),
            data: b,
        })
        .collect();
    let meta: BTreeMap<String, String> = [
        ("format".to_string(), "cedm-songunet-v1".to_string()),
        (
            "config".to_string(),
            serde_json::to_string(cfg).unwrap_or_default(),
        ),
        (
            "labels".to_string(),
            serde_json::to_string(labels).unwrap_or_default(),
        ),
        ("kimg".to_string(), format!("{kimg}")),
    ]
    .into();
    write_safetensors(path, &tensors, &meta)
}

/// Load a network written by [`save_network`].
///
/// # Errors
/// Malformed files.
pub fn load_network(
    path: &Path,
    device: &Device,
) -> Result<(SongUNet, SongUNetConfig, LabelInfo), NodeError> {
    let t = Tensors::open(path)?;
    let meta = t.metadata();
    let cfg: SongUNetConfig =
        serde_json::from_str(meta.get("config").map(String::as_str).unwrap_or(""))
            .map_err(|e| NodeError::msg(format!("{}: no network config: {e}", path.display())))?;
    let labels: LabelInfo =
        serde_json::from_str(meta.get("labels").map(String::as_str).unwrap_or(""))
            .map_err(|e| NodeError::msg(format!("{}: no label info: {e}", path.display())))?;
    let mut named = BTreeMap::new();
    for n in t.names() {
        let v = t.f32(&n)?;
        named.insert(n, (v.shape, v.data));
    }
    let net = cfg
        .init(0, device)
        .load_named(&named, device)
        .map_err(|e| NodeError::msg(format!("{}: {e}", path.display())))?;
    Ok((net, cfg, labels))
}

struct Checkpoint {
    nimg: u64,
    log: Vec<(f64, f64)>,
    /// The running loss sum and count of the current log interval (so a resumed run logs the
    /// same curve as an uninterrupted one).
    acc: (f64, u64),
    /// Mixed precision's loss scale.
    scale: LossScale,
}

fn save_checkpoint(
    dir: &Path,
    net: &SongUNet,
    ema: &SongUNet,
    adam: &Adam,
    ck: &Checkpoint,
) -> Result<(), NodeError> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (k, (s, v)) in net.named_params() {
        owned.push((format!("net.{k}"), s, le_bytes(&v)));
    }
    for (k, (s, v)) in ema.named_params() {
        owned.push((format!("ema.{k}"), s, le_bytes(&v)));
    }
    for (i, (m, v)) in adam.m.iter().zip(&adam.v).enumerate() {
        let mv: Vec<f32> = m.clone().into_data().try_into_vec().unwrap_or_default();
        let vv: Vec<f32> = v.clone().into_data().try_into_vec().unwrap_or_default();
        owned.push((format!("adam.m.{i:05}"), vec![mv.len()], le_bytes(&mv)));
        owned.push((format!("adam.v.{i:05}"), vec![vv.len()], le_bytes(&vv)));
    }
    let tensors: Vec<TensorOut<'_>> = owned
        .iter()
        .map(|(n, s, b)| TensorOut {
            name: n,
            dtype: DType::F32,
            shape: s.clone(),
            data: b,
        })
        .collect();
    let meta: BTreeMap<String, String> = [
        ("nimg".to_string(), ck.nimg.to_string()),
        ("adam_step".to_string(), adam.step.to_string()),
        (
            "log".to_string(),
            serde_json::to_string(&ck.log).unwrap_or_default(),
        ),
        (
            "acc".to_string(),
            serde_json::to_string(&ck.acc).unwrap_or_default(),
        ),
        (
            "loss_scale".to_string(),
            serde_json::to_string(&ck.scale).unwrap_or_default(),
        ),
    ]
    .into();
    let tmp = dir.join("checkpoint.safetensors.tmp");
    write_safetensors(&tmp, &tensors, &meta)?;
    let dst = dir.join("checkpoint.safetensors");
    std::fs::rename(&tmp, &dst).map_err(NodeError::io("renaming", &dst))
}

fn load_checkpoint(
    path: &Path,
    cfg: &SongUNetConfig,
    dev: &Device,
    ad: &Device,
) -> Result<(SongUNet, SongUNet, Adam, Checkpoint), NodeError> {
    let t = Tensors::open(path)?;
    let mut net_p = BTreeMap::new();
    let mut ema_p = BTreeMap::new();
    let mut m = Vec::new();
    let mut v = Vec::new();
    for n in t.names() {
        let x = t.f32(&n)?;
        if let Some(k) = n.strip_prefix("net.") {
            net_p.insert(k.to_string(), (x.shape, x.data));
        } else if let Some(k) = n.strip_prefix("ema.") {
            ema_p.insert(k.to_string(), (x.shape, x.data));
        } else if n.starts_with("adam.m.") {
            m.push(Tensor::<1>::from_data(
                TensorData::new(x.data, x.shape),
                dev,
            ));
        } else if n.starts_with("adam.v.") {
            v.push(Tensor::<1>::from_data(
                TensorData::new(x.data, x.shape),
                dev,
            ));
        }
    }
    let err = |e: String| NodeError::msg(format!("checkpoint {}: {e}", path.display()));
    let net = cfg.init(0, ad).load_named(&net_p, ad).map_err(err)?;
    let ema = cfg
        .init(0, dev)
        .load_named(&ema_p, dev)
        .map_err(|e| NodeError::msg(format!("checkpoint: {e}")))?;
    let meta = t.metadata();
    let step = meta
        .get("adam_step")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let adam = Adam {
        m,
        v,
        step,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let ck = Checkpoint {
        nimg: meta.get("nimg").and_then(|s| s.parse().ok()).unwrap_or(0),
        log: meta
            .get("log")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default(),
        acc: meta
            .get("acc")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or((0.0, 0)),
        scale: meta
            .get("loss_scale")
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default(),
    };
    Ok((net, ema, adam, ck))
}

/// The `edm/train` kind.
pub struct EdmTrain;

impl Node for EdmTrain {
    fn kind(&self) -> &'static str {
        "edm/train"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Train an EDM denoiser (SongUNet DDPM++) conditioned on cluster labels, ground truth or nothing; EMA weights, loss curve"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[
            Slot::one("images", "the training images (data/*)"),
            Slot::optional(
                "labels",
                "cluster labels (cluster/*) or an image artifact with ground truth; omit for unconditional",
            ),
        ];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        if !(p.duration_kimg > 0.0) {
            return Err(ParamError::invalid("duration_kimg", "must be positive"));
        }
        if p.batch_size == 0 {
            return Err(ParamError::invalid("batch_size", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&p.augment_p) || !(0.0..=1.0).contains(&p.p_uncond) {
            return Err(ParamError::invalid(
                if (0.0..=1.0).contains(&p.augment_p) {
                    "p_uncond"
                } else {
                    "augment_p"
                },
                "must be in [0, 1]",
            ));
        }
        if let Some(m) = &p.channel_mult {
            if m.is_empty() {
                return Err(ParamError::invalid(
                    "channel_mult",
                    "needs at least one level",
                ));
            }
        }
        for d in &p.devices {
            cedm_engine::parse_device(d).map_err(|e| ParamError::invalid("devices", e))?;
        }
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources {
                gpus: p.devices.len().max(1) as u32,
            },
        })
    }
    fn unkeyed_params(&self) -> &'static [&'static str] {
        &["devices"]
    }
    fn batch_defaults(&self) -> cedm_engine::BatchDefaults {
        cedm_engine::BatchDefaults {
            cpus: 8,
            mem_gb: 64,
            minutes: 2880,
        }
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: Params = ctx.params()?;
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
            None => (
                None,
                LabelInfo {
                    dim: 0,
                    counts: vec![],
                    source: "none".into(),
                },
            ),
        };
        let cfg = p.network(set.h, set.c, info.dim);
        let names: Vec<String> = if p.devices.is_empty() {
            vec![ctx.device().to_string()]
        } else {
            p.devices.clone()
        };
        let computes = names
            .iter()
            .map(|d| compute(d))
            .collect::<Result<Vec<_>, _>>()?;
        let comp = computes[0].clone();
        let dev = comp.device().clone();
        let ad = dev.clone().autodiff();
        let work = ctx.work_dir()?.to_path_buf();
        let ckpt = work.join("checkpoint.safetensors");
        let (mut net, mut ema, mut adam, mut ck) = if ckpt.exists() {
            let r = load_checkpoint(&ckpt, &cfg, &dev, &ad)?;
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
                Checkpoint {
                    nimg: 0,
                    log: Vec::new(),
                    acc: (0.0, 0),
                    scale: LossScale::for_pixels(set.c * set.h * set.w),
                },
            )
        };
        let total = (p.duration_kimg * 1000.0).round() as u64;
        let b = p.batch_size;
        let steps_total = total.div_ceil(b as u64);
        let ck_every = (p.checkpoint_every_kimg.unwrap_or(p.duration_kimg / 10.0) * 1000.0)
            .max(b as f64) as u64;
        let log_every = (total / p.log_points.max(1) as u64).max(b as u64);
        let mut half_dtype = p.precision.half(&comp);
        if let Some(h) = half_dtype {
            for c in &computes {
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
                        half_dtype = None;
                        break;
                    }
                    return Err(NodeError::msg(format!(
                        "precision {:?}: {} cannot compute in {h:?} ({e}); use `precision: fp32`",
                        p.precision,
                        c.describe()
                    )));
                }
            }
        }
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
                format!(", data parallel over {}", p.devices.join(", "))
            },
            set.n,
            set.c,
            set.h,
            set.w,
            info.dim,
            info.source,
            net.num_params()
        ));
        let (c, h, w) = (set.c, set.h, set.w);
        let il = c * h * w;
        let aug_cfg = AugmentConfig { p: p.augment_p };
        let t0 = std::time::Instant::now();
        let start_nimg = ck.nimg;
        let mut next_log = (ck.nimg / log_every + 1) * log_every;
        let mut next_ck = (ck.nimg / ck_every + 1) * ck_every;
        while ck.nimg < total {
            if ctx.should_stop() {
                save_checkpoint(&work, &net, &ema, &adam, &ck)?;
                ctx.log(format!(
                    "stopped at {:.1} kimg; checkpoint saved",
                    ck.nimg as f64 / 1000.0
                ));
                return Err(NodeError::Interrupted);
            }
            let step = ck.nimg / b as u64;
            // Every step's randomness derives from (seed, step): resuming repeats it exactly.
            let mut rng = Rng::stream(p.seed, step);
            let epoch_len = set.n as u64;
            let mut xb = Vec::with_capacity(b * il);
            let mut ab = Vec::with_capacity(b * AUGMENT_DIM);
            let mut lb = vec![0f32; b * info.dim];
            for r in 0..b {
                // Sampling with replacement by position in a per-epoch permutation.
                let g = step * b as u64 + r as u64;
                let ep = g / epoch_len;
                let i = permuted(
                    g % epoch_len,
                    epoch_len,
                    p.seed ^ ep.wrapping_mul(0x9E37_79B9),
                );
                let img: Vec<f32> = set
                    .image(i as usize)
                    .iter()
                    .map(|&v| f32::from(v) / 127.5 - 1.0)
                    .collect();
                if p.augment_p > 0.0 {
                    let (a, l) = augment(&img, c, h, w, &aug_cfg, &mut rng);
                    xb.extend(a);
                    ab.extend_from_slice(&l);
                } else {
                    xb.extend(img);
                }
                if let Some(ls) = &labels {
                    if !(p.p_uncond > 0.0 && rng.uniform() < p.p_uncond) {
                        lb[r * info.dim + ls[i as usize] as usize] = 1.0;
                    }
                }
            }
            let sigma: Vec<f64> = (0..b).map(|_| (rng.normal() * 1.2 - 1.2).exp()).collect();
            let noise: Vec<f32> = (0..b * il)
                .map(|j| (rng.normal() * sigma[j / il]) as f32)
                .collect();
            let wts: Vec<f32> = sigma.iter().map(|&s| loss_weight(s) as f32).collect();
            let batch = Batch {
                x: &xb,
                noise: &noise,
                labels: &lb,
                aug: &ab,
                weights: &wts,
                sigma: &sigma,
                shape: [c, h, w],
                label_dim: info.dim,
                aug_dim: if p.augment_p > 0.0 { AUGMENT_DIM } else { 0 },
            };
            let seed = p.seed ^ step.wrapping_mul(0xA24B_AED4_963E_E407);
            let scale = match half_dtype {
                Some(FloatDType::F16) => ck.scale.scale,
                _ => 1.0,
            };
            let (lv, gs) = data_parallel_step(
                &net, &ad, &replicas, half_dtype, scale, &batch, seed,
            )
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
            let ema_new: Vec<Tensor<1>> = flat(&net)
                .into_iter()
                .zip(flat(&ema))
                .map(|(pn, pe)| pn.clone() + (pe - pn) * beta)
                .collect();
            ema = assign(ema, ema_new, false);
            ck.nimg += b as u64;
            if lv.is_finite() {
                ck.acc.0 += f64::from(lv) / (c * h * w) as f64;
                ck.acc.1 += 1;
            }
            if ck.nimg >= next_log || ck.nimg >= total {
                ck.log
                    .push((ck.nimg as f64 / 1000.0, ck.acc.0 / ck.acc.1 as f64));
                ck.acc = (0.0, 0);
                next_log += log_every;
            }
            let rate = (ck.nimg - start_nimg) as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            ctx.progress(
                ck.nimg.min(total),
                Some(total),
                "img",
                Some(format!(
                    "loss {:.4} ({rate:.0} img/s)",
                    f64::from(lv) / (c * h * w) as f64
                )),
            );
            if ck.nimg >= next_ck && ck.nimg < total {
                save_checkpoint(&work, &net, &ema, &adam, &ck)?;
                next_ck += ck_every;
            }
        }
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
        save_network(
            &ctx.out_dir().join("network.safetensors"),
            &ema,
            &cfg,
            &info,
            ck.nimg as f64 / 1000.0,
        )?;
        write_json(
            &ctx.out_dir().join("labels.json"),
            &serde_json::to_value(&info).unwrap_or_default(),
        )?;
        write_json(
            &ctx.out_dir().join("training.json"),
            &serde_json::json!({
                "kimg": ck.nimg as f64 / 1000.0,
                "loss": ck.log.iter().map(|(k, l)| serde_json::json!({"kimg": k, "loss": l})).collect::<Vec<_>>(),
                "network": cfg,
                "parameters": ema.num_params(),
            }),
        )?;
        crate::plot::line_png(
            &ctx.out_dir().join("loss.png"),
            "EDM training loss (per pixel) vs kimg",
            &ck.log,
            640,
            360,
        )
    }
}

/// One training batch on the host, row-major per sample.
pub(crate) struct Batch<'a> {
    pub x: &'a [f32],
    pub noise: &'a [f32],
    pub labels: &'a [f32],
    pub aug: &'a [f32],
    pub weights: &'a [f32],
    pub sigma: &'a [f64],
    pub shape: [usize; 3],
    pub label_dim: usize,
    pub aug_dim: usize,
}

/// One optimiser step exactly as `edm/train` takes it (loss, backward, with `half` the
/// mixed-precision casts, unscaling and the finiteness check; Adam; no EMA), for `cedm bench
/// edm`. `device` is the autodiff device `net` lives on. Returns the updated network and the
/// loss.
pub(crate) fn bench_step(
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
fn read_scalar(t: Tensor<1>) -> Result<f32, String> {
    t.try_into_vec_as::<f32>()
        .map_err(|e| format!("the device failed: {e}"))?
        .first()
        .copied()
        .ok_or_else(|| "empty read-back".to_string())
}

/// Whether the device computes in `half`: a tiny cast, product and read-back (Vulkan through
/// OpenGL fallbacks and some drivers lack WGSL's f16 extension).
fn supports(dev: &Device, half: FloatDType) -> Result<(), String> {
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
fn data_parallel_step(
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
        return shard_step(net, half, scale, bt, 0, b, master);
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
fn all_finite(gs: &[Option<Tensor<1>>]) -> Result<bool, String> {
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

/// Position `i` of a seeded pseudo-random permutation of `0..n` (a Feistel-style bijection by
/// cycle walking), so batches need no stored order and resume exactly.
fn permuted(i: u64, n: u64, seed: u64) -> u64 {
    if n <= 1 {
        return 0;
    }
    let bits = 64 - (n - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mask = (1u64 << half) - 1;
    let round = |x: u64, r: u64| -> u64 {
        let mut z = x ^ seed ^ r.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (z ^ (z >> 29)) & mask
    };
    let mut x = i;
    loop {
        let (mut l, mut r) = (x >> half, x & mask);
        for k in 0..4 {
            let t = l ^ round(r, k);
            l = r;
            r = t;
        }
        x = (l << half) | r;
        if x < n {
            return x;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_a_bijection() {
        for n in [1u64, 2, 7, 100, 1000] {
            let mut seen = vec![false; n as usize];
            for i in 0..n {
                let j = permuted(i, n, 42);
                assert!(j < n && !seen[j as usize], "n {n}");
                seen[j as usize] = true;
            }
        }
    }
}

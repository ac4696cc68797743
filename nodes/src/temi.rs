//! `cluster/temi`: TEMI clustering heads on frozen features (paper §b; C-EDM's label source).
//!
//! Every epoch visits the items in a seeded random order in batches (the last incomplete batch
//! dropped, as TEMI's loader); each item's positive is drawn uniformly among its first `knn`
//! neighbours. Per step: teacher probabilities update the per-head prior q̃ (EMA 0.9) before the
//! loss, the pair weight w is the teacher's agreement averaged over heads, the loss is TEMI's
//! −log Σ_c (q_s q_t)^γ / q̃ weighted by w, symmetrised and averaged over heads; AdamW updates
//! the student, the teacher follows by EMA. After each epoch the head with the lowest mean loss
//! becomes the best head; its teacher assigns every item to argmax_c. Schedules follow TEMI's
//! `train_main.py`: learning rate scaled by batch/256, linear warm-up then cosine to `min_lr`
//! (constant when equal), last layer frozen for `freeze_last_layer` epochs.
//!
//! Training checkpoints every epoch in the node's work directory; a re-run resumes there (each
//! epoch's randomness derives from (seed, epoch), so a resumed run gives the same result).

use std::collections::BTreeMap;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use cedm_engine::{Checked, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::clusters::Clusters;
use crate::device::compute;
use crate::features::Features;
use crate::io::{DType, TensorOut, Tensors, le_bytes, write_json, write_safetensors};
use crate::knn::{self, Knn};
use crate::models::temi_heads::{Heads, HeadsConfig, StepConfig, TemiState, forward, to_torch};
use crate::rng::Rng;

/// Params of `cluster/temi` (defaults: the paper's, seed Table 5 / TEMI's README).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters C (output dimension of each head). Required.
    pub clusters: usize,
    /// Heads H trained in parallel; the best is kept. Default: 50 (paper).
    #[serde(default = "d_heads")]
    pub heads: usize,
    /// Exponent γ of TEMI's loss (0.6 clusters; 1 gives the plain-PMI variant the cluster-count
    /// bound uses). Default: 0.6.
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// Epochs. Default: 200.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Pairs per step. Default: 512.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
    /// Base learning rate, scaled by batch_size/256 as TEMI does. Default: 1e-4.
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Final learning rate of the cosine schedule (scaled likewise). Default: 1e-4 (constant).
    #[serde(default = "d_lr")]
    pub min_lr: f64,
    /// Epochs of linear warm-up from 0. Default: 20 (TEMI's README).
    #[serde(default = "d_warmup")]
    pub warmup_epochs: usize,
    /// AdamW weight decay (weights, not biases). Default: 1e-4.
    #[serde(default = "d_lr")]
    pub weight_decay: f64,
    /// Teacher EMA momentum. Default: 0.996.
    #[serde(default = "d_momentum")]
    pub teacher_momentum: f64,
    /// EMA momentum of the per-head cluster prior q̃. Default: 0.9.
    #[serde(default = "d_prior")]
    pub prior_momentum: f64,
    /// Softmax temperature of student and teacher. Default: 0.1.
    #[serde(default = "d_temp")]
    pub temperature: f64,
    /// Positives are drawn among this many nearest neighbours. Default: 50.
    #[serde(default = "d_knn")]
    pub knn: usize,
    /// Hidden width of the heads. Default: 512.
    #[serde(default = "d_hidden")]
    pub hidden_dim: usize,
    /// Hidden layers before the bottleneck: 2 gives D→512→512→256 (as specified for cedm);
    /// TEMI's code default is 1 (D→512→256). Default: 2.
    #[serde(default = "d_layers")]
    pub hidden_layers: usize,
    /// Bottleneck width before the weight-normalised last layer. Default: 256.
    #[serde(default = "d_bottleneck")]
    pub bottleneck_dim: usize,
    /// Epochs during which the last layer is not updated. Default: 1.
    #[serde(default = "d_freeze")]
    pub freeze_last_layer: usize,
    /// Seed of initialisation, order and positives. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn d_heads() -> usize {
    50
}
fn d_gamma() -> f64 {
    0.6
}
fn d_epochs() -> usize {
    200
}
fn d_batch() -> usize {
    512
}
fn d_lr() -> f64 {
    1e-4
}
fn d_warmup() -> usize {
    20
}
fn d_momentum() -> f64 {
    0.996
}
fn d_prior() -> f64 {
    0.9
}
fn d_temp() -> f64 {
    0.1
}
fn d_knn() -> usize {
    50
}
fn d_hidden() -> usize {
    512
}
fn d_layers() -> usize {
    2
}
fn d_bottleneck() -> usize {
    256
}
fn d_freeze() -> usize {
    1
}

/// TEMI's `cosine_scheduler`: linear warm-up from 0 over `warmup` iterations, then a cosine from
/// `base` to `end` over the rest.
pub fn cosine_schedule(base: f64, end: f64, total: usize, warmup: usize, it: usize) -> f64 {
    if it < warmup {
        if warmup == 1 {
            return 0.0;
        }
        return base * it as f64 / (warmup - 1) as f64;
    }
    let rest = (total - warmup).max(1);
    end + 0.5
        * (base - end)
        * (1.0 + (std::f64::consts::PI * (it - warmup) as f64 / rest as f64).cos())
}

/// The `cluster/temi` kind.
pub struct ClusterTemi;

fn save_checkpoint(
    dir: &Path,
    st: &TemiState,
    epoch: usize,
    best: usize,
    history: &[Vec<f32>],
) -> Result<(), NodeError> {
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut push = |name: String, t: &Tensor<3>| {
        let v: Vec<f32> = t.clone().into_data().try_into_vec().unwrap_or_default();
        owned.push((name, t.dims().to_vec(), le_bytes(&v)));
    };
    for (i, p) in st.student.params.iter().enumerate() {
        push(format!("student.{i}"), p);
    }
    for (i, p) in st.teacher.params.iter().enumerate() {
        push(format!("teacher.{i}"), p);
    }
    push("prior".into(), &st.prior);
    let (m, v, steps) = st.adam.parts();
    for (i, t) in m.iter().enumerate() {
        push(format!("adam_m.{i}"), t);
    }
    for (i, t) in v.iter().enumerate() {
        push(format!("adam_v.{i}"), t);
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
        ("epoch".to_string(), epoch.to_string()),
        ("best_head".to_string(), best.to_string()),
        (
            "adam_steps".to_string(),
            serde_json::to_string(&steps).unwrap_or_default(),
        ),
        (
            "history".to_string(),
            serde_json::to_string(history).unwrap_or_default(),
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
    st: &mut TemiState,
) -> Result<(usize, usize, Vec<Vec<f32>>), NodeError> {
    let t = Tensors::open(path)?;
    let dev = st.prior.device();
    let get = |name: &str, like: &Tensor<3>| -> Result<Tensor<3>, NodeError> {
        let v = t.f32(name)?;
        let d = like.dims();
        if v.shape != d {
            return Err(NodeError::msg(format!(
                "checkpoint tensor {name} has shape {:?}, expected {d:?}",
                v.shape
            )));
        }
        Ok(Tensor::from_data(TensorData::new(v.data, d), &dev))
    };
    for i in 0..st.student.params.len() {
        st.student.params[i] = get(&format!("student.{i}"), &st.student.params[i])?;
        st.teacher.params[i] = get(&format!("teacher.{i}"), &st.teacher.params[i])?;
    }
    st.prior = get("prior", &st.prior)?;
    let meta = t.metadata();
    let steps: Vec<u32> = meta
        .get("adam_steps")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    let n = st.student.params.len();
    let mut m = Vec::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        m.push(get(&format!("adam_m.{i}"), &st.student.params[i])?);
        v.push(get(&format!("adam_v.{i}"), &st.student.params[i])?);
    }
    st.adam.restore(m, v, steps);
    let epoch = meta.get("epoch").and_then(|s| s.parse().ok()).unwrap_or(0);
    let best = meta
        .get("best_head")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let history = meta
        .get("history")
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    Ok((epoch, best, history))
}

/// Cluster ids (argmax over C) of every row with one head's teacher parameters.
pub fn assign(heads: &Heads, head: usize, feats: &Features, batch: usize) -> Vec<i64> {
    let one = heads.single(head);
    let dev = one.params[0].device();
    let mut out = Vec::with_capacity(feats.n);
    let mut start = 0;
    while start < feats.n {
        let b = batch.min(feats.n - start);
        let x = Tensor::<2>::from_data(
            TensorData::new(
                feats.data[start * feats.d..(start + b) * feats.d].to_vec(),
                [b, feats.d],
            ),
            &dev,
        );
        let logits = forward(&one.config, &one.params, x); // [1, b, C]
        let ids: Vec<i64> = logits
            .argmax(2)
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .unwrap_or_default();
        out.extend(ids);
        start += b;
    }
    out
}

impl Node for ClusterTemi {
    fn kind(&self) -> &'static str {
        "cluster/temi"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "TEMI clustering heads on frozen features with kNN positives → cluster labels, q(c), C_u, KL(U‖p)"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[
            Slot::one("features", "a feature artifact (features/*)"),
            Slot::one("knn", "its neighbours (features/knn)"),
        ];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        let positive = [
            ("clusters", p.clusters),
            ("heads", p.heads),
            ("epochs", p.epochs),
            ("batch_size", p.batch_size),
            ("knn", p.knn),
            ("hidden_dim", p.hidden_dim),
            ("hidden_layers", p.hidden_layers),
            ("bottleneck_dim", p.bottleneck_dim),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(ParamError::invalid(name, "must be at least 1"));
            }
        }
        if p.clusters < 2 {
            return Err(ParamError::invalid("clusters", "must be at least 2"));
        }
        if !(p.gamma > 0.0 && p.gamma <= 1.0) {
            return Err(ParamError::invalid(
                "gamma",
                format!("must be in (0, 1], not {}", p.gamma),
            ));
        }
        if p.warmup_epochs > p.epochs {
            return Err(ParamError::invalid(
                "warmup_epochs",
                format!(
                    "{} warm-up epochs exceed the {} epochs",
                    p.warmup_epochs, p.epochs
                ),
            ));
        }
        for (name, v) in [
            ("teacher_momentum", p.teacher_momentum),
            ("prior_momentum", p.prior_momentum),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(ParamError::invalid(name, "must be in [0, 1]"));
            }
        }
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources { gpus: 1 },
        })
    }
    fn batch_defaults(&self) -> cedm_engine::BatchDefaults {
        cedm_engine::BatchDefaults {
            cpus: 8,
            mem_gb: 32,
            minutes: 720,
        }
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: Params = ctx.params()?;
        let feats = Features::read(ctx.require("features")?)?;
        let nn: Knn = knn::read(ctx.require("knn")?)?;
        if nn.n != feats.n {
            return Err(NodeError::msg(format!(
                "kNN has {} rows but the features {}",
                nn.n, feats.n
            )));
        }
        if p.knn > nn.k {
            return Err(NodeError::msg(format!(
                "param knn = {} but the kNN input has only {} neighbours per item",
                p.knn, nn.k
            )));
        }
        let iters = feats.n / p.batch_size;
        if iters == 0 {
            return Err(NodeError::msg(format!(
                "{} items are fewer than one batch of {}",
                feats.n, p.batch_size
            )));
        }
        let comp = compute(ctx.device())?;
        let dev = comp.device().clone();
        let cfg = HeadsConfig {
            heads: p.heads,
            input: feats.d,
            hidden: p.hidden_dim,
            hidden_layers: p.hidden_layers,
            bottleneck: p.bottleneck_dim,
            clusters: p.clusters,
        };
        let mut st = TemiState::new(cfg.init(p.seed, &dev));
        let work = ctx.work_dir()?.to_path_buf();
        let ckpt = work.join("checkpoint.safetensors");
        let (mut start_epoch, mut best, mut history) = (0, 0, Vec::<Vec<f32>>::new());
        if ckpt.exists() {
            let (e, b, h) = load_checkpoint(&ckpt, &mut st)?;
            ctx.log(format!("resuming from the checkpoint after epoch {e}"));
            start_epoch = e;
            best = b;
            history = h;
        }
        let scale = p.batch_size as f64 / 256.0;
        let total = p.epochs * iters;
        let t0 = std::time::Instant::now();
        ctx.log(format!(
            "TEMI on {}: {} items × {} dims, C = {}, {} heads, γ = {}, {} epochs × {iters} steps",
            comp.describe(),
            feats.n,
            feats.d,
            p.clusters,
            p.heads,
            p.gamma,
            p.epochs
        ));
        let mut xb = vec![0f32; p.batch_size * feats.d];
        let mut nb = vec![0f32; p.batch_size * feats.d];
        for epoch in start_epoch..p.epochs {
            let mut rng = Rng::stream(p.seed, epoch as u64 + 1);
            let mut order: Vec<usize> = (0..feats.n).collect();
            rng.shuffle(&mut order);
            let mut sums = vec![0f64; p.heads];
            for it in 0..iters {
                if ctx.should_stop() {
                    return Err(NodeError::Interrupted);
                }
                for (r, &i) in order[it * p.batch_size..(it + 1) * p.batch_size]
                    .iter()
                    .enumerate()
                {
                    let j = nn.indices[i * nn.k + rng.below(p.knn as u64) as usize] as usize;
                    xb[r * feats.d..(r + 1) * feats.d].copy_from_slice(feats.row(i));
                    nb[r * feats.d..(r + 1) * feats.d].copy_from_slice(feats.row(j));
                }
                let g = epoch * iters + it;
                let sc = StepConfig {
                    temperature: p.temperature,
                    gamma: p.gamma,
                    prior_momentum: p.prior_momentum,
                    teacher_momentum: p.teacher_momentum,
                    lr: cosine_schedule(
                        p.lr * scale,
                        p.min_lr * scale,
                        total,
                        p.warmup_epochs * iters,
                        g,
                    ),
                    weight_decay: p.weight_decay,
                    freeze_last: epoch < p.freeze_last_layer,
                };
                let x = Tensor::<2>::from_data(
                    TensorData::new(xb.clone(), [p.batch_size, feats.d]),
                    &dev,
                );
                let xn = Tensor::<2>::from_data(
                    TensorData::new(nb.clone(), [p.batch_size, feats.d]),
                    &dev,
                );
                let out = st.step(x, xn, &sc);
                if !out.loss.is_finite() {
                    return Err(NodeError::msg(format!(
                        "loss is {} at epoch {epoch}, step {it}; stopping",
                        out.loss
                    )));
                }
                for (s, l) in sums.iter_mut().zip(&out.head_losses) {
                    *s += f64::from(*l);
                }
                let done = (g + 1 - start_epoch * iters) as f64;
                let eta_rate = done / t0.elapsed().as_secs_f64().max(1e-9);
                ctx.progress(
                    (g + 1) as u64,
                    Some(total as u64),
                    "step",
                    Some(format!(
                        "epoch {epoch} loss {:.4} ({eta_rate:.1} step/s)",
                        out.loss
                    )),
                );
            }
            let means: Vec<f32> = sums.iter().map(|s| (*s / iters as f64) as f32).collect();
            best = means
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap_or(0);
            ctx.log(format!(
                "epoch {epoch}: mean loss {:.5}, best head {best} ({:.5})",
                means.iter().sum::<f32>() / p.heads as f32,
                means[best]
            ));
            history.push(means);
            save_checkpoint(&work, &st, epoch + 1, best, &history)?;
        }
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("train_seconds", secs);
        if p.epochs > start_epoch {
            ctx.stat("seconds_per_epoch", secs / (p.epochs - start_epoch) as f64);
        }
        let raw = assign(&st.teacher, best, &feats, 4096);
        let clusters = Clusters { c: p.clusters, raw };
        clusters.write(ctx.out_dir())?;
        let stats = clusters.stats();
        ctx.log(format!(
            "C = {}: {} clusters used, KL(U‖p) = {:.4}",
            stats.clusters, stats.used_clusters, stats.kl_uniform
        ));
        let last = history.last().cloned().unwrap_or_default();
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &serde_json::json!({
                "clusters": stats.clusters,
                "used_clusters": stats.used_clusters,
                "fill_ratio": stats.fill_ratio,
                "kl_uniform": stats.kl_uniform,
                "gamma": p.gamma,
                "best_head": best,
                "best_head_loss": last.get(best).copied().unwrap_or(f32::NAN),
            }),
        )?;
        write_json(
            &ctx.out_dir().join("training.json"),
            &serde_json::json!({"epochs": history.len(), "head_losses_per_epoch": history, "best_head": best}),
        )?;
        // The best teacher head, in the reference's key names (heads.0.*), to apply elsewhere.
        let one = st.teacher.single(best);
        let named = to_torch(&one);
        let mut keys: Vec<&String> = named.keys().collect();
        keys.sort();
        let shapes = one.torch_shapes();
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = keys
            .iter()
            .map(|k| ((*k).clone(), shapes[*k].clone(), le_bytes(&named[*k])))
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
        write_safetensors(
            &ctx.out_dir().join("head.safetensors"),
            &tensors,
            &[("best_head".to_string(), best.to_string())].into(),
        )
    }
}

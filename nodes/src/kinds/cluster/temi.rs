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

use std::num::NonZeroUsize;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use cedm_engine::{BatchDefaults, Kind, NodeError, ParamError, Resources, RunContext, Slot, rules};
use cedm_kernels::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::clusters::{Clusters, TemiMetrics};
use crate::artifacts::features::Features;
use crate::artifacts::knn::Knn;
use crate::artifacts::safetensors::{Tensors, Writer};
use crate::artifacts::{json_string, write_json};
use crate::device::{compute, to_host, to_host_int};
use crate::models::temi_heads::{Heads, HeadsConfig, StepConfig, TemiState, forward, to_torch};
use crate::params::nz;

/// Params of `cluster/temi` (defaults: the paper's, seed Table 5 / TEMI's README).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters C (output dimension of each head). Required.
    pub clusters: usize,
    /// Heads H trained in parallel; the best is kept. Default: 50 (paper).
    #[serde(default = "d_heads")]
    pub heads: NonZeroUsize,
    /// Exponent γ of TEMI's loss (0.6 clusters; 1 gives the plain-PMI variant the cluster-count
    /// bound uses). Default: 0.6.
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// Epochs. Default: 200.
    #[serde(default = "d_epochs")]
    pub epochs: NonZeroUsize,
    /// Pairs per step. Default: 512.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
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
    pub knn: NonZeroUsize,
    /// Hidden width of the heads. Default: 512.
    #[serde(default = "d_hidden")]
    pub hidden_dim: NonZeroUsize,
    /// Hidden layers before the bottleneck: 2 gives D→512→512→256 (as specified for cedm);
    /// TEMI's code default is 1 (D→512→256). Default: 2.
    #[serde(default = "d_layers")]
    pub hidden_layers: NonZeroUsize,
    /// Bottleneck width before the weight-normalised last layer. Default: 256.
    #[serde(default = "d_bottleneck")]
    pub bottleneck_dim: NonZeroUsize,
    /// Epochs during which the last layer is not updated. Default: 1.
    #[serde(default = "d_freeze")]
    pub freeze_last_layer: usize,
    /// Seed of initialisation, order and positives. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

fn d_heads() -> NonZeroUsize {
    const { nz(50) }
}
fn d_gamma() -> f64 {
    0.6
}
fn d_epochs() -> NonZeroUsize {
    const { nz(200) }
}
fn d_batch() -> NonZeroUsize {
    const { nz(512) }
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
fn d_knn() -> NonZeroUsize {
    const { nz(50) }
}
fn d_hidden() -> NonZeroUsize {
    const { nz(512) }
}
fn d_layers() -> NonZeroUsize {
    const { nz(2) }
}
fn d_bottleneck() -> NonZeroUsize {
    const { nz(256) }
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
    let mut w = Writer::new();
    let put = |w: &mut Writer<'_>, name: String, t: &Tensor<3>| -> Result<(), NodeError> {
        w.put(name, &t.dims(), &to_host(t.clone())?);
        Ok(())
    };
    for (i, p) in st.student.params.iter().enumerate() {
        put(&mut w, format!("student.{i}"), p)?;
    }
    for (i, p) in st.teacher.params.iter().enumerate() {
        put(&mut w, format!("teacher.{i}"), p)?;
    }
    put(&mut w, "prior".into(), &st.prior)?;
    let (m, v, steps) = st.adam.parts();
    for (i, t) in m.iter().enumerate() {
        put(&mut w, format!("adam_m.{i}"), t)?;
    }
    for (i, t) in v.iter().enumerate() {
        put(&mut w, format!("adam_v.{i}"), t)?;
    }
    w.meta("epoch", epoch.to_string())
        .meta("best_head", best.to_string())
        .meta("adam_steps", json_string(&steps)?)
        .meta("history", json_string(&history)?);
    w.write_atomic(&dir.join("checkpoint.safetensors"))
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
    let field = |k: &str| -> Result<&str, NodeError> {
        meta.get(k).map(String::as_str).ok_or_else(|| {
            NodeError::msg(format!(
                "checkpoint {}: no `{k}` in its metadata (damaged; delete it to start over)",
                path.display()
            ))
        })
    };
    let bad = |k: &str, e: &dyn std::fmt::Display| {
        NodeError::msg(format!("checkpoint {}: `{k}`: {e}", path.display()))
    };
    let steps: Vec<u32> =
        serde_json::from_str(field("adam_steps")?).map_err(|e| bad("adam_steps", &e))?;
    let n = st.student.params.len();
    let mut m = Vec::with_capacity(n);
    let mut v = Vec::with_capacity(n);
    for i in 0..n {
        m.push(get(&format!("adam_m.{i}"), &st.student.params[i])?);
        v.push(get(&format!("adam_v.{i}"), &st.student.params[i])?);
    }
    st.adam.restore(m, v, steps);
    let epoch = field("epoch")?.parse().map_err(|e| bad("epoch", &e))?;
    let best = field("best_head")?
        .parse()
        .map_err(|e| bad("best_head", &e))?;
    let history = serde_json::from_str(field("history")?).map_err(|e| bad("history", &e))?;
    Ok((epoch, best, history))
}

/// Cluster ids (argmax over C) of every row with one head's teacher parameters.
fn assign(
    heads: &Heads,
    head: usize,
    feats: &Features,
    batch: usize,
) -> Result<Vec<i64>, NodeError> {
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
        out.extend(to_host_int(logits.argmax(2))?);
        start += b;
    }
    Ok(out)
}

impl Kind for ClusterTemi {
    const KIND: &'static str = "cluster/temi";
    // 2: the heads' CPU forward/backward and AdamW through fused ops (another summation order, a
    // polynomial erf); outputs differ in the last bits.
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "TEMI clustering heads on frozen features with kNN positives → cluster labels, q(c), C_u, KL(U‖p)";
    const INPUTS: &'static [Slot] = &[
        Slot::one("features", "a feature artifact (features/*)"),
        Slot::one("knn", "its neighbours (features/knn)"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems: Vec<ParamError> = [
            rules::at_least("clusters", p.clusters, 2),
            rules::within("teacher_momentum", p.teacher_momentum, 0.0, 1.0),
            rules::within("prior_momentum", p.prior_momentum, 0.0, 1.0),
        ]
        .into_iter()
        .flatten()
        .collect();
        // The heads' weights, sized by params, against cedm's cap on one array.
        let cap = cedm_engine::limits::MAX_ELEMENTS;
        let (h, hid, bot) = (p.heads.get(), p.hidden_dim.get(), p.bottleneck_dim.get());
        problems.extend(rules::product_at_most(
            &[("heads", h), ("hidden_dim", hid), ("hidden_dim", hid)],
            cap,
        ));
        problems.extend(rules::product_at_most(
            &[
                ("heads", h),
                ("bottleneck_dim", bot),
                ("clusters", p.clusters),
            ],
            cap,
        ));
        problems.extend(rules::product_at_most(
            &[
                ("heads", h),
                ("batch_size", p.batch_size.get()),
                ("clusters", p.clusters),
            ],
            cap,
        ));
        problems.extend(rules::at_most("hidden_layers", p.hidden_layers.get(), 64));
        problems.extend(rules::product_at_most(
            &[
                ("epochs", p.epochs.get()),
                ("batch_size", p.batch_size.get()),
            ],
            1 << 48,
        ));
        if !(p.gamma > 0.0 && p.gamma <= 1.0) {
            problems.push(ParamError::invalid(
                "gamma",
                format!("must be in (0, 1], not {}", p.gamma),
            ));
        }
        if p.warmup_epochs > p.epochs.get() {
            problems.push(ParamError::invalid(
                "warmup_epochs",
                format!(
                    "{} warm-up epochs exceed the {} epochs",
                    p.warmup_epochs, p.epochs
                ),
            ));
        }
        problems
    }

    fn resources(_: &Params) -> Resources {
        Resources::GPU
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 720)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let (heads, epochs, batch_size, knn) = (
            p.heads.get(),
            p.epochs.get(),
            p.batch_size.get(),
            p.knn.get(),
        );
        let feats = Features::read(ctx.require("features")?)?;
        let nn = Knn::read(ctx.require("knn")?)?;
        if nn.n != feats.n {
            return Err(NodeError::msg(format!(
                "kNN has {} rows but the features {}",
                nn.n, feats.n
            )));
        }
        if knn > nn.k {
            return Err(NodeError::msg(format!(
                "param knn = {} but the kNN input has only {} neighbours per item",
                knn, nn.k
            )));
        }
        let iters = feats.n / batch_size;
        if iters == 0 {
            return Err(NodeError::msg(format!(
                "{} items are fewer than one batch of {}",
                feats.n, batch_size
            )));
        }
        let comp = compute(ctx.device())?;
        let dev = comp.device().clone();
        let cfg = HeadsConfig {
            heads,
            input: feats.d,
            hidden: p.hidden_dim.get(),
            hidden_layers: p.hidden_layers.get(),
            bottleneck: p.bottleneck_dim.get(),
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
        let scale = batch_size as f64 / 256.0;
        let total = epochs * iters;
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
        let mut xb = vec![0f32; batch_size * feats.d];
        let mut nb = vec![0f32; batch_size * feats.d];
        for epoch in start_epoch..epochs {
            let mut rng = Rng::stream(p.seed, epoch as u64 + 1);
            let mut order: Vec<usize> = (0..feats.n).collect();
            rng.shuffle(&mut order);
            let mut sums = vec![0f64; heads];
            for it in 0..iters {
                if ctx.should_stop() {
                    return Err(NodeError::Interrupted);
                }
                for (r, &i) in order[it * batch_size..(it + 1) * batch_size]
                    .iter()
                    .enumerate()
                {
                    let j = nn.indices[i * nn.k + rng.below(knn as u64) as usize] as usize;
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
                    TensorData::new(xb.clone(), [batch_size, feats.d]),
                    &dev,
                );
                let xn = Tensor::<2>::from_data(
                    TensorData::new(nb.clone(), [batch_size, feats.d]),
                    &dev,
                );
                let out = st.step(x, xn, &sc)?;
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
                means.iter().sum::<f32>() / heads as f32,
                means[best]
            ));
            history.push(means);
            save_checkpoint(&work, &st, epoch + 1, best, &history)?;
        }
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("train_seconds", secs);
        if epochs > start_epoch {
            ctx.stat("seconds_per_epoch", secs / (epochs - start_epoch) as f64);
        }
        let raw = assign(&st.teacher, best, &feats, 4096)?;
        let clusters = Clusters { c: p.clusters, raw };
        clusters.write(ctx.out_dir())?;
        let stats = clusters.stats();
        ctx.log(format!(
            "C = {}: {} clusters used, KL(U‖p) = {:.4}",
            stats.clusters, stats.used_clusters, stats.kl_uniform
        ));
        let metrics = TemiMetrics {
            stats,
            gamma: p.gamma,
            best_head: best,
            best_head_loss: history
                .last()
                .and_then(|l| l.get(best))
                .map(|&v| f64::from(v)),
        };
        write_json(&ctx.out_dir().join("metrics.json"), &metrics)?;
        write_json(
            &ctx.out_dir().join("training.json"),
            &serde_json::json!({"epochs": history.len(), "head_losses_per_epoch": history, "best_head": best}),
        )?;
        // The best teacher head, in the reference's key names (heads.0.*), to apply elsewhere.
        let one = st.teacher.single(best);
        let named = to_torch(&one)?;
        let shapes = one.torch_shapes();
        let mut w = Writer::new();
        for (k, v) in &named {
            w.put(k.clone(), &shapes[k], v);
        }
        w.meta("best_head", best.to_string())
            .write(&ctx.out_dir().join("head.safetensors"))
    }
}

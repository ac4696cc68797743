//! `cluster/temi`: TEMI clustering heads on frozen features (paper §b; C-EDM's label source).
//!
//! Every epoch visits the items in a seeded random order in batches (the last incomplete batch
//! dropped, as TEMI's loader); each item's positive is drawn uniformly among its first `knn`
//! neighbours. Per step: teacher probabilities update the per-head prior q̃ (EMA 0.9) before the
//! loss, the pair weight w is the teacher's agreement averaged over heads, the loss is TEMI's
//! −log Σ_c (q_s q_t)^γ / q̃ weighted by w, symmetrised and averaged over heads; AdamW updates
//! the student, the teacher follows by EMA. After each epoch the head with the lowest mean loss
//! becomes the best head; its teacher assigns every item to argmax_c. Schedules follow TEMI's
//! `train_main.py` ([`step_config`], the one place they are decided): learning rate scaled by
//! batch/256, linear warm-up then cosine to `min_lr` (constant when equal); weight decay and
//! teacher momentum on cosines (constant at the README's values); the teacher temperature
//! warmed up linearly per epoch; last layer frozen for `freeze_last_layer` epochs. The heads are
//! TEMI's DINOHead with `nlayers = 2` (D→512 GELU→256, L2-normalised, weight-normalised 256→C).
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
use crate::device::{compute_for, to_host, to_host_int};
use crate::models::temi_heads::{Heads, HeadsConfig, StepConfig, TemiState, forward, to_torch};
use crate::params::nz;

/// Params of `cluster/temi`. Defaults: the paper's where it gives one (seed Table 5: heads,
/// epochs, batch, γ), otherwise TEMI's README command (`train_main.py --batch_size=1024
/// --max_momentum_teacher=0.996 --lr=1e-4 --warmup_epochs=20 --min_lr=1e-4 --epochs=100
/// --knn=50`), otherwise TEMI's `main_args.py` (line numbers of HHU-MMBS/TEMI-official-BMVC2023).
/// Names follow TEMI's flags.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of clusters C (`--out_dim`, output dimension of each head). Required.
    pub clusters: usize,
    /// Heads H trained in parallel; the best is kept (`--num_heads`). Default: 50 (paper).
    #[serde(default = "d_heads")]
    pub heads: NonZeroUsize,
    /// Exponent γ of TEMI's loss (`--loss-args beta=`; 0.6 clusters; 1 gives the plain-PMI
    /// variant the cluster-count bound uses). Default: 0.6.
    #[serde(default = "d_gamma")]
    pub gamma: f64,
    /// Epochs. Default: 200 (paper; README 100).
    #[serde(default = "d_epochs")]
    pub epochs: NonZeroUsize,
    /// Pairs per step. Default: 512 (paper; README 1024).
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
    /// Learning rate after warm-up, scaled by batch_size/256 (`--lr`, train_main.py:178).
    /// Default: 1e-4 (README).
    #[serde(default = "d_1e4")]
    pub lr: f64,
    /// Final learning rate of the cosine schedule, scaled likewise (`--min_lr`). Default: 1e-4
    /// (README; constant after warm-up).
    #[serde(default = "d_1e4")]
    pub min_lr: f64,
    /// Epochs of linear learning-rate warm-up from 0 (`--warmup_epochs`). Default: 20 (README).
    #[serde(default = "d_warmup")]
    pub warmup_epochs: usize,
    /// AdamW weight decay of weights (not biases) at the start of the cosine schedule
    /// (`--weight_decay`, main_args.py:50). Default: 1e-4.
    #[serde(default = "d_1e4")]
    pub weight_decay: f64,
    /// Weight decay at the end (`--weight_decay_end`, main_args.py:52). Default: 1e-4.
    #[serde(default = "d_1e4")]
    pub weight_decay_end: f64,
    /// Teacher EMA momentum at the start of its cosine schedule (`--momentum_teacher`,
    /// main_args.py:25). Default: 0.996.
    #[serde(default = "d_momentum")]
    pub momentum_teacher: f64,
    /// Teacher momentum at the end (`--max_momentum_teacher`; main_args.py:29 says 1.0, the
    /// README command 0.996, i.e. constant). Default: 0.996 (README).
    #[serde(default = "d_momentum")]
    pub max_momentum_teacher: f64,
    /// EMA momentum of the per-head cluster prior q̃ (`probs_momentum`,
    /// losses/multihead_losses.py:30). Default: 0.9.
    #[serde(default = "d_prior")]
    pub prior_momentum: f64,
    /// Softmax temperature of the student (`student_temp`, losses/mi.py:23). Default: 0.1.
    #[serde(default = "d_temp")]
    pub student_temp: f64,
    /// Teacher temperature after its warm-up (`--teacher_temp`, main_args.py:39). Default: 0.1.
    #[serde(default = "d_temp")]
    pub teacher_temp: f64,
    /// Teacher temperature at epoch 0 (`--warmup_teacher_temp`, main_args.py:36). Default: 0.1.
    #[serde(default = "d_temp")]
    pub warmup_teacher_temp: f64,
    /// Epochs of the teacher temperature's linear warm-up (`--warmup_teacher_temp_epochs`,
    /// main_args.py:42). Default: 30.
    #[serde(default = "d_temp_epochs")]
    pub warmup_teacher_temp_epochs: NonZeroUsize,
    /// Positives are drawn among this many nearest neighbours (`--knn`). Default: 50 (README).
    #[serde(default = "d_knn")]
    pub knn: NonZeroUsize,
    /// Linear layers of the head's MLP before the weight-normalised last layer (`--nlayers`,
    /// main_args.py:119; DINOHead in model_builders/multi_head.py): 2 gives D→hidden (GELU)
    /// →bottleneck; each one more adds a hidden→hidden layer. At least 2 (TEMI's `nlayers = 1`,
    /// a single D→bottleneck layer, is not offered). Default: 2 (seed Table 5's "MLP hidden
    /// layers 2").
    #[serde(default = "d_layers")]
    pub nlayers: NonZeroUsize,
    /// Hidden width of the heads (`--hidden_dim`, main_args.py:120). Default: 512.
    #[serde(default = "d_hidden")]
    pub hidden_dim: NonZeroUsize,
    /// Bottleneck width before the weight-normalised last layer (`--bottleneck_dim`,
    /// main_args.py:121). Default: 256.
    #[serde(default = "d_bottleneck")]
    pub bottleneck_dim: NonZeroUsize,
    /// Epochs during which the last layer is not updated (`--freeze_last_layer`,
    /// main_args.py:66). Default: 1.
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
fn d_1e4() -> f64 {
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
fn d_temp_epochs() -> NonZeroUsize {
    const { nz(30) }
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

/// Every per-step hyper-parameter of training step `it` of epoch `epoch` (`iters` steps per
/// epoch), as TEMI's `train_main.py` schedules them: lr, weight decay and teacher momentum per
/// iteration (lines 177-191, 262-265, 304), the teacher temperature per epoch (losses/mi.py:30),
/// the last layer frozen during the first `freeze_last_layer` epochs (utils.py:115). The one
/// place the schedules are decided; the parity test runs it.
pub fn step_config(p: &Params, iters: usize, epoch: usize, it: usize) -> StepConfig {
    let total = p.epochs.get() * iters;
    let g = epoch * iters + it;
    let scale = p.batch_size.get() as f64 / 256.0;
    let w = p.warmup_teacher_temp_epochs.get();
    let teacher_temp = if epoch < w && w > 1 {
        p.warmup_teacher_temp
            + (p.teacher_temp - p.warmup_teacher_temp) * epoch as f64 / (w - 1) as f64
    } else if epoch < w {
        p.warmup_teacher_temp
    } else {
        p.teacher_temp
    };
    StepConfig {
        student_temp: p.student_temp,
        teacher_temp,
        gamma: p.gamma,
        prior_momentum: p.prior_momentum,
        teacher_momentum: cosine_schedule(p.momentum_teacher, p.max_momentum_teacher, total, 0, g),
        lr: cosine_schedule(
            p.lr * scale,
            p.min_lr * scale,
            total,
            p.warmup_epochs * iters,
            g,
        ),
        weight_decay: cosine_schedule(p.weight_decay, p.weight_decay_end, total, 0, g),
        freeze_last: epoch < p.freeze_last_layer,
    }
}

/// TEMI's `utils.cosine_scheduler` (utils.py:159) at iteration `it`: linear warm-up from 0 over
/// `warmup` iterations (`np.linspace(0, base, warmup)`), then a cosine from `base` to `end` over
/// the rest.
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
    // polynomial erf); outputs differ in the last bits. 3: TEMI's head depth (nlayers = 2:
    // D→512→256, was D→512→512→256) and its schedules (teacher temperature warm-up, cosine weight
    // decay and teacher momentum); params renamed after TEMI's flags.
    const VERSION: u32 = 3;
    const ABOUT: &'static str = "TEMI clustering heads on frozen features with kNN positives → cluster labels, q(c), C_u, KL(U‖p)";
    const INPUTS: &'static [Slot] = &[
        Slot::one("features", "a feature artifact (features/*)"),
        Slot::one("knn", "its neighbours (features/knn)"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems: Vec<ParamError> = [
            rules::at_least("clusters", p.clusters, 2),
            rules::within("momentum_teacher", p.momentum_teacher, 0.0, 1.0),
            rules::within("max_momentum_teacher", p.max_momentum_teacher, 0.0, 1.0),
            rules::positive("student_temp", p.student_temp),
            rules::positive("teacher_temp", p.teacher_temp),
            rules::positive("warmup_teacher_temp", p.warmup_teacher_temp),
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
        problems.extend(rules::at_least("nlayers", p.nlayers.get(), 2));
        problems.extend(rules::at_most("nlayers", p.nlayers.get(), 65));
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
        // An estimate (the heads and a feature batch); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
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
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let cfg = HeadsConfig {
            heads,
            input: feats.d,
            hidden: p.hidden_dim.get(),
            hidden_layers: p.nlayers.get() - 1,
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
                let sc = step_config(&p, iters, epoch, it);
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
                ctx.scalars(
                    (g + 1) as f64,
                    "step",
                    &[
                        ("loss", f64::from(out.loss)),
                        ("epoch", epoch as f64),
                        ("step_per_s", eta_rate),
                    ],
                    g + 1 >= total,
                );
                ctx.progress(
                    (g + 1) as u64,
                    Some(total as u64),
                    "step",
                    Some(format!("epoch {epoch} loss {:.4}", out.loss)),
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

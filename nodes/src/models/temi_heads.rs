//! TEMI clustering heads (Adaloglou et al., BMVC 2023, "Exploring the Limits of Deep Image
//! Clustering using Pretrained Models"; reference: HHU-MMBS/TEMI-official-BMVC2023
//! `model_builders/multi_head.py`, `losses/multihead_losses.py`), trained on frozen features.
//!
//! H heads, each TEMI's DINOHead: Linear(D, hidden) → GELU → [Linear(hidden, hidden) → GELU]… →
//! Linear(hidden, bottleneck) → L2-normalise → weight-normalised Linear(bottleneck, C, no bias)
//! (TEMI's default `nlayers = 2` is one hidden layer: D→hidden→bottleneck). All heads are
//! stored stacked so that one batched matrix product evaluates them together; the first layer,
//! whose input is shared, is one `[D, H·hidden]` product.
//!
//! Port differences: parameters are rank-3 tensors (`[1, D, H·hidden]`, `[H, in, out]`, biases
//! `[H, 1, out]`, `g` `[H, 1, C]`); `from_torch`/`to_torch` convert to the reference's per-head
//! `heads.{h}.mlp.{2j}.weight` / `last_layer.weight_{g,v}` layout. AdamW is written out (per
//! parameter step counts, decoupled decay as `torch.optim.AdamW`) because TEMI decays every
//! weight but no bias, and freezes the last layer during the first epoch(s).

use std::collections::HashMap;

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

use cedm_engine::NodeError;
use cedm_kernels::nn::optim::AdamStep;
use cedm_kernels::rng::Rng;

use crate::device::to_host;
use crate::ops;

/// Head architecture.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HeadsConfig {
    /// Number of heads H.
    pub heads: usize,
    /// Input (feature) dimension D.
    pub input: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Hidden layers (Linear+GELU before the bottleneck projection), TEMI's `nlayers − 1`: 1
    /// gives D→h→b (TEMI's default), 2 gives D→h→h→b. At least 1.
    pub hidden_layers: usize,
    /// Bottleneck width.
    pub bottleneck: usize,
    /// Clusters C.
    pub clusters: usize,
}

/// The kind of a stacked parameter (for weight decay and freezing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A weight matrix (decayed).
    Weight,
    /// A bias (not decayed).
    Bias,
    /// The weight-normalised last layer's direction `v` (decayed, frozen early).
    LastV,
    /// The last layer's gain `g` (decayed, as TEMI's `[C, 1]` tensor is 2-D; frozen early).
    LastG,
}

/// Stacked parameters: `[w_in, b_in, (w_mid, b_mid)…, w_out, b_out, v, g]`.
#[derive(Clone, Debug)]
pub struct Heads {
    /// Architecture.
    pub config: HeadsConfig,
    /// Parameters, all rank 3.
    pub params: Vec<Tensor<3>>,
}

impl HeadsConfig {
    /// PyTorch shapes of the names [`to_torch`] produces for heads of this architecture.
    pub fn torch_shapes(&self) -> HashMap<String, Vec<usize>> {
        let c = *self;
        let mut out = HashMap::new();
        for hd in 0..c.heads {
            out.insert(format!("heads.{hd}.mlp.0.weight"), vec![c.hidden, c.input]);
            out.insert(format!("heads.{hd}.mlp.0.bias"), vec![c.hidden]);
            for j in 1..c.hidden_layers {
                out.insert(
                    format!("heads.{hd}.mlp.{}.weight", 2 * j),
                    vec![c.hidden, c.hidden],
                );
                out.insert(format!("heads.{hd}.mlp.{}.bias", 2 * j), vec![c.hidden]);
            }
            out.insert(
                format!("heads.{hd}.mlp.{}.weight", 2 * c.hidden_layers),
                vec![c.bottleneck, c.hidden],
            );
            out.insert(
                format!("heads.{hd}.mlp.{}.bias", 2 * c.hidden_layers),
                vec![c.bottleneck],
            );
            out.insert(
                format!("heads.{hd}.last_layer.weight_v"),
                vec![c.clusters, c.bottleneck],
            );
            out.insert(
                format!("heads.{hd}.last_layer.weight_g"),
                vec![c.clusters, 1],
            );
        }
        out
    }

    /// Kinds of the parameters, in order.
    pub fn kinds(&self) -> Vec<ParamKind> {
        let mut k = vec![ParamKind::Weight, ParamKind::Bias];
        for _ in 1..self.hidden_layers {
            k.extend([ParamKind::Weight, ParamKind::Bias]);
        }
        k.extend([
            ParamKind::Weight,
            ParamKind::Bias,
            ParamKind::LastV,
            ParamKind::LastG,
        ]);
        k
    }

    /// Random initialisation as TEMI's DINOHead: Linear weights `trunc_normal_(std=0.02)` (whose
    /// default cut at ±2 is absolute, i.e. 100σ: a plain normal), biases 0; last layer PyTorch's
    /// default `U(±1/√bottleneck)` for `v`, `g = 1`.
    pub fn init(&self, seed: u64, device: &Device) -> Heads {
        let mut rng = Rng::new(seed);
        let mut tn = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| (rng.normal() * 0.02).clamp(-2.0, 2.0) as f32)
                .collect()
        };
        let (h, d, hid, bot, c) = (
            self.heads,
            self.input,
            self.hidden,
            self.bottleneck,
            self.clusters,
        );
        let t = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), device);
        let mut params = vec![
            t(tn(d * h * hid), [1, d, h * hid]),
            t(vec![0.0; h * hid], [1, 1, h * hid]),
        ];
        for _ in 1..self.hidden_layers {
            params.push(t(tn(h * hid * hid), [h, hid, hid]));
            params.push(t(vec![0.0; h * hid], [h, 1, hid]));
        }
        params.push(t(tn(h * hid * bot), [h, hid, bot]));
        params.push(t(vec![0.0; h * bot], [h, 1, bot]));
        let bound = 1.0 / (bot as f64).sqrt();
        let mut r2 = Rng::new(seed ^ 0x5EED);
        params.push(t(
            (0..h * bot * c)
                .map(|_| ((r2.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect(),
            [h, bot, c],
        ));
        params.push(t(vec![1.0; h * c], [h, 1, c]));
        Heads {
            config: *self,
            params,
        }
    }
}

impl Heads {
    /// One head as a 1-head stack (for assigning clusters with the best head).
    pub fn single(&self, h: usize) -> Heads {
        let hid = self.config.hidden;
        let params = self
            .params
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i < 2 {
                    p.clone().narrow(2, h * hid, hid)
                } else {
                    p.clone().narrow(0, h, 1)
                }
            })
            .collect();
        Heads {
            config: HeadsConfig {
                heads: 1,
                ..self.config
            },
            params,
        }
    }

    /// PyTorch shapes of the names [`to_torch`] produces.
    pub fn torch_shapes(&self) -> HashMap<String, Vec<usize>> {
        self.config.torch_shapes()
    }
}

/// Forward pass of stacked heads on any tensors (autodiff leaves or plain).
///
/// # Shapes
/// `x`: `[n, D]` → logits `[H, n, C]`
pub fn forward(cfg: &HeadsConfig, p: &[Tensor<3>], x: Tensor<2>) -> Tensor<3> {
    // Linear + GELU layers through the stacked-heads op (one product per head on the CPU).
    let mut y = ops::heads_linear_shared(x, p[0].clone(), p[1].clone(), cfg.heads, true);
    let mut i = 2;
    for _ in 1..cfg.hidden_layers {
        y = ops::heads_linear(y, p[i].clone(), p[i + 1].clone(), true);
        i += 2;
    }
    let z = ops::heads_linear(y, p[i].clone(), p[i + 1].clone(), false); // [H, n, bot]
    // L2-normalise, then the weight-normalised last layer.
    ops::heads_cosine(z, p[i + 2].clone(), p[i + 3].clone())
}

/// Hyper-parameters of one TEMI step.
#[derive(Clone, Copy, Debug)]
pub struct StepConfig {
    /// Student softmax temperature.
    pub student_temp: f64,
    /// Teacher softmax temperature of this step (TEMI warms it up per epoch).
    pub teacher_temp: f64,
    /// Exponent γ (β in the TEMI code).
    pub gamma: f64,
    /// EMA momentum of the cluster prior q̃.
    pub prior_momentum: f64,
    /// EMA momentum of the teacher.
    pub teacher_momentum: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Weight decay of this step.
    pub weight_decay: f64,
    /// Skip the last layer's update (TEMI's first epoch).
    pub freeze_last: bool,
}

/// AdamW state: first and second moments and step count per parameter.
#[derive(Clone, Debug)]
pub struct AdamW {
    m: Vec<Tensor<3>>,
    v: Vec<Tensor<3>>,
    steps: Vec<u32>,
}

impl AdamW {
    /// Moments and step counts (checkpoints).
    pub fn parts(&self) -> (&[Tensor<3>], &[Tensor<3>], &[u32]) {
        (&self.m, &self.v, &self.steps)
    }

    /// Restore from a checkpoint.
    pub fn restore(&mut self, m: Vec<Tensor<3>>, v: Vec<Tensor<3>>, steps: Vec<u32>) {
        self.m = m;
        self.v = v;
        if steps.len() == self.steps.len() {
            self.steps = steps;
        }
    }

    /// Zero state for these parameters.
    pub fn new(params: &[Tensor<3>]) -> AdamW {
        AdamW {
            m: params.iter().map(|p| p.zeros_like()).collect(),
            v: params.iter().map(|p| p.zeros_like()).collect(),
            steps: vec![0; params.len()],
        }
    }
}

/// The whole training state: student, teacher, priors, optimiser.
#[derive(Clone, Debug)]
pub struct TemiState {
    /// Student heads.
    pub student: Heads,
    /// Teacher heads (EMA of the student).
    pub teacher: Heads,
    /// Per-head prior q̃, `[H, 1, C]`.
    pub prior: Tensor<3>,
    /// Optimiser state.
    pub adam: AdamW,
}

/// What a step reports.
#[derive(Clone, Debug)]
pub struct StepOut {
    /// Mean over heads.
    pub loss: f32,
    /// Per head.
    pub head_losses: Vec<f32>,
    /// The pair weights w (mean over heads), per pair.
    pub weight: Vec<f32>,
}

impl TemiState {
    /// Student = teacher = `heads`, uniform priors.
    pub fn new(heads: Heads) -> TemiState {
        let c = heads.config.clusters;
        let dev = heads.params[0].device();
        let prior = Tensor::<3>::full([heads.config.heads, 1, c], 1.0 / c as f64, &dev);
        TemiState {
            adam: AdamW::new(&heads.params),
            teacher: heads.clone(),
            student: heads,
            prior,
        }
    }

    /// One TEMI step on a batch of pairs (x, x′), each `[b, D]`.
    ///
    /// # Errors
    /// The device failed to hand back the loss.
    pub fn step(
        &mut self,
        x: Tensor<2>,
        xn: Tensor<2>,
        sc: &StepConfig,
    ) -> Result<StepOut, NodeError> {
        // On a pool worker: the step's parallel operations then start there
        // (cedm_kernels::cpu::on_pool).
        cedm_kernels::cpu::on_pool(|| self.step_here(x, xn, sc))
    }

    fn step_here(
        &mut self,
        x: Tensor<2>,
        xn: Tensor<2>,
        sc: &StepConfig,
    ) -> Result<StepOut, NodeError> {
        let cfg = self.student.config;
        let b = x.dims()[0];
        let x2 = Tensor::cat(vec![x, xn], 0); // [2b, D]
        // Teacher: probabilities, prior update (before the loss), pair weights. No gradient.
        let t = forward(&cfg, &self.teacher.params, x2.clone());
        let pt = softmax(t / sc.teacher_temp, 2); // [H, 2b, C]
        self.prior = self.prior.clone() * sc.prior_momentum
            + pt.clone().mean_dim(1) * (1.0 - sc.prior_momentum);
        let t1 = pt.clone().narrow(1, 0, b);
        let t2 = pt.narrow(1, b, b);
        let weight = (t1.clone() * t2.clone()).sum_dim(2).mean_dim(0); // [1, b, 1]
        // Student with gradients.
        let leaves: Vec<Tensor<3>> = self
            .student
            .params
            .iter()
            .map(|p| p.clone().autodiff().require_grad())
            .collect();
        let s = forward(&cfg, &leaves, x2.autodiff());
        let ps = softmax(s / sc.student_temp, 2);
        let ps1 = ps.clone().narrow(1, 0, b);
        let ps2 = ps.narrow(1, b, b);
        let prior = self.prior.clone().autodiff();
        let w = weight.clone().autodiff();
        let t1 = t1.autodiff();
        let t2 = t2.autodiff();
        let mi = |psv: Tensor<3>, ptw: Tensor<3>| -> Tensor<3> {
            // −log Σ_c (q_s q_t)^γ / q̃  → [H, b, 1], weighted, mean over the batch → [H, 1, 1]
            let e = ((psv * ptw).powf_scalar(sc.gamma) / prior.clone()).sum_dim(2);
            (w.clone() * e.log().neg()).mean_dim(1)
        };
        let head_losses = (mi(ps2, t1) + mi(ps1, t2)) * 0.5; // [H, 1, 1]
        let loss = head_losses.clone().mean();
        let grads = loss.backward();
        let head_losses = to_host(head_losses.inner())?;
        let loss_v = to_host(loss.inner())?.first().copied().unwrap_or(f32::NAN);
        // AdamW, as torch.optim.AdamW (decoupled decay first, then the bias-corrected step).
        // The leaves and the graph go first, so that every parameter and moment is held once
        // and the fused update writes in place instead of copying.
        let kinds = cfg.kinds();
        let grads: Vec<Option<Tensor<3>>> = leaves.iter().map(|l| l.grad(&grads)).collect();
        drop(leaves);
        let a = &mut self.adam;
        let params = std::mem::take(&mut self.student.params);
        let (ms, vs) = (std::mem::take(&mut a.m), std::mem::take(&mut a.v));
        for (i, (((p, g), m), v)) in params.into_iter().zip(grads).zip(ms).zip(vs).enumerate() {
            let frozen = sc.freeze_last && matches!(kinds[i], ParamKind::LastV | ParamKind::LastG);
            let (p, m, v) = match g {
                Some(g) if !frozen => {
                    a.steps[i] += 1;
                    let decay = kinds[i] != ParamKind::Bias && sc.weight_decay > 0.0;
                    let step = AdamStep {
                        lr: sc.lr,
                        beta1: 0.9,
                        beta2: 0.999,
                        eps: 1e-8,
                        step: u64::from(a.steps[i]),
                        weight_decay: if decay { sc.weight_decay } else { 0.0 },
                    };
                    ops::adam(p, g, m, v, step)
                }
                _ => (p, m, v),
            };
            self.student.params.push(p);
            a.m.push(m);
            a.v.push(v);
        }
        // Teacher EMA: t ← s + (t − s)·m.
        let m = sc.teacher_momentum;
        let teacher = std::mem::take(&mut self.teacher.params);
        self.teacher.params = teacher
            .into_iter()
            .zip(&self.student.params)
            .map(|(tp, sp)| ops::ema(tp, sp.clone(), m))
            .collect();
        let weight = to_host(weight)?;
        Ok(StepOut {
            loss: loss_v,
            head_losses,
            weight,
        })
    }
}

/// Reference (per-head, PyTorch) layout → stacked parameters.
///
/// # Errors
/// A missing key.
pub fn from_torch(
    cfg: &HeadsConfig,
    w: &HashMap<String, Vec<f32>>,
    device: &Device,
) -> Result<Heads, String> {
    let (h, d, hid, bot, c) = (
        cfg.heads,
        cfg.input,
        cfg.hidden,
        cfg.bottleneck,
        cfg.clusters,
    );
    let get = |k: &str| w.get(k).cloned().ok_or_else(|| format!("missing `{k}`"));
    let t = |v: Vec<f32>, s: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v, s), device);
    let mut w_in = vec![0f32; d * h * hid];
    let mut b_in = vec![0f32; h * hid];
    for hd in 0..h {
        let wt = get(&format!("heads.{hd}.mlp.0.weight"))?; // [hid, d]
        for o in 0..hid {
            for i in 0..d {
                w_in[i * h * hid + hd * hid + o] = wt[o * d + i];
            }
        }
        b_in[hd * hid..(hd + 1) * hid].copy_from_slice(&get(&format!("heads.{hd}.mlp.0.bias"))?);
    }
    let mut params = vec![t(w_in, [1, d, h * hid]), t(b_in, [1, 1, h * hid])];
    let layer = |idx: usize, din: usize, dout: usize| -> Result<(Tensor<3>, Tensor<3>), String> {
        let mut wv = vec![0f32; h * din * dout];
        let mut bv = vec![0f32; h * dout];
        for hd in 0..h {
            let wt = get(&format!("heads.{hd}.mlp.{idx}.weight"))?; // [dout, din]
            for o in 0..dout {
                for i in 0..din {
                    wv[hd * din * dout + i * dout + o] = wt[o * din + i];
                }
            }
            bv[hd * dout..(hd + 1) * dout]
                .copy_from_slice(&get(&format!("heads.{hd}.mlp.{idx}.bias"))?);
        }
        Ok((t(wv, [h, din, dout]), t(bv, [h, 1, dout])))
    };
    for j in 1..cfg.hidden_layers {
        let (a, b) = layer(2 * j, hid, hid)?;
        params.extend([a, b]);
    }
    let (a, b) = layer(2 * cfg.hidden_layers, hid, bot)?;
    params.extend([a, b]);
    let mut v = vec![0f32; h * bot * c];
    let mut g = vec![0f32; h * c];
    for hd in 0..h {
        let vt = get(&format!("heads.{hd}.last_layer.weight_v"))?; // [c, bot]
        for o in 0..c {
            for i in 0..bot {
                v[hd * bot * c + i * c + o] = vt[o * bot + i];
            }
        }
        g[hd * c..(hd + 1) * c].copy_from_slice(&get(&format!("heads.{hd}.last_layer.weight_g"))?);
    }
    params.push(t(v, [h, bot, c]));
    params.push(t(g, [h, 1, c]));
    Ok(Heads {
        config: *cfg,
        params,
    })
}

/// Stacked parameters → the reference's per-head layout (name → values, PyTorch shapes).
///
/// # Errors
/// The device failed to hand back a parameter.
pub fn to_torch(heads: &Heads) -> Result<HashMap<String, Vec<f32>>, NodeError> {
    let cfg = heads.config;
    let (h, d, hid, bot, c) = (
        cfg.heads,
        cfg.input,
        cfg.hidden,
        cfg.bottleneck,
        cfg.clusters,
    );
    let vals: Vec<Vec<f32>> = heads
        .params
        .iter()
        .map(|p| to_host(p.clone()))
        .collect::<Result<_, _>>()?;
    let mut out = HashMap::new();
    for hd in 0..h {
        let mut wt = vec![0f32; hid * d];
        for o in 0..hid {
            for i in 0..d {
                wt[o * d + i] = vals[0][i * h * hid + hd * hid + o];
            }
        }
        out.insert(format!("heads.{hd}.mlp.0.weight"), wt);
        out.insert(
            format!("heads.{hd}.mlp.0.bias"),
            vals[1][hd * hid..(hd + 1) * hid].to_vec(),
        );
        let mut put = |idx: usize, pi: usize, din: usize, dout: usize| {
            let mut wt = vec![0f32; dout * din];
            for o in 0..dout {
                for i in 0..din {
                    wt[o * din + i] = vals[pi][hd * din * dout + i * dout + o];
                }
            }
            out.insert(format!("heads.{hd}.mlp.{idx}.weight"), wt);
            out.insert(
                format!("heads.{hd}.mlp.{idx}.bias"),
                vals[pi + 1][hd * dout..(hd + 1) * dout].to_vec(),
            );
        };
        let mut pi = 2;
        for j in 1..cfg.hidden_layers {
            put(2 * j, pi, hid, hid);
            pi += 2;
        }
        put(2 * cfg.hidden_layers, pi, hid, bot);
        pi += 2;
        let mut vt = vec![0f32; c * bot];
        for o in 0..c {
            for i in 0..bot {
                vt[o * bot + i] = vals[pi][hd * bot * c + i * c + o];
            }
        }
        out.insert(format!("heads.{hd}.last_layer.weight_v"), vt);
        out.insert(
            format!("heads.{hd}.last_layer.weight_g"),
            vals[pi + 1][hd * c..(hd + 1) * c].to_vec(),
        );
    }
    Ok(out)
}

/// Load one head written by `cluster/temi` (`head.safetensors`, the reference's `heads.0.*`
/// names), its architecture read from the tensor shapes.
///
/// # Errors
/// A malformed file: missing tensors, or shapes that do not chain.
pub fn load_head(path: &std::path::Path, device: &Device) -> Result<Heads, NodeError> {
    let t = super::weights::Weights::load_as(path, true)?;
    let bad = |m: String| NodeError::msg(format!("{}: {m}", path.display()));
    let mut w = HashMap::new();
    let mut shapes = HashMap::new();
    for n in t.keys() {
        let (s, v) = t.get(n)?;
        shapes.insert(n.to_string(), s.to_vec());
        w.insert(n.to_string(), v.to_vec());
    }
    let shape = |k: &str| -> Result<&Vec<usize>, NodeError> {
        shapes
            .get(k)
            .filter(|s| s.len() == 2 || (s.len() == 1 && k.ends_with("bias")))
            .ok_or_else(|| bad(format!("no 2-D tensor `{k}`")))
    };
    let first = shape("heads.0.mlp.0.weight")?;
    let (hidden, input) = (first[0], first[1]);
    let mut layers = 1;
    while shapes.contains_key(&format!("heads.0.mlp.{}.weight", 2 * layers)) {
        layers += 1;
    }
    // The last mlp layer is the bottleneck projection; the ones before it are hidden layers.
    let hidden_layers = layers - 1;
    if hidden_layers == 0 {
        return Err(bad(
            "a head needs a hidden layer and a bottleneck projection".into(),
        ));
    }
    let proj = shape(&format!("heads.0.mlp.{}.weight", 2 * hidden_layers))?;
    let last = shape("heads.0.last_layer.weight_v")?;
    let (clusters, bottleneck) = (last[0], last[1]);
    if proj[0] != bottleneck || proj[1] != hidden || clusters == 0 || input == 0 {
        return Err(bad(format!(
            "shapes do not chain: mlp.0 {first:?}, projection {proj:?}, last layer {last:?}"
        )));
    }
    let cfg = HeadsConfig {
        heads: 1,
        input,
        hidden,
        hidden_layers,
        bottleneck,
        clusters,
    };
    // Every tensor the config implies, with the size it implies (a header is input).
    for (k, s) in cfg.torch_shapes() {
        let n: usize = s.iter().product();
        if w.get(&k).map(Vec::len) != Some(n) {
            return Err(bad(format!("`{k}` should hold {n} values ({s:?})")));
        }
    }
    from_torch(&cfg, &w, device).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_head_loads_back_with_its_architecture_and_outputs() {
        let dev = Device::flex();
        for hidden_layers in [1, 2] {
            let cfg = HeadsConfig {
                heads: 3,
                input: 7,
                hidden: 6,
                hidden_layers,
                bottleneck: 5,
                clusters: 4,
            };
            let one = cfg.init(11, &dev).single(2);
            // As cluster/temi writes head.safetensors.
            let named = to_torch(&one).unwrap();
            let shapes = one.torch_shapes();
            let mut w = crate::artifacts::safetensors::Writer::new();
            for (k, v) in &named {
                w.put(k.clone(), &shapes[k], v);
            }
            let dir = tempfile::tempdir().unwrap();
            // Named as a cache object is: by digest, without an extension.
            let p = dir.path().join("599338f7b9365a74");
            w.write(&p).unwrap();
            let back = load_head(&p, &dev).unwrap();
            assert_eq!(back.config, HeadsConfig { heads: 1, ..cfg });
            let x: Vec<f32> = (0..2 * 7).map(|i| (i as f32 * 0.37).sin()).collect();
            let xt = || Tensor::<2>::from_data(TensorData::new(x.clone(), [2, 7]), &dev);
            let a = to_host(forward(&one.config, &one.params, xt())).unwrap();
            let b = to_host(forward(&back.config, &back.params, xt())).unwrap();
            assert_eq!(a, b);
            // A header whose tensors do not chain is an error, not a panic.
            let mut bad = crate::artifacts::safetensors::Writer::new();
            for (k, v) in &named {
                if k.ends_with("last_layer.weight_v") {
                    bad.put(k.clone(), &[4, 3], &v[..12]);
                } else {
                    bad.put(k.clone(), &shapes[k], v);
                }
            }
            bad.write(&p).unwrap();
            assert!(load_head(&p, &dev).is_err());
        }
    }
}

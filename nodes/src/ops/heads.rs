//! TEMI's stacked clustering heads on the CPU as burn operations with hand-written backward
//! passes: the linear layers with bias and exact GELU fused in ([`cedm_kernels::nn::linear`]),
//! one product per head on one core, the output head-major; and the last layer, L2
//! normalisation then a weight-normalised product ([`cedm_kernels::nn::cosine`]).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use burn::tensor::activation::gelu as gelu_op;
use cedm_kernels::cpu::output;
use cedm_kernels::nn::cosine::HeadsCosine;
use cedm_kernels::nn::linear::HeadsLinear as Kernel;

use super::{dims, flex, routed, values};

/// The stacked linear layer as a backend extension (flex only; see [`heads_linear`]).
#[backend_extension(Flex, Autodiff)]
pub trait LinearOps: Backend {
    /// `act(x·W_h + b_h)` for each head h, `[H, n, dout]`: `x` `[n, din]` shared by all heads
    /// with `w` `[1, din, H·dout]` and `b` `[1, 1, H·dout]`, or per head `x` `[H, n, din]`, `w`
    /// `[H, din, dout]`, `b` `[H, 1, dout]`.
    fn heads_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        heads: usize,
        gelu: bool,
    ) -> FloatTensor<Self>;

    /// `(z/max(‖z‖, 1e-12)) · (g ⊙ v/‖v‖)` per head: `z` `[H, n, b]`, `v` `[H, b, C]`, `g`
    /// `[H, 1, C]` → `[H, n, C]`.
    fn heads_cosine(
        z: FloatTensor<Self>,
        v: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

fn cosine(z: &FlexTensor, v: &FlexTensor) -> HeadsCosine {
    let (zd, vd) = (dims(z), dims(v));
    HeadsCosine {
        heads: zd[0],
        n: zd[1],
        bottleneck: zd[2],
        clusters: vd[2],
    }
}

fn cosine_forward(z: &FlexTensor, v: &FlexTensor, g: &FlexTensor) -> FlexTensor {
    let k = cosine(z, v);
    // One product per head writes each head's block whole.
    let mut y = output(k.heads * k.n * k.clusters);
    k.forward(&values(z), &values(v), &values(g), &mut y);
    flex(y, vec![k.heads, k.n, k.clusters])
}

fn kernel(x: &FlexTensor, w: &FlexTensor, heads: usize, gelu: bool) -> Kernel {
    let (xd, wd) = (dims(x), dims(w));
    let shared = xd.len() == 2;
    Kernel {
        heads,
        n: xd[xd.len() - 2],
        din: xd[xd.len() - 1],
        dout: if shared { wd[2] / heads.max(1) } else { wd[2] },
        shared,
        gelu,
    }
}

/// The output and, when asked for, the pre-activation.
fn forward(
    x: &FlexTensor,
    w: &FlexTensor,
    b: &FlexTensor,
    k: &Kernel,
    save: bool,
) -> (FlexTensor, Option<Vec<f32>>) {
    // Each head's product writes its block, the epilogue every element of z.
    let mut y = output(k.y_len());
    let mut z = save.then(|| output(k.y_len()));
    k.forward(&values(x), &values(w), &values(b), &mut y, z.as_deref_mut());
    (flex(y, vec![k.heads, k.n, k.dout]), z)
}

impl LinearOps for Flex {
    fn heads_linear(
        x: FlexTensor,
        w: FlexTensor,
        b: FlexTensor,
        heads: usize,
        gelu: bool,
    ) -> FlexTensor {
        let _p = super::profile::scope("heads_linear");
        let k = kernel(&x, &w, heads, gelu);
        forward(&x, &w, &b, &k, false).0
    }

    fn heads_cosine(z: FlexTensor, v: FlexTensor, g: FlexTensor) -> FlexTensor {
        let _p = super::profile::scope("heads_cosine");
        cosine_forward(&z, &v, &g)
    }
}

#[derive(Debug)]
struct CosineBackward;

impl Backward<Flex, 3> for CosineBackward {
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("heads_cosine backward");
        let [node_z, node_v, node_g] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (z, v, g) = ops.state;
        let k = cosine(&z, &v);
        let mut dz = vec![0f32; k.heads * k.n * k.bottleneck];
        let mut dv = vec![0f32; k.heads * k.bottleneck * k.clusters];
        let mut dg = vec![0f32; k.heads * k.clusters];
        k.backward(
            &values(&z),
            &values(&v),
            &values(&g),
            &values(&dy),
            &mut dz,
            &mut dv,
            &mut dg,
        );
        for (node, grad, like) in [(node_z, dz, &z), (node_v, dv, &v), (node_g, dg, &g)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, flex(grad, dims(like)));
            }
        }
    }
}

#[derive(Debug)]
struct LinearBackward;

/// What the backward pass needs: input, weights, pre-activation (with a GELU), shapes.
#[derive(Clone, Debug)]
struct LinearState {
    x: FlexTensor,
    w: FlexTensor,
    b_dims: Vec<usize>,
    z: Option<Vec<f32>>,
    kernel: Kernel,
}

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("heads_linear backward");
        let [node_x, node_w, node_b] = ops.parents;
        let mut dy = super::owned(grads.consume::<Flex>(&ops.node));
        let st = ops.state;
        let k = st.kernel;
        let mut dx = node_x.as_ref().map(|_| vec![0f32; k.x_len()]);
        let mut dw = vec![0f32; k.w_len()];
        let mut db = vec![0f32; k.heads * k.dout];
        k.backward(
            &values(&st.x),
            &values(&st.w),
            st.z.as_deref(),
            dy.storage_mut::<f32>(),
            dx.as_deref_mut(),
            &mut dw,
            &mut db,
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, flex(dx, dims(&st.x)));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, flex(dw, dims(&st.w)));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex(db, st.b_dims));
        }
    }
}

impl<C: CheckpointStrategy> LinearOps for Autodiff<Flex, C> {
    fn heads_linear(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
        heads: usize,
        gelu: bool,
    ) -> FloatTensor<Self> {
        let _p = super::profile::scope("heads_linear");
        let k = kernel(x.primitive(), w.primitive(), heads, gelu);
        match LinearBackward
            .prepare::<C>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, z) = forward(x.primitive(), w.primitive(), b.primitive(), &k, gelu);
                let state = LinearState {
                    x: x.primitive().clone(),
                    w: w.primitive().clone(),
                    b_dims: dims(b.primitive()),
                    z,
                    kernel: k,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(x.primitive(), w.primitive(), b.primitive(), &k, false).0)
            }
        }
    }

    fn heads_cosine(
        z: FloatTensor<Self>,
        v: FloatTensor<Self>,
        g: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _p = super::profile::scope("heads_cosine");
        match CosineBackward
            .prepare::<C>([z.node(), v.node(), g.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (zp, vp, gp) = (
                    z.primitive().clone(),
                    v.primitive().clone(),
                    g.primitive().clone(),
                );
                let y = cosine_forward(&zp, &vp, &gp);
                prep.finish((zp, vp, gp), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(cosine_forward(z.primitive(), v.primitive(), g.primitive()))
            }
        }
    }
}

/// The first layer of H stacked heads, whose input they share: `act(x·W_h + b_h)` per head,
/// head-major, through the CPU kernels for f32 tensors on the flex device; otherwise one burn
/// product of all heads at once, then GELU and a transpose.
///
/// # Shapes
/// `x`: `[n, din]`, `w`: `[1, din, H·dout]`, `b`: `[1, 1, H·dout]` → `[H, n, dout]`
pub fn heads_linear_shared(
    x: Tensor<2>,
    w: Tensor<3>,
    b: Tensor<3>,
    heads: usize,
    gelu: bool,
) -> Tensor<3> {
    let [n, _] = x.dims();
    let [_, din, hd] = w.dims();
    let dout = hd / heads.max(1);
    if routed(&x) && routed(&w) && routed(&b) && heads * dout == hd {
        return Tensor::from_dispatch(<Dispatch as LinearOps>::heads_linear(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
            heads,
            gelu,
        ));
    }
    let y = x.matmul(w.reshape([din, hd])) + b.reshape([1, hd]);
    let y = if gelu { gelu_op(y) } else { y };
    y.reshape([n, heads, dout]).swap_dims(0, 1)
}

/// Later layers of H stacked heads: `act(x_h·W_h + b_h)` per head, through the CPU kernels for
/// f32 tensors on the flex device; otherwise burn's batched product and GELU.
///
/// # Shapes
/// `x`: `[H, n, din]`, `w`: `[H, din, dout]`, `b`: `[H, 1, dout]` → `[H, n, dout]`
pub fn heads_linear(x: Tensor<3>, w: Tensor<3>, b: Tensor<3>, gelu: bool) -> Tensor<3> {
    let heads = x.dims()[0];
    if routed(&x) && routed(&w) && routed(&b) {
        return Tensor::from_dispatch(<Dispatch as LinearOps>::heads_linear(
            x.into_dispatch(),
            w.into_dispatch(),
            b.into_dispatch(),
            heads,
            gelu,
        ));
    }
    let y = x.matmul(w) + b;
    if gelu { gelu_op(y) } else { y }
}

/// The last layer of H stacked heads: each row of `z` L2-normalised (`F.normalize`, eps
/// 1e-12), times the weight-normalised `g ⊙ v/‖v‖` (norm per output column), through the CPU
/// kernels for f32 tensors on the flex device; otherwise burn's ops.
///
/// # Shapes
/// `z`: `[H, n, b]`, `v`: `[H, b, C]`, `g`: `[H, 1, C]` → `[H, n, C]`
pub fn heads_cosine(z: Tensor<3>, v: Tensor<3>, g: Tensor<3>) -> Tensor<3> {
    if routed(&z) && routed(&v) && routed(&g) {
        return Tensor::from_dispatch(<Dispatch as LinearOps>::heads_cosine(
            z.into_dispatch(),
            v.into_dispatch(),
            g.into_dispatch(),
        ));
    }
    // F.normalize: z / max(‖z‖, 1e-12).
    let zn = z
        .clone()
        .powf_scalar(2.0)
        .sum_dim(2)
        .sqrt()
        .clamp_min(1e-12);
    let z = z / zn;
    let vn = v.clone().powf_scalar(2.0).sum_dim(1).sqrt(); // [H, 1, C]
    z.matmul(v / vn * g) // weight norm: g · v / ‖v‖ (per output column)
}

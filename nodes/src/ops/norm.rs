//! Group norm fused with an optional per-(image, channel) shift before it and SiLU after it, on
//! the CPU ([`cedm_kernels::nn::norm`]), forward and backward, as a burn operation.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::GroupNorm;
use burn::tensor::Tensor;
use burn::tensor::activation::silu;
use cedm_kernels::cpu::output;
use cedm_kernels::nn::norm::GroupNorm as Kernel;

use super::{dims, flex, routed, values};

/// The custom group norm as a backend extension (flex only; see [`group_norm`]).
#[backend_extension(Flex, Autodiff)]
pub trait NormOps: Backend {
    /// `act(γ·GN(x + shift) + β)`; `shift` is `[n, c]`.
    fn group_norm_act(
        x: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self>;
}

fn kernel(x: &FlexTensor, groups: usize, eps: f64, silu: bool) -> Kernel {
    let d = dims(x);
    Kernel {
        n: d[0],
        c: d[1],
        hw: d[2..].iter().product(),
        groups,
        eps,
        silu,
    }
}

/// The output and the statistics (μ, 1/σ per image and group).
fn forward(
    x: &FlexTensor,
    shift: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    k: &Kernel,
) -> (FlexTensor, Vec<f32>) {
    // plane_affine writes every plane of every group.
    let mut y = output(k.n * k.c * k.hw);
    let mut stats = vec![0f32; k.n * k.groups * 2];
    k.forward(
        &values(x),
        Some(&values(shift)),
        &values(gamma),
        &values(beta),
        &mut y,
        &mut stats,
    );
    (flex(y, dims(x)), stats)
}

impl NormOps for Flex {
    fn group_norm_act(
        x: FlexTensor,
        shift: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FlexTensor {
        let _p = super::profile::scope("group_norm");
        let k = kernel(&x, groups, eps, silu);
        forward(&x, &shift, &gamma, &beta, &k).0
    }
}

#[derive(Debug)]
struct NormBackward;

/// What the backward pass needs: the inputs, the statistics, the shape.
#[derive(Clone, Debug)]
struct NormState {
    x: FlexTensor,
    shift: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    stats: Vec<f32>,
    kernel: Kernel,
}

impl Backward<Flex, 4> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("group_norm backward");
        let [node_x, node_s, node_g, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let st = ops.state;
        let k = st.kernel;
        // The first backward pass writes every plane.
        let mut dx = output(k.n * k.c * k.hw);
        let mut ds = vec![0f32; k.n * k.c];
        let mut dg = vec![0f32; k.c];
        let mut db = vec![0f32; k.c];
        k.backward(
            &values(&st.x),
            Some(&values(&st.shift)),
            &values(&st.gamma),
            &values(&st.beta),
            &st.stats,
            &values(&dy),
            &mut dx,
            Some(&mut ds),
            &mut dg,
            &mut db,
        );
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, flex(dx, dims(&st.x)));
        }
        if let Some(node) = node_s {
            grads.register::<Flex>(node.id, flex(ds, dims(&st.shift)));
        }
        if let Some(node) = node_g {
            grads.register::<Flex>(node.id, flex(dg, vec![k.c]));
        }
        if let Some(node) = node_b {
            grads.register::<Flex>(node.id, flex(db, vec![k.c]));
        }
    }
}

impl<C: CheckpointStrategy> NormOps for Autodiff<Flex, C> {
    fn group_norm_act(
        x: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        groups: usize,
        eps: f64,
        silu: bool,
    ) -> FloatTensor<Self> {
        let _p = super::profile::scope("group_norm");
        let k = kernel(x.primitive(), groups, eps, silu);
        match NormBackward
            .prepare::<C>([x.node(), shift.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (y, stats) = forward(
                    x.primitive(),
                    shift.primitive(),
                    gamma.primitive(),
                    beta.primitive(),
                    &k,
                );
                let state = NormState {
                    x: x.primitive().clone(),
                    shift: shift.primitive().clone(),
                    gamma: gamma.primitive().clone(),
                    beta: beta.primitive().clone(),
                    stats,
                    kernel: k,
                };
                prep.finish(state, y)
            }
            OpsKind::UnTracked(prep) => prep.finish(
                forward(
                    x.primitive(),
                    shift.primitive(),
                    gamma.primitive(),
                    beta.primitive(),
                    &k,
                )
                .0,
            ),
        }
    }
}

/// `act(norm.forward(x + shift))` — act is SiLU when `silu`, `shift` a per-(image, channel)
/// `[n, c]` tensor added before the norm — through the CPU kernels when `x` is an f32 tensor on
/// the flex device (see the module docs); otherwise burn's group norm and SiLU.
///
/// # Shapes
/// `x`: `[n, c, h, w]`, `shift`: `[n, c]` → `[n, c, h, w]`
pub fn group_norm(
    norm: &GroupNorm,
    x: Tensor<4>,
    shift: Option<Tensor<2>>,
    act_silu: bool,
) -> Tensor<4> {
    let custom = norm.affine && routed(&x) && shift.as_ref().is_none_or(routed);
    let (Some(gamma), Some(beta)) = (norm.gamma.as_ref(), norm.beta.as_ref()) else {
        return fallback(norm, x, shift, act_silu);
    };
    if !custom {
        return fallback(norm, x, shift, act_silu);
    }
    let [n, c, _, _] = x.dims();
    let shift = shift.unwrap_or_else(|| Tensor::zeros([n, c], &x.device().inner()));
    Tensor::from_dispatch(<Dispatch as NormOps>::group_norm_act(
        x.into_dispatch(),
        shift.into_dispatch(),
        gamma.val().into_dispatch(),
        beta.val().into_dispatch(),
        norm.num_groups,
        norm.epsilon,
        act_silu,
    ))
}

fn fallback(norm: &GroupNorm, x: Tensor<4>, shift: Option<Tensor<2>>, act_silu: bool) -> Tensor<4> {
    let x = match shift {
        Some(s) => {
            let [n, c] = s.dims();
            x + s.reshape([n, c, 1, 1])
        }
        None => x,
    };
    let y = norm.forward(x);
    if act_silu { silu(y) } else { y }
}

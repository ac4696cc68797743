//! Convolution with stride 1 and "same" padding on the CPU ([`cedm_kernels::nn::conv`]),
//! forward and backward, as a burn operation.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::Tensor;
use cedm_kernels::cpu::output;
use cedm_kernels::nn::conv::Conv2d as Kernel;

use super::{dims, flex, routed, values};

/// The custom convolution as a backend extension (flex only; see [`conv2d`]).
#[backend_extension(Flex, Autodiff)]
pub trait ConvOps: Backend {
    /// `y = conv(x, weight) + bias` with stride 1 and padding `k / 2`.
    fn conv2d_same(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

fn shape(x: &FlexTensor, w: &FlexTensor) -> Kernel {
    let (xd, wd) = (dims(x), dims(w));
    Kernel {
        n: xd[0],
        cin: xd[1],
        cout: wd[0],
        h: xd[2],
        w: xd[3],
        k: wd[2],
    }
}

fn forward(x: &FlexTensor, w: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let s = shape(x, w);
    // Every element is written by the product (or the group's scatter) before the bias.
    let mut y = output(s.n * s.cout * s.hw());
    s.forward(&values(x), &values(w), Some(&values(b)), &mut y);
    flex(y, vec![s.n, s.cout, s.h, s.w])
}

impl ConvOps for Flex {
    fn conv2d_same(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let _p = super::profile::scope("conv2d");
        forward(&x, &weight, &bias)
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("conv2d backward");
        let [node_x, node_w, node_b] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x, w) = ops.state;
        let s = shape(&x, &w);
        let dyv = values(&dy);
        if let Some(node) = node_x {
            // Written whole by the adjoint convolution or the 1×1 product.
            let mut dx = output(s.n * s.cin * s.hw());
            s.backward_data(&values(&w), &dyv, &mut dx);
            grads.register::<Flex>(node.id, flex(dx, vec![s.n, s.cin, s.h, s.w]));
        }
        if node_w.is_some() || node_b.is_some() {
            let mut dw = vec![0f32; s.cout * s.kk()];
            let mut db = vec![0f32; s.cout];
            s.backward_weight(&values(&x), &dyv, &mut dw, Some(&mut db));
            if let Some(node) = node_w {
                grads.register::<Flex>(node.id, flex(dw, vec![s.cout, s.cin, s.k, s.k]));
            }
            if let Some(node) = node_b {
                grads.register::<Flex>(node.id, flex(db, vec![s.cout]));
            }
        }
    }
}

impl<C: CheckpointStrategy> ConvOps for Autodiff<Flex, C> {
    fn conv2d_same(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let _p = super::profile::scope("conv2d");
        match ConvBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (xp, wp) = (x.primitive().clone(), weight.primitive().clone());
                let y = forward(&xp, &wp, bias.primitive());
                prep.finish((xp, wp), y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(forward(x.primitive(), weight.primitive(), bias.primitive()))
            }
        }
    }
}

/// Whether a module is a convolution the custom op computes: stride 1, no dilation or groups,
/// a square odd kernel with symmetric padding `k / 2`, and a bias.
fn supported(conv: &Conv2d) -> bool {
    let [kh, kw] = conv.kernel_size;
    let p = kh / 2;
    kh == kw
        && kh % 2 == 1
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.bias.is_some()
        && matches!(conv.padding, PaddingConfig2d::Explicit(t, l, b, r) if [t, l, b, r] == [p; 4])
}

/// `conv.forward(x)`, through the CPU kernels when `x` is an f32 tensor on the flex device and
/// the module is one they compute (see the module docs); otherwise burn's convolution.
///
/// # Shapes
/// `x`: `[n, cin, h, w]` → `[n, cout, h, w]`
pub fn conv2d(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let Some(bias) = conv.bias.as_ref().filter(|_| routed(&x) && supported(conv)) else {
        return conv.forward(x);
    };
    let w = conv.weight.val();
    if !routed(&w) {
        return conv.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as ConvOps>::conv2d_same(
        x.into_dispatch(),
        w.into_dispatch(),
        bias.val().into_dispatch(),
    ))
}

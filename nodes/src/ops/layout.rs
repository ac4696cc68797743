//! Channel concatenation, `(a + b)·s`, 2× nearest upsampling and 2×2 average pooling on the CPU
//! ([`cedm_kernels::nn::layout`]), forward and backward, as burn operations.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
// Every layout kernel writes each element of its output once (copies, no accumulation), so
// outputs start uncleared (`output`).
use cedm_kernels::cpu::output;
use cedm_kernels::nn::layout;

use super::{dims, flex, routed, values};

/// The layout operations as a backend extension (flex only; see the wrappers below).
#[backend_extension(Flex, Autodiff)]
pub trait LayoutOps: Backend {
    /// `[n, ca, h, w] ‖ [n, cb, h, w] → [n, ca + cb, h, w]`.
    fn cat_channels(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// `(a + b)·s`.
    fn add_scale(a: FloatTensor<Self>, b: FloatTensor<Self>, s: f64) -> FloatTensor<Self>;
    /// 2× nearest upsampling (`up`) or 2×2 average pooling of `[n, c, h, w]`.
    fn resample2(x: FloatTensor<Self>, up: bool) -> FloatTensor<Self>;
}

fn cat_fwd(a: &FlexTensor, b: &FlexTensor) -> FlexTensor {
    let (da, db) = (dims(a), dims(b));
    let hw = da[2] * da[3];
    let mut out = output(da[0] * (da[1] + db[1]) * hw);
    layout::cat_channels(&values(a), &values(b), da[0], da[1], db[1], hw, &mut out);
    flex(out, vec![da[0], da[1] + db[1], da[2], da[3]])
}

fn add_scale_fwd(a: &FlexTensor, b: &FlexTensor, s: f64) -> FlexTensor {
    let mut out = output(dims(a).iter().product());
    layout::add_scale(&values(a), &values(b), s as f32, &mut out);
    flex(out, dims(a))
}

fn resample_fwd(x: &FlexTensor, up: bool) -> FlexTensor {
    let d = dims(x);
    let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
    if up {
        let mut out = output(planes * 4 * h * w);
        layout::up2(&values(x), planes, h, w, &mut out);
        flex(out, vec![d[0], d[1], 2 * h, 2 * w])
    } else {
        let mut out = output(planes * (h / 2) * (w / 2));
        layout::down2(&values(x), planes, h, w, &mut out);
        flex(out, vec![d[0], d[1], h / 2, w / 2])
    }
}

impl LayoutOps for Flex {
    fn cat_channels(a: FlexTensor, b: FlexTensor) -> FlexTensor {
        let _p = super::profile::scope("layout");
        cat_fwd(&a, &b)
    }
    fn add_scale(a: FlexTensor, b: FlexTensor, s: f64) -> FlexTensor {
        let _p = super::profile::scope("layout");
        add_scale_fwd(&a, &b, s)
    }
    fn resample2(x: FlexTensor, up: bool) -> FlexTensor {
        let _p = super::profile::scope("layout");
        resample_fwd(&x, up)
    }
}

#[derive(Debug)]
struct CatBackward;

impl Backward<Flex, 2> for CatBackward {
    type State = (Vec<usize>, Vec<usize>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("layout backward");
        let [na, nb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (da, db) = ops.state;
        let hw = da[2] * da[3];
        let mut ga = output(da.iter().product());
        let mut gb = output(db.iter().product());
        layout::split_channels(&values(&g), da[0], da[1], db[1], hw, &mut ga, &mut gb);
        if let Some(n) = na {
            grads.register::<Flex>(n.id, flex(ga, da));
        }
        if let Some(n) = nb {
            grads.register::<Flex>(n.id, flex(gb, db));
        }
    }
}

#[derive(Debug)]
struct AddScaleBackward;

impl Backward<Flex, 2> for AddScaleBackward {
    type State = f64;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("layout backward");
        let [na, nb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let shape = dims(&g);
        let mut gs = output(shape.iter().product());
        layout::scale(&values(&g), ops.state as f32, &mut gs);
        match (na, nb) {
            (Some(a), Some(b)) => {
                grads.register::<Flex>(a.id, flex(gs.clone(), shape.clone()));
                grads.register::<Flex>(b.id, flex(gs, shape));
            }
            (Some(a), None) => grads.register::<Flex>(a.id, flex(gs, shape)),
            (None, Some(b)) => grads.register::<Flex>(b.id, flex(gs, shape)),
            (None, None) => {}
        }
    }
}

#[derive(Debug)]
struct ResampleBackward;

impl Backward<Flex, 1> for ResampleBackward {
    type State = (Vec<usize>, bool);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let _p = super::profile::scope("layout backward");
        let [nx] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (d, up) = ops.state;
        let Some(node) = nx else { return };
        let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
        let mut gx = output(planes * h * w);
        if up {
            layout::up2_adjoint(&values(&g), planes, h, w, &mut gx);
        } else {
            layout::down2_adjoint(&values(&g), planes, h, w, &mut gx);
        }
        grads.register::<Flex>(node.id, flex(gx, d));
    }
}

impl<C: CheckpointStrategy> LayoutOps for Autodiff<Flex, C> {
    fn cat_channels(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        let _p = super::profile::scope("layout");
        let out = cat_fwd(a.primitive(), b.primitive());
        match CatBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((dims(a.primitive()), dims(b.primitive())), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
    fn add_scale(a: FloatTensor<Self>, b: FloatTensor<Self>, s: f64) -> FloatTensor<Self> {
        let _p = super::profile::scope("layout");
        let out = add_scale_fwd(a.primitive(), b.primitive(), s);
        match AddScaleBackward
            .prepare::<C>([a.node(), b.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(s, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
    fn resample2(x: FloatTensor<Self>, up: bool) -> FloatTensor<Self> {
        let _p = super::profile::scope("layout");
        let out = resample_fwd(x.primitive(), up);
        match ResampleBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish((dims(x.primitive()), up), out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }
}

/// `cat([a, b], 1)` of two NCHW tensors.
pub fn cat_channels(a: Tensor<4>, b: Tensor<4>) -> Tensor<4> {
    if !(routed(&a) && routed(&b)) {
        return Tensor::cat(vec![a, b], 1);
    }
    Tensor::from_dispatch(<Dispatch as LayoutOps>::cat_channels(
        a.into_dispatch(),
        b.into_dispatch(),
    ))
}

/// `(a + b)·s` of two tensors of one shape.
pub fn add_scale(a: Tensor<4>, b: Tensor<4>, s: f64) -> Tensor<4> {
    if !(routed(&a) && routed(&b)) || a.dims() != b.dims() {
        return (a + b) * s;
    }
    Tensor::from_dispatch(<Dispatch as LayoutOps>::add_scale(
        a.into_dispatch(),
        b.into_dispatch(),
        s,
    ))
}

/// 2× nearest-neighbour upsampling (EDM's `[1,1]` resample filter, transposed conv).
pub fn up2(x: Tensor<4>) -> Tensor<4> {
    if routed(&x) {
        return Tensor::from_dispatch(<Dispatch as LayoutOps>::resample2(x.into_dispatch(), true));
    }
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1])
        .expand([n, c, h, 2, w, 2])
        .reshape([n, c, h * 2, w * 2])
}

/// 2×2 average pooling (EDM's `[1,1]` resample filter, strided conv).
pub fn down2(x: Tensor<4>) -> Tensor<4> {
    if routed(&x) {
        return Tensor::from_dispatch(<Dispatch as LayoutOps>::resample2(x.into_dispatch(), false));
    }
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h / 2, 2, w / 2, 2])
        .mean_dim(5)
        .mean_dim(3)
        .reshape([n, c, h / 2, w / 2])
}

//! Adam and the EMA of weights in one pass per parameter on the CPU
//! ([`cedm_kernels::nn::optim`]), updating the optimiser state in place; other devices use the
//! same arithmetic through burn's tensor ops.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;
use cedm_kernels::nn::optim::{AdamStep, adam as adam_kernel, ema as ema_kernel};

use super::{owned, routed};

/// The fused optimiser updates as a backend extension (flex only; see [`adam`], [`ema`]).
#[backend_extension(Flex)]
pub trait OptimOps: Backend {
    /// One Adam step: the new (parameter, first moment, second moment).
    #[allow(clippy::too_many_arguments)]
    fn adam_step(
        p: FloatTensor<Self>,
        g: FloatTensor<Self>,
        m: FloatTensor<Self>,
        v: FloatTensor<Self>,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        step: u64,
        weight_decay: f64,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `ema ← p + (ema − p)·β`.
    fn ema_step(ema: FloatTensor<Self>, p: FloatTensor<Self>, beta: f64) -> FloatTensor<Self>;
}

impl OptimOps for Flex {
    fn adam_step(
        p: FlexTensor,
        g: FlexTensor,
        m: FlexTensor,
        v: FlexTensor,
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        step: u64,
        weight_decay: f64,
    ) -> (FlexTensor, FlexTensor, FlexTensor) {
        let _p = super::profile::scope("adam");
        let (mut p, mut m, mut v) = (owned(p), owned(m), owned(v));
        let g = super::values(&g);
        adam_kernel(
            p.storage_mut::<f32>(),
            &g,
            m.storage_mut::<f32>(),
            v.storage_mut::<f32>(),
            AdamStep {
                lr,
                beta1,
                beta2,
                eps,
                step,
                weight_decay,
            },
        );
        (p, m, v)
    }

    fn ema_step(ema: FlexTensor, p: FlexTensor, beta: f64) -> FlexTensor {
        let _p = super::profile::scope("ema");
        let mut e = owned(ema);
        ema_kernel(e.storage_mut::<f32>(), &super::values(&p), beta);
        e
    }
}

/// One Adam step (`torch.optim.Adam`; `torch.optim.AdamW` when `s.weight_decay > 0`) of a
/// parameter of any rank: the new parameter and moments. `step` counts from 1.
pub fn adam<const D: usize>(
    p: Tensor<D>,
    g: Tensor<D>,
    m: Tensor<D>,
    v: Tensor<D>,
    s: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    if routed(&p) && routed(&g) && routed(&m) && routed(&v) && !p.device().is_autodiff() {
        let (p, m, v) = <Dispatch as OptimOps>::adam_step(
            p.into_dispatch(),
            g.into_dispatch(),
            m.into_dispatch(),
            v.into_dispatch(),
            s.lr,
            s.beta1,
            s.beta2,
            s.eps,
            s.step,
            s.weight_decay,
        );
        return (
            Tensor::from_dispatch(p),
            Tensor::from_dispatch(m),
            Tensor::from_dispatch(v),
        );
    }
    let t = s.step as i32;
    let bc1 = 1.0 - s.beta1.powi(t);
    let bc2 = 1.0 - s.beta2.powi(t);
    let p = if s.weight_decay > 0.0 {
        p * (1.0 - s.lr * s.weight_decay)
    } else {
        p
    };
    let m = m * s.beta1 + g.clone() * (1.0 - s.beta1);
    let v = v * s.beta2 + g.clone() * g * (1.0 - s.beta2);
    let denom = v.clone().sqrt() / bc2.sqrt() + s.eps;
    let p = p - m.clone() / denom * (s.lr / bc1);
    (p, m, v)
}

/// The EMA of a parameter: `ema ← p + (ema − p)·β`.
pub fn ema<const D: usize>(ema: Tensor<D>, p: Tensor<D>, beta: f64) -> Tensor<D> {
    if routed(&ema) && routed(&p) && !p.device().is_autodiff() && !ema.device().is_autodiff() {
        return Tensor::from_dispatch(<Dispatch as OptimOps>::ema_step(
            ema.into_dispatch(),
            p.into_dispatch(),
            beta,
        ));
    }
    p.clone() + (ema - p) * beta
}

//! A linear layer's forward pass for inference on the CPU: one multi-threaded product
//! ([`cedm_kernels::cpu::gemm`]: oneDNN's sgemm split over rows when it is loaded, else the
//! system BLAS or the `gemm` crate) and the bias added in the same pass over the output. The
//! transformer encoders (ViT, CLIP) spend most of their time here; training keeps burn's linear
//! layer and its autodiff.

use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, Flex, backend_extension};
use burn::nn::Linear;
use burn::tensor::Tensor;
use cedm_kernels::cpu::output;
use rayon::prelude::*;

use super::{dims, flex, routed, values};

/// The inference linear layer as a backend extension (flex only; see [`linear`]).
#[backend_extension(Flex)]
pub trait LinearOps: Backend {
    /// `y = x·w + b` over the last dimension of `x` (`w`: `[in, out]`, `b`: `[out]`).
    fn linear_infer(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl LinearOps for Flex {
    fn linear_infer(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        let _p = super::profile::scope("linear");
        let mut shape = dims(&x);
        let wd = dims(&weight);
        let (din, dout) = (wd[0], wd[1]);
        let m = shape.iter().product::<usize>() / din.max(1);
        // Written whole by the product (accumulate = false).
        let mut y = output(m * dout);
        cedm_kernels::cpu::gemm(
            m,
            din,
            dout,
            &values(&x),
            false,
            &values(&weight),
            false,
            &mut y,
            false,
        );
        let b = values(&bias);
        y.par_chunks_mut(dout.max(1))
            .for_each(|row| row.iter_mut().zip(b.iter()).for_each(|(v, &c)| *v += c));
        if let Some(last) = shape.last_mut() {
            *last = dout;
        }
        flex(y, shape)
    }
}

/// `l.forward(x)`, through one CPU product when `x` is an f32 tensor on the flex device
/// without autodiff (inference) and the layer has a bias; otherwise burn's linear layer.
pub fn linear<const D: usize>(l: &Linear, x: Tensor<D>) -> Tensor<D> {
    let w = l.weight.val();
    let Some(b) = l.bias.as_ref().map(|b| b.val()) else {
        return l.forward(x);
    };
    if !routed(&x) || x.device().is_autodiff() || !routed(&w) {
        return l.forward(x);
    }
    Tensor::from_dispatch(<Dispatch as LinearOps>::linear_infer(
        x.into_dispatch(),
        w.into_dispatch(),
        b.into_dispatch(),
    ))
}

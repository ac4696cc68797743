//! burn operations with hand-written backward passes for the CPU backend (`flex`), through
//! burn's backend-extension API (`#[backend_extension(Flex, Autodiff)]`): the convolution and
//! the fused group norm SongUNet spends its time in, TEMI's stacked head layers and the fused
//! optimiser updates, on the kernels of
//! [`cedm_kernels::nn`]. Each public function takes burn tensors and modules and routes flex
//! f32 tensors through the custom op; every other device or float type (wgpu, cuda, f16/bf16
//! mixed precision) computes with burn's own operations, as before. Modules stay parameter
//! containers, so checkpoint names do not change.
//!
//! `CEDM_CPU_OPS=burn` (or [`set_enabled`]) turns the custom ops off, for comparing against
//! burn's ops.

mod conv;
mod heads;
mod layout;
mod linear;
mod norm;
mod optim;
mod profile;

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::DispatchDevice;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};

pub use conv::conv2d;
pub use heads::{heads_cosine, heads_linear, heads_linear_shared};
pub use layout::{add_scale, cat_channels, down2, up2};
pub use linear::linear;
pub use norm::group_norm;
pub use optim::{adam, ema};
pub use profile::{profile, set_profiling};

static DISABLED: AtomicBool = AtomicBool::new(false);
static ENV_READ: std::sync::Once = std::sync::Once::new();

/// Turn the custom CPU operations on or off for this process (on by default, off when the
/// environment has `CEDM_CPU_OPS=burn`).
pub fn set_enabled(on: bool) {
    ENV_READ.call_once(|| {});
    DISABLED.store(!on, Ordering::Relaxed);
}

/// Whether the custom CPU operations are in use.
pub fn enabled() -> bool {
    ENV_READ.call_once(|| {
        if std::env::var("CEDM_CPU_OPS").is_ok_and(|v| v == "burn") {
            DISABLED.store(true, Ordering::Relaxed);
        }
    });
    !DISABLED.load(Ordering::Relaxed)
}

/// Whether a tensor goes through the custom CPU operations: f32 on the flex device (with or
/// without autodiff), and the operations enabled.
fn routed<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32
        && matches!(t.device().inner().as_dispatch(), DispatchDevice::Flex(_))
        && enabled()
}

/// A flex tensor's values as a contiguous f32 slice (copying only when it is a strided view).
fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>().to_vec()),
    }
}

/// The dimensions of a flex tensor.
fn dims(t: &FlexTensor) -> Vec<usize> {
    t.layout().shape().to_vec()
}

/// A new flex tensor from values and a shape.
fn flex(values: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// A contiguous flex tensor whose storage [`FlexTensor::storage_mut`] then writes in place when
/// nothing else holds it (copy-on-write: a shared one is copied first).
fn owned(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

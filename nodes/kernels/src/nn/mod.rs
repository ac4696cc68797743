//! Training kernels with their gradients, on plain f32 slices in NCHW layout: convolution,
//! fused group norm, resampling, stacked linear layers (TEMI's heads), optimiser updates.
//! `cedm-nodes` wraps them as burn operations with hand-written backward passes
//! (`nodes/src/ops/`).

pub mod conv;
pub mod cosine;
pub mod layout;
pub mod linear;
pub mod math;
pub mod norm;
pub mod optim;

//! cedm-kernels: the CPU kernels under cedm's node kinds and models.
//!
//! - [`cpu`]: the one GEMM entry point ([`cpu::gemm`]), NHWC inference convolutions (im2col, 1×1
//!   and depthwise fast paths, fused epilogues), pooling, dot products, reusable buffers;
//! - [`blas`]: GEMM providers loaded at run time (a system BLAS), behind [`cpu::gemm`];
//! - [`linalg`]: float64 linear algebra of the Fréchet distance;
//! - [`imageops`]: resampling (PIL/torch antialias, TensorFlow bilinear) and preprocessing;
//! - [`rng`]: the seeded generator every stochastic node uses.
//!
//! No burn and no engine here: this crate builds fast, is optimised even in the dev profile, and
//! holds every `unsafe` block of cedm except the GPU driver probe in `cedm-nodes`. Each block
//! says why it is sound (`clippy::undocumented_unsafe_blocks` is denied).

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod blas;
pub mod cpu;
pub mod imageops;
pub mod linalg;
pub mod rng;

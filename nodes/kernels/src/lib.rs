//! cedm-kernels: the CPU kernels under cedm's node kinds and models.
//!
//! - [`cpu`]: the one GEMM entry point ([`cpu::gemm`]), NHWC inference convolutions (im2col, 1×1
//!   and depthwise fast paths, fused epilogues), pooling, dot products, reusable buffers;
//! - [`blas`], [`dnnl`]: GEMM providers loaded at run time (a system BLAS, oneDNN), behind
//!   [`cpu::gemm`];
//! - [`linalg`]: float64 linear algebra of the Fréchet distance;
//! - [`imageops`]: resampling (PIL/torch antialias, TensorFlow bilinear) and preprocessing;
//! - [`knn`], [`kmeans`]: exact cosine kNN and k-means (Lloyd with Hamerly's bounds);
//! - [`nn`]: training kernels with their gradients (convolution, group norm, layout, optimisers);
//! - [`rng`]: the seeded generator every stochastic node uses;
//! - [`alloc`]: the global allocator the binary installs, which reuses large freed blocks.
//!
//! No burn and no engine here: this crate builds fast, is optimised even in the dev profile, and
//! holds every `unsafe` block of cedm except the GPU driver probe in `cedm-nodes`. Each block
//! says why it is sound (`clippy::undocumented_unsafe_blocks` is denied).

#![deny(clippy::undocumented_unsafe_blocks)]

/// Compile a loop function three times — for AVX-512, for AVX2 + FMA, and for the baseline
/// target — and pick at run time what the CPU has (the compiler vectorises the body for each).
macro_rules! multiversion {
    ($(#[$m:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        #[allow(clippy::too_many_arguments)]
        pub fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                if std::is_x86_feature_detected!("avx512f")
                    && std::is_x86_feature_detected!("avx512bw")
                    && std::is_x86_feature_detected!("avx512dq")
                    && std::is_x86_feature_detected!("avx512vl")
                    && std::is_x86_feature_detected!("fma")
                {
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn wide($($arg: $ty),*) $(-> $ret)? $body
                    // SAFETY: the CPU has these features (checked just above).
                    return unsafe { wide($($arg),*) };
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    #[target_feature(enable = "avx2,fma")]
                    #[allow(clippy::too_many_arguments)]
                    unsafe fn fast($($arg: $ty),*) $(-> $ret)? $body
                    // SAFETY: the CPU has AVX2 and FMA (checked just above).
                    return unsafe { fast($($arg),*) };
                }
            }
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn base($($arg: $ty),*) $(-> $ret)? $body
            base($($arg),*)
        }
    };
}

pub mod alloc;
pub mod blas;
pub mod cpu;
pub mod dnnl;
pub mod imageops;
pub mod kmeans;
pub mod knn;
pub mod linalg;
pub mod nn;
pub mod rng;

//! End-to-end tests of the `cedm` binary on fresh temporary caches.

mod util;

mod crash;
#[cfg(not(feature = "wgpu"))]
mod devices;
mod edm;
mod engine;
mod features;
mod keys;
mod kinds;
mod metrics;
mod report;
mod slurm;
#[cfg(feature = "wgpu")]
mod wgpu;

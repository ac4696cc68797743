//! End-to-end tests of the `cedm` binary on fresh temporary caches.

mod util;

mod crash;
mod determinism;
#[cfg(not(feature = "wgpu"))]
mod devices;
mod edm;
mod engine;
mod features;
mod keys;
mod kinds;
mod metrics;
mod ray;
mod reliability;
#[cfg(feature = "remote")]
mod remote;
mod report;
mod slurm;
#[cfg(feature = "wgpu")]
mod wgpu;

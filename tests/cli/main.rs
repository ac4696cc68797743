//! End-to-end tests of the `cedm` binary on fresh temporary caches.

mod util;

mod crash;
mod edm;
mod engine;
mod features;
mod kinds;
mod metrics;
mod report;
mod slurm;

//! End-to-end tests of the `cedm` binary on fresh temporary caches.

mod util;

mod crash;
mod engine;
mod features;
mod kinds;

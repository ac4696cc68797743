//! `data/*`: datasets → image artifacts.

pub mod cifar;
pub mod idx;
pub mod images;

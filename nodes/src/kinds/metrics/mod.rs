//! `metrics/*`: sample quality — FID, FDD and the reference statistics they compare against, and
//! KID and precision/recall/density/coverage from cached features.

pub mod classifier;
pub mod cnn_probe;
pub mod fd;
pub mod fdd;
pub mod fdd_ref;
pub mod fid;
pub mod fid_ref;
pub mod kid;
pub mod paired;
pub mod prdc;
pub mod probe;

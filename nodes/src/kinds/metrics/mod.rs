//! `metrics/*`: sample quality (FID, FDD) and the reference statistics they compare against.

pub mod fdd;
pub mod fdd_ref;
pub mod fid;
pub mod fid_ref;

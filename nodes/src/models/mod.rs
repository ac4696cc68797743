//! burn models used by the node kinds, one file each, loading the original checkpoints.

pub mod inception;
pub mod mobilenet_v2;
pub mod params;
pub mod songunet;
pub mod temi_heads;
pub mod vit;
pub mod weights;

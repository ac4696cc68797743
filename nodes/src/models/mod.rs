//! burn models used by the node kinds, one file each (a folder when a model spans several, like
//! [`edm`]), loading the original checkpoints by their key names.

pub mod classifier;
pub mod clip;
pub mod edm;
pub mod inception;
pub mod mobilenet_v2;
pub mod params;
pub mod temi_heads;
pub mod vit;
pub mod weights;

//! `features/*`: pretrained backbone features and their neighbours.

pub mod clip;
pub mod inception;
pub mod knn;
pub mod mobilenet_v2;
pub mod vit;

//! Algorithms the node kinds run on plain data (no model): clustering scores against ground
//! truth, the Fréchet distance, KID and precision/recall/density/coverage. (kNN and k-means, whose loops are hot, live in
//! `cedm-kernels`, which is optimised in every profile.)

pub mod frechet;
pub mod kid;
pub mod prdc;
pub mod scores;

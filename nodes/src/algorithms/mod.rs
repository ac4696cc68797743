//! Algorithms the node kinds run on plain data (no model): clustering scores against ground
//! truth, the Fréchet distance and its paired comparison over seeds, KID,
//! precision/recall/density/coverage and the kNN probe. (kNN and k-means, whose loops are hot, live in
//! `cedm-kernels`, which is optimised in every profile.)

pub mod frechet;
pub mod kid;
pub mod paired;
pub mod prdc;
pub mod probe;
pub mod scores;

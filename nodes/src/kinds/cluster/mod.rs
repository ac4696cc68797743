//! `cluster/*`: cluster labels (TEMI, k-means), their scores, their mapping to classes, the
//! cluster-count bound.

pub mod bound;
pub mod kmeans;
pub mod mapping;
pub mod metrics;
pub mod temi;

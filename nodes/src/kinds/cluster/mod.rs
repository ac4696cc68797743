//! `cluster/*`: cluster labels (TEMI, k-means), their scores, the cluster-count bound.

pub mod bound;
pub mod kmeans;
pub mod metrics;
pub mod temi;

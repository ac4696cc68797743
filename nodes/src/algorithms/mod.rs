//! Algorithms the node kinds run on plain data (no model): exact kNN, k-means, clustering
//! scores against ground truth, the Fréchet distance. Each is called by its kind and by the
//! benchmarks; each is tested here against brute force or a reference.

pub mod frechet;
pub mod kmeans;
pub mod knn;
pub mod scores;

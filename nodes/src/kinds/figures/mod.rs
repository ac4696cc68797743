//! `figures/*`: the seed paper's qualitative figures as nodes — each writes `figure.png` and the
//! numbers behind it (`figure.json`): the same noise through C-EDM and the ground-truth EDM
//! (Fig. 2), through C-EDMs of every C (Fig. 3/4), training images by cluster (Fig. 5), and the
//! clustering's confidence on generated samples (Fig. 6).

pub mod confidence;
pub mod gallery;
pub mod granularity;
pub mod same_noise;

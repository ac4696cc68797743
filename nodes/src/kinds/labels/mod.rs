//! `labels/*`: label sources other than clustering — CLIP zero-shot pseudo-labels.

pub mod clip;

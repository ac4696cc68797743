//! The node kinds, one file each, in folders mirroring their YAML names (`cluster/temi` is
//! `kinds/cluster/temi.rs`). Kinds are leaves: a kind never imports another kind; what two
//! kinds share lives below them (`artifacts`, `encoders`, `models`, `algorithms`, `datasets`,
//! `protocol`). The one list of kinds is [`crate::registry`].

pub mod cluster;
pub mod data;
pub mod edm;
pub mod features;
pub mod figures;
pub mod labels;
pub mod metrics;

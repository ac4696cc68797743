//! `edm/*`: training and sampling the EDM.

pub mod sample;
pub mod train;

//! EDM (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
//! Models") as C-EDM trains it: the SongUNet denoiser, its preconditioning and loss, the
//! augmentation pipe, and the Heun sampler — together, as candle keeps schedulers beside their
//! UNet. Reference: NVlabs/edm `training/`, `generate.py`.

pub mod augment;
pub mod precond;
pub mod sampler;
pub mod songunet;

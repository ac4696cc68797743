//! `edm/sample`: generate images with EDM's deterministic Heun sampler from a trained network,
//! conditions drawn per sample from q(c) — the training label frequencies, C-EDM's choice — or
//! uniformly (EDM's), or fixed to one class; optional classifier-free guidance.
//!
//! Sample k uses seed `first_seed + k`: its latents and its condition come from cedm's generator
//! seeded by that seed (as EDM's `generate.py` seeds a generator per sample), so a sample does not
//! depend on the batch it falls in, and the same seeds give the same images on the same backend.
//!
//! Outputs: `images.safetensors` (uint8 `[N, C, H, W]`, EDM's `clip(x·127.5 + 128)`), the same
//! image artifact the data nodes write, so FID and feature nodes read samples and datasets alike;
//! `conditions.safetensors` (int64 `[N]`, −1 when unconditional); `grid.png` with one row per
//! cluster (the first `grid_rows` clusters, `grid_cols` extra samples each).

use std::num::NonZeroUsize;

use cedm_engine::{BatchDefaults, Kind, NodeError, ParamError, Resources, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::grid::write_grid_rows;
use crate::artifacts::images::ImageSet;
use crate::artifacts::network::load_network;
use crate::artifacts::safetensors::write_i64;
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::models::edm::sampler::{Sampler, generate, seeded_condition};
use crate::params::nz;

/// How each sample's condition is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Condition {
    /// From q(c), the training label frequencies (C-EDM).
    Q,
    /// Uniformly over labels (EDM's `generate.py` default).
    Uniform,
}

/// Params of `edm/sample`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Number of samples (the paper evaluates 3 × 50 000). Default: 50000.
    #[serde(default = "d_count")]
    pub count: NonZeroUsize,
    /// Seed of the first sample; sample k uses first_seed + k. Default: 0.
    #[serde(default)]
    pub first_seed: u64,
    /// Heun steps N (18 CIFAR, 40 FFHQ). Default: 18.
    #[serde(default = "d_steps")]
    pub steps: NonZeroUsize,
    /// σ_min. Default: 0.002.
    #[serde(default = "d_smin")]
    pub sigma_min: f64,
    /// σ_max. Default: 80.
    #[serde(default = "d_smax")]
    pub sigma_max: f64,
    /// ρ of the time-step schedule. Default: 7.
    #[serde(default = "d_rho")]
    pub rho: f64,
    /// Conditions: `q` (training frequencies, C-EDM) or `uniform`. Default: `q`.
    #[serde(default = "d_cond")]
    pub condition: Condition,
    /// Fix every sample's condition to this label instead.
    #[serde(default)]
    pub class: Option<usize>,
    /// Classifier-free guidance weight w: D = (1+w)·D(x|c) − w·D(x|∅) (needs p_uncond in training). Default: 0.
    #[serde(default)]
    pub guidance: f64,
    /// Samples per network call batch. Default: 128.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
    /// Clusters shown in grid.png (one row each). Default: 10.
    #[serde(default = "d_rows")]
    pub grid_rows: usize,
    /// Samples per grid row. Default: 8.
    #[serde(default = "d_cols")]
    pub grid_cols: usize,
}

fn d_count() -> NonZeroUsize {
    const { nz(50_000) }
}
fn d_steps() -> NonZeroUsize {
    const { nz(18) }
}
fn d_smin() -> f64 {
    0.002
}
fn d_smax() -> f64 {
    80.0
}
fn d_rho() -> f64 {
    7.0
}
fn d_cond() -> Condition {
    Condition::Q
}
fn d_batch() -> NonZeroUsize {
    const { nz(128) }
}
fn d_rows() -> usize {
    10
}
fn d_cols() -> usize {
    8
}

/// The `edm/sample` kind.
pub struct EdmSample;

impl Params {
    /// The sampler these params describe.
    fn sampler(&self) -> Sampler {
        Sampler {
            steps: self.steps.get(),
            sigma_min: self.sigma_min,
            sigma_max: self.sigma_max,
            rho: self.rho,
            guidance: self.guidance,
            batch_size: self.batch_size.get(),
        }
    }
}

impl Kind for EdmSample {
    const KIND: &'static str = "edm/sample";
    // 2: SongUNet's CPU forward through the custom ops (floats summed in another order); outputs
    // differ in the last bits.
    const VERSION: u32 = 3;
    const ABOUT: &'static str = "Sample with EDM's deterministic Heun sampler (ρ 7, σ 80 → 0.002), conditions from q(c) or uniform; images, grid per cluster";
    const INPUTS: &'static [Slot] = &[Slot::one("network", "a trained network (edm/train)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems = Vec::new();
        if !(p.sigma_min > 0.0 && p.sigma_max > p.sigma_min) {
            problems.push(ParamError::invalid(
                "sigma_min",
                "needs 0 < sigma_min < sigma_max",
            ));
        }
        // Sizes from params, against cedm's caps (the images are held in memory).
        problems.extend(cedm_engine::rules::at_most("count", p.count.get(), 1 << 24));
        problems.extend(cedm_engine::rules::at_most("steps", p.steps.get(), 1 << 16));
        problems.extend(cedm_engine::rules::at_most(
            "batch_size",
            p.batch_size.get(),
            1 << 16,
        ));
        problems.extend(cedm_engine::rules::product_at_most(
            &[("grid_rows", p.grid_rows), ("grid_cols", p.grid_cols)],
            1 << 16,
        ));
        if p.first_seed.checked_add(p.count.get() as u64).is_none() {
            problems.push(ParamError::invalid(
                "first_seed",
                "first_seed + count overflows a 64-bit seed",
            ));
        }
        problems
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a CIFAR-size SongUNet sampling a batch of 128); the measured peak replaces it on the next run.
        Resources::gpu_shared(4096)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 720)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let sampler = p.sampler();
        let count = p.count.get();
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let (net, cfg, info) =
            load_network(ctx.require("network")?.path("network.safetensors")?, &dev)?;
        let (c, h, w) = (cfg.in_channels, cfg.img_resolution, cfg.img_resolution);
        if let Some(k) = p.class
            && k >= info.dim
        {
            return Err(NodeError::msg(format!(
                "class {k} but the network has {} labels",
                info.dim
            )));
        }
        let weights: Vec<f64> = info.counts.iter().map(|&n| n as f64).collect();
        let items: Vec<(u64, Option<usize>)> = (0..count as u64)
            .map(|k| {
                let s = p.first_seed + k;
                let label = if info.dim == 0 {
                    None
                } else if let Some(cl) = p.class {
                    Some(cl)
                } else {
                    Some(seeded_condition(
                        s,
                        &weights,
                        p.condition == Condition::Uniform,
                    ))
                };
                (s, label)
            })
            .collect();
        ctx.log(format!(
            "{} samples, {} Heun steps on {}, label_dim {} ({:?}{})",
            count,
            p.steps,
            comp.describe(),
            info.dim,
            p.condition,
            if p.guidance != 0.0 {
                format!(", guidance {}", p.guidance)
            } else {
                String::new()
            }
        ));
        let t0 = std::time::Instant::now();
        let total = count;
        let pixels = {
            let ctx_ref = &mut *ctx;
            generate(
                &net,
                &dev,
                (c, h, w),
                info.dim,
                &items,
                &sampler,
                0,
                |done| {
                    // The reporter shows the rate and ETA.
                    ctx_ref.progress(done as u64, Some(total as u64), "img", None);
                    !ctx_ref.should_stop()
                },
            )?
        };
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("img_per_s", total as f64 / secs.max(1e-9));
        // Timings go to the record's meta only: outputs are the same bytes on every run.
        ctx.stat("seconds", secs);
        let set = ImageSet {
            n: total,
            c,
            h,
            w,
            pixels,
            labels: None,
        };
        set.write(ctx.out_dir(), Self::KIND)?;
        let conds: Vec<i64> = items
            .iter()
            .map(|(_, l)| l.map(|v| v as i64).unwrap_or(-1))
            .collect();
        write_i64(
            &ctx.out_dir().join("conditions.safetensors"),
            "conditions",
            &[total],
            &conds,
        )?;
        // The grid: one row per cluster (the first grid_rows), extra seeds per cell.
        if p.grid_rows > 0 && p.grid_cols > 0 {
            let rows = if info.dim == 0 {
                p.grid_rows
            } else {
                p.grid_rows.min(info.dim)
            };
            let grid_items: Vec<(u64, Option<usize>)> = (0..rows)
                .flat_map(|r| (0..p.grid_cols).map(move |j| (r, j)))
                .map(|(r, j)| {
                    (
                        1_000_000_000 + (r * 1000 + j) as u64,
                        if info.dim == 0 { None } else { Some(r) },
                    )
                })
                .collect();
            let gp = generate(
                &net,
                &dev,
                (c, h, w),
                info.dim,
                &grid_items,
                &sampler,
                0,
                |_| true,
            )?;
            let grid = ImageSet {
                n: grid_items.len(),
                c,
                h,
                w,
                pixels: gp,
                labels: None,
            };
            let layout: Vec<Vec<Option<usize>>> = (0..rows)
                .map(|r| {
                    (0..p.grid_cols)
                        .map(|j| Some(r * p.grid_cols + j))
                        .collect()
                })
                .collect();
            write_grid_rows(&ctx.out_dir().join("grid.png"), &grid, &layout, p.grid_cols)?;
        }
        let mut hist = vec![0usize; info.dim];
        for l in items.iter().filter_map(|(_, l)| *l) {
            hist[l] += 1;
        }
        write_json(
            &ctx.out_dir().join("info.json"),
            &serde_json::json!({"images": total, "shape": [c, h, w], "steps": p.steps, "label_dim": info.dim, "condition_counts": hist}),
        )?;
        Ok(())
    }
}

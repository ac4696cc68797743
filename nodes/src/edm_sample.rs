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

use burn::tensor::{Tensor, TensorData};
use cedm_engine::{Checked, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::device::compute;
use crate::edm::{denoise, heun_sample, to_uint8};
use crate::edm_train::load_network;
use crate::images::{ImageSet, write_grid_rows};
use crate::io::{DType, TensorOut, le_bytes, write_json, write_safetensors};
use crate::rng::Rng;

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
    pub count: usize,
    /// Seed of the first sample; sample k uses first_seed + k. Default: 0.
    #[serde(default)]
    pub first_seed: u64,
    /// Heun steps N (18 CIFAR, 40 FFHQ). Default: 18.
    #[serde(default = "d_steps")]
    pub steps: usize,
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
    pub batch_size: usize,
    /// Clusters shown in grid.png (one row each). Default: 10.
    #[serde(default = "d_rows")]
    pub grid_rows: usize,
    /// Samples per grid row. Default: 8.
    #[serde(default = "d_cols")]
    pub grid_cols: usize,
}

fn d_count() -> usize {
    50_000
}
fn d_steps() -> usize {
    18
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
fn d_batch() -> usize {
    128
}
fn d_rows() -> usize {
    10
}
fn d_cols() -> usize {
    8
}

/// The `edm/sample` kind.
pub struct EdmSample;

/// Generate samples with given seeds and labels (None = unconditional / zero label).
#[allow(clippy::too_many_arguments)]
pub fn generate(
    net: &crate::models::songunet::SongUNet,
    dev: &burn::tensor::Device,
    shape: (usize, usize, usize),
    label_dim: usize,
    items: &[(u64, Option<usize>)],
    p: &Params,
    seed_stream: u64,
    mut on_batch: impl FnMut(usize) -> bool,
) -> Result<Vec<u8>, NodeError> {
    let (c, h, w) = shape;
    let il = c * h * w;
    let mut out = Vec::with_capacity(items.len() * il);
    let mut done = 0;
    for chunk in items.chunks(p.batch_size.max(1)) {
        let b = chunk.len();
        let mut z = Vec::with_capacity(b * il);
        for &(s, _) in chunk {
            let mut r = Rng::stream(seed_stream, s);
            z.extend((0..il).map(|_| r.normal()));
        }
        let mut lab = vec![0f32; b * label_dim];
        for (i, &(_, l)) in chunk.iter().enumerate() {
            if let Some(l) = l {
                lab[i * label_dim + l] = 1.0;
            }
        }
        let labels = (label_dim > 0)
            .then(|| Tensor::<2>::from_data(TensorData::new(lab.clone(), [b, label_dim]), dev));
        let d = |x: &[f64], sigma: f64| -> Vec<f64> {
            let xt = Tensor::<4>::from_data(
                TensorData::new(
                    x.iter().map(|&v| v as f32).collect::<Vec<f32>>(),
                    [b, c, h, w],
                ),
                dev,
            );
            let sig = vec![sigma; b];
            let cond: Vec<f32> = denoise(net, xt.clone(), &sig, labels.clone(), None, false)
                .into_data()
                .try_into_vec()
                .unwrap_or_default();
            if p.guidance != 0.0 && label_dim > 0 {
                let zero = Tensor::<2>::zeros([b, label_dim], dev);
                let unc: Vec<f32> = denoise(net, xt, &sig, Some(zero), None, false)
                    .into_data()
                    .try_into_vec()
                    .unwrap_or_default();
                cond.iter()
                    .zip(&unc)
                    .map(|(a, u)| (1.0 + p.guidance) * f64::from(*a) - p.guidance * f64::from(*u))
                    .collect()
            } else {
                cond.into_iter().map(f64::from).collect()
            }
        };
        let x = heun_sample(&z, p.steps, p.sigma_min, p.sigma_max, p.rho, d, |_| {});
        out.extend(to_uint8(&x));
        done += b;
        if !on_batch(done) {
            return Err(NodeError::Interrupted);
        }
    }
    Ok(out)
}

impl Node for EdmSample {
    fn kind(&self) -> &'static str {
        "edm/sample"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Sample with EDM's deterministic Heun sampler (ρ 7, σ 80 → 0.002), conditions from q(c) or uniform; images, grid per cluster"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::one("network", "a trained network (edm/train)")];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        if p.steps == 0 {
            return Err(ParamError::invalid("steps", "must be at least 1"));
        }
        if !(p.sigma_min > 0.0 && p.sigma_max > p.sigma_min) {
            return Err(ParamError::invalid(
                "sigma_min",
                "needs 0 < sigma_min < sigma_max",
            ));
        }
        if p.count == 0 {
            return Err(ParamError::invalid("count", "must be at least 1"));
        }
        Ok(Checked {
            params,
            files: vec![],
            resources: Resources { gpus: 1 },
        })
    }
    fn batch_defaults(&self) -> cedm_engine::BatchDefaults {
        cedm_engine::BatchDefaults {
            cpus: 8,
            mem_gb: 32,
            minutes: 720,
        }
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: Params = ctx.params()?;
        let comp = compute(ctx.device())?;
        let dev = comp.device().clone();
        let (net, cfg, info) =
            load_network(ctx.require("network")?.path("network.safetensors")?, &dev)?;
        let (c, h, w) = (cfg.in_channels, cfg.img_resolution, cfg.img_resolution);
        if let Some(k) = p.class {
            if k >= info.dim {
                return Err(NodeError::msg(format!(
                    "class {k} but the network has {} labels",
                    info.dim
                )));
            }
        }
        let weights: Vec<f64> = info.counts.iter().map(|&n| n as f64).collect();
        let items: Vec<(u64, Option<usize>)> = (0..p.count as u64)
            .map(|k| {
                let s = p.first_seed + k;
                let label = if info.dim == 0 {
                    None
                } else if let Some(cl) = p.class {
                    Some(cl)
                } else {
                    // A per-seed stream of its own (latents use another), so a sample's
                    // condition does not depend on the batch it falls in.
                    let mut r = Rng::stream(0x5EED_0000, s);
                    Some(match p.condition {
                        Condition::Q => r.weighted(&weights),
                        Condition::Uniform => r.below(info.dim as u64) as usize,
                    })
                };
                (s, label)
            })
            .collect();
        ctx.log(format!(
            "{} samples, {} Heun steps on {}, label_dim {} ({:?}{})",
            p.count,
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
        let total = p.count;
        let pixels = {
            let ctx_ref = &mut *ctx;
            generate(&net, &dev, (c, h, w), info.dim, &items, &p, 0, |done| {
                let rate = done as f64 / t0.elapsed().as_secs_f64().max(1e-9);
                ctx_ref.progress(
                    done as u64,
                    Some(total as u64),
                    "img",
                    Some(format!("{rate:.1} img/s")),
                );
                !ctx_ref.should_stop()
            })?
        };
        let secs = t0.elapsed().as_secs_f64();
        ctx.stat("img_per_s", total as f64 / secs.max(1e-9));
        let set = ImageSet {
            n: total,
            c,
            h,
            w,
            pixels,
            labels: None,
        };
        set.write(ctx.out_dir(), "edm/sample")?;
        let conds: Vec<i64> = items
            .iter()
            .map(|(_, l)| l.map(|v| v as i64).unwrap_or(-1))
            .collect();
        let cb = le_bytes(&conds);
        write_safetensors(
            &ctx.out_dir().join("conditions.safetensors"),
            &[TensorOut {
                name: "conditions",
                dtype: DType::I64,
                shape: vec![total],
                data: &cb,
            }],
            &Default::default(),
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
            let gp = generate(&net, &dev, (c, h, w), info.dim, &grid_items, &p, 0, |_| {
                true
            })?;
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
            &serde_json::json!({"images": total, "shape": [c, h, w], "steps": p.steps, "label_dim": info.dim, "condition_counts": hist, "seconds": secs}),
        )?;
        Ok(())
    }
}

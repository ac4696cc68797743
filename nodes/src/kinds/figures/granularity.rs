//! `figures/granularity`: the seed's Fig. 3/4 — the same initial noise through C-EDMs trained
//! with different numbers of clusters C, the unconditional EDM in the first column.
//!
//! `networks` is gathered across a sweep (typically over C); columns are ordered by C and
//! labelled `C=…` (the requested C a network's label source recorded; its used clusters C_u
//! where that is all it knows). Row j is the seed `first_seed + j` in every column; each
//! conditional column draws its condition for that seed from its own q(c) (or uniformly), with
//! the per-seed stream `edm/sample` uses, so a cell equals `edm/sample`'s sample of that seed.
//!
//! Outputs: `figure.png`; `images.safetensors` (column-major: every seed of the first column,
//! then the next) with `conditions.safetensors`; `figure.json` — per column its C, C_u, label
//! source, the conditions drawn and the mean RMS pixel distance to the unconditional sample from
//! the same noise (how far conditioning moves an image, by granularity).

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, Resources, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::figure::{Row, labelled_grid, rms_distance};
use crate::artifacts::images::ImageSet;
use crate::artifacts::network::load_network;
use crate::artifacts::safetensors::write_i64;
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::models::edm::sampler::{Sampler, generate, seeded_condition};
use crate::params::nz;

/// Params of `figures/granularity`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Seeds, one row each. Default: 8.
    #[serde(default = "d_seeds")]
    pub seeds: NonZeroUsize,
    /// Seed of the first row; row j uses first_seed + j. Default: 0.
    #[serde(default)]
    pub first_seed: u64,
    /// Conditions uniformly over labels instead of from q(c) (C-EDM's rule). Default: false.
    #[serde(default)]
    pub uniform: bool,
    /// Heun steps (EDM's sampler, σ 0.002 → 80, ρ 7). Default: 18.
    #[serde(default = "d_steps")]
    pub steps: NonZeroUsize,
    /// Samples per network call. Default: 128.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
    /// Pixel scale of the images in figure.png. Default: 3.
    #[serde(default = "d_scale")]
    pub scale: NonZeroUsize,
}

fn d_seeds() -> NonZeroUsize {
    const { nz(8) }
}
fn d_steps() -> NonZeroUsize {
    const { nz(18) }
}
fn d_batch() -> NonZeroUsize {
    const { nz(128) }
}
fn d_scale() -> NonZeroUsize {
    const { nz(3) }
}

/// One column (model) of the figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    /// The column's label in figure.png.
    pub label: String,
    /// Requested clusters C (None: unconditional, or a source that did not record it).
    pub clusters: Option<usize>,
    /// Labels the network is conditioned on (C_u; 0 = unconditional).
    pub label_dim: usize,
    /// Where its labels came from.
    pub source: String,
    /// The condition of each row (None: unconditional).
    pub conditions: Vec<Option<usize>>,
    /// Mean RMS distance (pixels in 0..255) to the unconditional image from the same noise.
    pub rms_to_unconditional: Option<f64>,
}

/// `figure.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Granularity {
    /// The seed of each row.
    pub seeds: Vec<u64>,
    /// The columns, unconditional first, then by C.
    pub columns: Vec<Column>,
}

/// The `figures/granularity` kind.
pub struct FiguresGranularity;

impl Kind for FiguresGranularity {
    const KIND: &'static str = "figures/granularity";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Seed Fig. 3/4: the same noise through C-EDMs of every C (unconditional EDM first), conditions from q(c), labelled by C";
    const INPUTS: &'static [Slot] = &[
        Slot::optional("uncond", "the unconditional EDM (edm/train without labels)"),
        Slot::gather(
            "networks",
            "cluster-conditioned EDMs, gathered across the sweep over C",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_most("seeds", p.seeds.get(), 1 << 12));
        v.extend(rules::at_most("steps", p.steps.get(), 1 << 16));
        v.extend(rules::at_most("batch_size", p.batch_size.get(), 1 << 16));
        v.extend(rules::at_most("scale", p.scale.get(), 16));
        if p.first_seed.checked_add(p.seeds.get() as u64).is_none() {
            v.push(ParamError::invalid(
                "first_seed",
                "first_seed + seeds overflows a 64-bit seed",
            ));
        }
        v
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (SongUNets sampling a small grid); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let mut nets = Vec::new();
        if let Some(a) = ctx.input("uncond") {
            nets.push(load_network(a.path("network.safetensors")?, &dev)?);
        }
        for a in ctx.inputs_many("networks") {
            nets.push(load_network(a.path("network.safetensors")?, &dev)?);
        }
        if ctx.input("uncond").is_some() && nets[0].2.dim != 0 {
            return Err(NodeError::msg(format!(
                "input `uncond` is conditioned on {} labels; connect an EDM trained without labels",
                nets[0].2.dim
            )));
        }
        let shape = (
            nets[0].1.in_channels,
            nets[0].1.img_resolution,
            nets[0].1.img_resolution,
        );
        if let Some((_, c, _)) = nets
            .iter()
            .find(|(_, c, _)| (c.in_channels, c.img_resolution) != (shape.0, shape.1))
        {
            return Err(NodeError::msg(format!(
                "the networks generate different images ({}×{}² and {}×{}²)",
                shape.0, shape.1, c.in_channels, c.img_resolution
            )));
        }
        // Unconditional first, then by C (C_u where C is unknown), ties in sweep order.
        let order_key = |i: &crate::artifacts::labels::LabelInfo| {
            (i.dim != 0, i.clusters.unwrap_or(i.dim), i.dim)
        };
        nets.sort_by_key(|(_, _, i)| order_key(i));
        let seeds: Vec<u64> = (0..p.seeds.get() as u64)
            .map(|j| p.first_seed + j)
            .collect();
        let sampler = Sampler::edm(p.steps.get(), p.batch_size.get());
        let total = (nets.len() * seeds.len()) as u64;
        ctx.log(format!(
            "{} models × {} seeds on {}",
            nets.len(),
            seeds.len(),
            comp.describe()
        ));
        let mut pixels = Vec::new();
        let mut columns = Vec::new();
        for (m, (net, _, info)) in nets.iter().enumerate() {
            let weights: Vec<f64> = info.counts.iter().map(|&n| n as f64).collect();
            let items: Vec<(u64, Option<usize>)> = seeds
                .iter()
                .map(|&s| {
                    let c = (info.dim > 0).then(|| seeded_condition(s, &weights, p.uniform));
                    (s, c)
                })
                .collect();
            let done = (m * seeds.len()) as u64;
            let px = {
                let ctx_ref = &mut *ctx;
                generate(net, &dev, shape, info.dim, &items, &sampler, 0, |d| {
                    ctx_ref.progress(done + d as u64, Some(total), "img", None);
                    !ctx_ref.should_stop()
                })?
            };
            pixels.extend_from_slice(&px);
            let label = match (info.dim, info.clusters) {
                (0, _) => "uncond".to_string(),
                (_, Some(c)) => format!("C={c}"),
                (d, None) => format!("{d} labels"),
            };
            columns.push(Column {
                label,
                clusters: info.clusters,
                label_dim: info.dim,
                source: info.source.clone(),
                conditions: items.iter().map(|(_, c)| *c).collect(),
                rms_to_unconditional: None,
            });
        }
        let set = ImageSet {
            n: nets.len() * seeds.len(),
            c: shape.0,
            h: shape.1,
            w: shape.2,
            pixels,
            labels: None,
        };
        let at = |m: usize, j: usize| m * seeds.len() + j;
        if columns.first().is_some_and(|c| c.label_dim == 0) {
            for (m, col) in columns.iter_mut().enumerate().skip(1) {
                let d: f64 = (0..seeds.len())
                    .map(|j| rms_distance(set.image(at(m, j)), set.image(at(0, j))))
                    .sum();
                col.rms_to_unconditional = Some(d / seeds.len() as f64);
            }
        }
        let rows: Vec<Row> = seeds
            .iter()
            .enumerate()
            .map(|(j, s)| Row {
                label: format!("s{s}"),
                cells: (0..columns.len()).map(|m| Some(at(m, j))).collect(),
                space_above: false,
                notes: vec![],
            })
            .collect();
        let heads: Vec<String> = columns.iter().map(|c| c.label.clone()).collect();
        labelled_grid(
            &ctx.out_dir().join("figure.png"),
            &set,
            &rows,
            &heads,
            p.scale.get(),
        )?;
        set.write(ctx.out_dir(), Self::KIND)?;
        let conds: Vec<i64> = columns
            .iter()
            .flat_map(|c| c.conditions.iter().map(|l| l.map_or(-1, |v| v as i64)))
            .collect();
        write_i64(
            &ctx.out_dir().join("conditions.safetensors"),
            "conditions",
            &[conds.len()],
            &conds,
        )?;
        write_json(
            &ctx.out_dir().join("figure.json"),
            &Granularity { seeds, columns },
        )
    }
}

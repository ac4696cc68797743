//! `figures/same_noise`: the seed's Fig. 2 — a cluster-conditioned EDM and the ground-truth
//! conditional EDM sampled from the **same** initial noise, cluster k drawn as its mapped class.
//!
//! Columns are the first `classes` classes; class k's C-EDM cell is conditioned on the cluster
//! that `cluster/mapping` (Hungarian, one to one, on the training set) assigns to class k, its
//! GT-EDM cell on class k itself. Rows come in pairs, one per seed: the C-EDM row, then the
//! GT-EDM row. A row uses one seed for every column, so along a row only the condition changes
//! and between the two rows of a pair only the label source does. A class without a cluster
//! (C below the number of classes) is an empty cell.
//!
//! Outputs: `figure.png`; `images.safetensors` (every cell: the C-EDM cells row-major, then the
//! GT-EDM cells, empty cells left out) with `conditions.safetensors`; `figure.json` — the classes,
//! their clusters and those clusters' agreement with their class, the seeds, and the mean RMS
//! pixel distance between the two models' images from the same noise (`paired_rms`) against the
//! same class from different noise (`unpaired_rms`): how much of an image the noise decides.

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, Resources, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::figure::{Row, labelled_grid, rms_distance};
use crate::artifacts::images::ImageSet;
use crate::artifacts::mapping::Mapping;
use crate::artifacts::network::load_network;
use crate::artifacts::safetensors::write_i64;
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::models::edm::sampler::{Sampler, generate};
use crate::params::nz;

/// Params of `figures/same_noise`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Classes shown, the first ones (seed Fig. 2: 20). Default: 20.
    #[serde(default = "d_classes")]
    pub classes: NonZeroUsize,
    /// Seeds, one pair of rows (C-EDM, GT-EDM) each. Default: 4.
    #[serde(default = "d_seeds")]
    pub seeds: NonZeroUsize,
    /// Seed of the first row pair; pair j uses first_seed + j. Default: 0.
    #[serde(default)]
    pub first_seed: u64,
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

fn d_classes() -> NonZeroUsize {
    const { nz(20) }
}
fn d_seeds() -> NonZeroUsize {
    const { nz(4) }
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

/// One column of the figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    /// The class (the GT-EDM's condition).
    pub class: usize,
    /// Its cluster (the C-EDM's condition), if it has one.
    pub cluster: Option<usize>,
    /// Fraction of that cluster's training items in this class.
    pub agreement: Option<f64>,
}

/// `figure.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SameNoise {
    /// The columns.
    pub columns: Vec<Column>,
    /// The seed of each row pair.
    pub seeds: Vec<u64>,
    /// The mapping's agreement over all training items (ACC under the one-to-one map).
    pub mapping_agreement: f64,
    /// Mean RMS distance (pixels in 0..255) between the two models' images from the same noise.
    pub paired_rms: Option<f64>,
    /// The same between images of the same class from different noise.
    pub unpaired_rms: Option<f64>,
}

/// The `figures/same_noise` kind.
pub struct FiguresSameNoise;

impl Kind for FiguresSameNoise {
    const KIND: &'static str = "figures/same_noise";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Seed Fig. 2: C-EDM and GT-conditional EDM from the same noise, cluster k drawn as its Hungarian-mapped class";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "network",
            "the cluster-conditioned EDM (edm/train on cluster labels)",
        ),
        Slot::one(
            "reference",
            "the ground-truth-conditional EDM (edm/train on class labels)",
        ),
        Slot::one(
            "mapping",
            "clusters → classes of the network's clustering (cluster/mapping)",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::product_at_most(
            &[("classes", p.classes.get()), ("seeds", p.seeds.get())],
            1 << 14,
        ));
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
        // An estimate (two SongUNets sampling a small grid); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let (net, cfg, info) =
            load_network(ctx.require("network")?.path("network.safetensors")?, &dev)?;
        let (gt, gcfg, ginfo) =
            load_network(ctx.require("reference")?.path("network.safetensors")?, &dev)?;
        let map = Mapping::read(ctx.require("mapping")?)?;
        if info.dim != map.clusters {
            return Err(NodeError::msg(format!(
                "the network is conditioned on {} labels but the mapping has {} clusters: connect the mapping of the clustering it was trained on",
                info.dim, map.clusters
            )));
        }
        if ginfo.dim != map.classes {
            return Err(NodeError::msg(format!(
                "the reference network is conditioned on {} labels but the mapping has {} classes: connect the ground-truth-conditional EDM of the same data",
                ginfo.dim, map.classes
            )));
        }
        let shape = (cfg.in_channels, cfg.img_resolution, cfg.img_resolution);
        if (gcfg.in_channels, gcfg.img_resolution) != (shape.0, shape.1) {
            return Err(NodeError::msg(format!(
                "the networks generate different images ({}×{}² and {}×{}²)",
                shape.0, shape.1, gcfg.in_channels, gcfg.img_resolution
            )));
        }
        let ncls = p.classes.get().min(map.classes);
        let seeds: Vec<u64> = (0..p.seeds.get() as u64)
            .map(|j| p.first_seed + j)
            .collect();
        let columns: Vec<Column> = (0..ncls)
            .map(|k| {
                let cluster = map.class_to_cluster[k];
                Column {
                    class: k,
                    cluster,
                    agreement: cluster.and_then(|c| map.per_cluster.get(c).map(|r| r.agreement)),
                }
            })
            .collect();
        // (row, column) → index into each model's sample list.
        let mut c_items = Vec::new();
        let mut c_at = vec![vec![None; ncls]; seeds.len()];
        let mut g_items = Vec::new();
        for (j, &s) in seeds.iter().enumerate() {
            for (k, col) in columns.iter().enumerate() {
                if let Some(c) = col.cluster {
                    c_at[j][k] = Some(c_items.len());
                    c_items.push((s, Some(c)));
                }
                g_items.push((s, Some(k)));
            }
        }
        let sampler = Sampler::edm(p.steps.get(), p.batch_size.get());
        let total = (c_items.len() + g_items.len()) as u64;
        ctx.log(format!(
            "{} classes × {} seeds, {} samples on {}",
            ncls,
            seeds.len(),
            total,
            comp.describe()
        ));
        let c_px = {
            let ctx_ref = &mut *ctx;
            generate(&net, &dev, shape, info.dim, &c_items, &sampler, 0, |d| {
                ctx_ref.progress(d as u64, Some(total), "img", None);
                !ctx_ref.should_stop()
            })?
        };
        let done = c_items.len() as u64;
        let g_px = {
            let ctx_ref = &mut *ctx;
            generate(&gt, &dev, shape, ginfo.dim, &g_items, &sampler, 0, |d| {
                ctx_ref.progress(done + d as u64, Some(total), "img", None);
                !ctx_ref.should_stop()
            })?
        };
        let mut pixels = c_px;
        pixels.extend_from_slice(&g_px);
        let set = ImageSet {
            n: c_items.len() + g_items.len(),
            c: shape.0,
            h: shape.1,
            w: shape.2,
            pixels,
            labels: None,
        };
        let g_index = |j: usize, k: usize| c_items.len() + j * ncls + k;
        // Same noise, same class: C-EDM against GT-EDM; different noise: C-EDM row j against
        // GT-EDM row j' ≠ j.
        let (mut paired, mut unpaired) = (Vec::new(), Vec::new());
        for (j, row) in c_at.iter().enumerate() {
            for (k, cell) in row.iter().enumerate() {
                let Some(ci) = *cell else { continue };
                paired.push(rms_distance(set.image(ci), set.image(g_index(j, k))));
                for j2 in (0..seeds.len()).filter(|&j2| j2 != j) {
                    unpaired.push(rms_distance(set.image(ci), set.image(g_index(j2, k))));
                }
            }
        }
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let mut rows = Vec::new();
        for (j, &s) in seeds.iter().enumerate() {
            rows.push(Row {
                label: format!("c-edm s{s}"),
                cells: c_at[j].clone(),
                space_above: j > 0,
                notes: vec![],
            });
            rows.push(Row {
                label: format!("gt s{s}"),
                cells: (0..ncls).map(|k| Some(g_index(j, k))).collect(),
                space_above: false,
                notes: vec![],
            });
        }
        let heads: Vec<String> = columns.iter().map(|c| c.class.to_string()).collect();
        labelled_grid(
            &ctx.out_dir().join("figure.png"),
            &set,
            &rows,
            &heads,
            p.scale.get(),
        )?;
        set.write(ctx.out_dir(), Self::KIND)?;
        let conds: Vec<i64> = c_items
            .iter()
            .chain(&g_items)
            .map(|(_, l)| l.map_or(-1, |v| v as i64))
            .collect();
        write_i64(
            &ctx.out_dir().join("conditions.safetensors"),
            "conditions",
            &[conds.len()],
            &conds,
        )?;
        let fig = SameNoise {
            columns,
            seeds,
            mapping_agreement: map.agreement,
            paired_rms: mean(&paired),
            unpaired_rms: mean(&unpaired),
        };
        if let (Some(a), Some(b)) = (fig.paired_rms, fig.unpaired_rms) {
            ctx.log(format!(
                "RMS distance C-EDM ↔ GT-EDM: {a:.1} from the same noise, {b:.1} from different noise"
            ));
        }
        write_json(&ctx.out_dir().join("figure.json"), &fig)
    }
}

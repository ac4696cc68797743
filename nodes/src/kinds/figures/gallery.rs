//! `figures/gallery`: the seed's Fig. 5 — training images grouped by cluster, the members of each
//! row sampled **at random** (seeded), not the first ones.
//!
//! Rows are `clusters` clusters: chosen at random among the used ones (`pick: random`, the
//! default) or the largest (`pick: largest`). Row k's members are a seeded sample without
//! replacement of that cluster's images, drawn from a stream of its own, so a cluster's row does
//! not change when more rows are asked for. Where the images carry ground-truth labels, each row
//! is labelled with its majority class and that class's share.
//!
//! Outputs: `figure.png`; `figure.json` — per row the cluster, its size, the member indices
//! shown and, with labels, the majority class and its share among all the cluster's items.

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use cedm_kernels::rng::Rng;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::clusters::ClusterLabels;
use crate::artifacts::figure::{Row, labelled_grid};
use crate::artifacts::images::ImageSet;
use crate::artifacts::write_json;
use crate::params::nz;

/// Which clusters get a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Pick {
    /// A seeded random choice among the used clusters.
    Random,
    /// The largest clusters.
    Largest,
}

/// Params of `figures/gallery`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Clusters shown, one row each. Default: 10.
    #[serde(default = "d_clusters")]
    pub clusters: NonZeroUsize,
    /// Images per row. Default: 12.
    #[serde(default = "d_per")]
    pub per_cluster: NonZeroUsize,
    /// How rows are chosen: `random` or `largest`. Default: `random`.
    #[serde(default = "d_pick")]
    pub pick: Pick,
    /// Seed of the random choices. Default: 0.
    #[serde(default)]
    pub seed: u64,
    /// Pixel scale of the images in figure.png. Default: 2.
    #[serde(default = "d_scale")]
    pub scale: NonZeroUsize,
}

fn d_clusters() -> NonZeroUsize {
    const { nz(10) }
}
fn d_per() -> NonZeroUsize {
    const { nz(12) }
}
fn d_pick() -> Pick {
    Pick::Random
}
fn d_scale() -> NonZeroUsize {
    const { nz(2) }
}

/// One row of the gallery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct GalleryRow {
    /// The cluster (remapped id, the EDM's label).
    pub cluster: usize,
    /// Its items.
    pub size: usize,
    /// Indices of the images shown.
    pub members: Vec<usize>,
    /// Its most frequent ground-truth class, with labels.
    pub majority_class: Option<i64>,
    /// That class's share of the cluster's items.
    pub majority_share: Option<f64>,
}

/// `figure.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Gallery {
    /// How rows were chosen.
    pub pick: Pick,
    /// The rows.
    pub rows: Vec<GalleryRow>,
}

/// The `figures/gallery` kind.
pub struct FiguresGallery;

impl Kind for FiguresGallery {
    const KIND: &'static str = "figures/gallery";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Seed Fig. 5: training images by cluster, clusters and members sampled at random (seeded), majority class per row";
    const INPUTS: &'static [Slot] = &[
        Slot::one("clusters", "cluster labels (cluster/temi, cluster/kmeans)"),
        Slot::one("images", "the clustered images, one per item (data/*)"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::product_at_most(
            &[
                ("clusters", p.clusters.get()),
                ("per_cluster", p.per_cluster.get()),
            ],
            1 << 14,
        ));
        v.extend(rules::at_most("scale", p.scale.get(), 16));
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let cl = ClusterLabels::read(ctx.require("clusters")?)?;
        let set = ImageSet::read(ctx.require("images")?)?;
        if set.n != cl.labels.len() {
            return Err(NodeError::msg(format!(
                "{} cluster labels for {} images: connect the images the clustering's features came from",
                cl.labels.len(),
                set.n
            )));
        }
        let k = cl.counts.len();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &l) in cl.labels.iter().enumerate() {
            let l = usize::try_from(l)
                .ok()
                .filter(|&l| l < k)
                .ok_or_else(|| NodeError::msg(format!("cluster label {l} outside 0..{k}")))?;
            members[l].push(i);
        }
        let used: Vec<usize> = (0..k).filter(|&c| !members[c].is_empty()).collect();
        let chosen: Vec<usize> = match p.pick {
            Pick::Random => {
                let mut r = Rng::stream(p.seed, 0xF165);
                r.choose(used.len(), p.clusters.get())
                    .into_iter()
                    .map(|i| used[i])
                    .collect()
            }
            Pick::Largest => {
                let mut by = used.clone();
                by.sort_by_key(|&c| (std::cmp::Reverse(members[c].len()), c));
                by.truncate(p.clusters.get());
                by
            }
        };
        let mut rows = Vec::new();
        let mut fig_rows = Vec::new();
        for &c in &chosen {
            let mut r = Rng::stream(p.seed, c as u64);
            let shown: Vec<usize> = r
                .choose(members[c].len(), p.per_cluster.get())
                .into_iter()
                .map(|i| members[c][i])
                .collect();
            let majority = set.labels.as_ref().map(|l| {
                let mut h = std::collections::BTreeMap::<i64, usize>::new();
                for &i in &members[c] {
                    *h.entry(l[i]).or_default() += 1;
                }
                let (cls, n) = h
                    .iter()
                    .max_by_key(|&(cls, n)| (*n, std::cmp::Reverse(*cls)))
                    .map(|(a, b)| (*a, *b))
                    .unwrap_or((0, 0));
                (cls, n as f64 / members[c].len() as f64)
            });
            let label = match majority {
                Some((cls, share)) => {
                    format!("c{c} n{} {:.0}% cls {cls}", members[c].len(), share * 100.0)
                }
                None => format!("c{c} n{}", members[c].len()),
            };
            fig_rows.push(Row {
                label,
                cells: shown.iter().map(|&i| Some(i)).collect(),
                space_above: false,
                notes: vec![],
            });
            rows.push(GalleryRow {
                cluster: c,
                size: members[c].len(),
                members: shown,
                majority_class: majority.map(|m| m.0),
                majority_share: majority.map(|m| m.1),
            });
        }
        ctx.log(format!(
            "{} of {} used clusters, up to {} random members each",
            chosen.len(),
            used.len(),
            p.per_cluster
        ));
        labelled_grid(
            &ctx.out_dir().join("figure.png"),
            &set,
            &fig_rows,
            &[],
            p.scale.get(),
        )?;
        write_json(
            &ctx.out_dir().join("figure.json"),
            &Gallery { pick: p.pick, rows },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_without_replacement_is_distinct_and_seeded() {
        let mut a = Rng::stream(3, 1);
        let v = a.choose(50, 12);
        let mut s = v.clone();
        s.sort_unstable();
        s.dedup();
        assert_eq!(s.len(), 12);
        assert!(v.iter().all(|&i| i < 50));
        assert_eq!(v, Rng::stream(3, 1).choose(50, 12));
        assert_ne!(v, Rng::stream(4, 1).choose(50, 12));
        // Not the first members.
        assert_ne!(v, (0..12).collect::<Vec<_>>());
        assert_eq!(a.choose(3, 12).len(), 3);
    }
}

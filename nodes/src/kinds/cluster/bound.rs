//! `cluster/bound`: the seed paper's Table 1 protocol for choosing C without labels.
//!
//! Inputs are gathered across the sweep: `gamma1` — TEMI runs with γ = 1 over a list of C (and
//! seeds), whose used-cluster counts C_u stay roughly constant however large C is (the
//! "utilised clusters" of the data); `curve` — optionally, the γ = 0.6 runs, whose fill ratio
//! C_u/C and imbalance KL(U‖p) against C form the utilisation curve. The node reports C_u per C
//! (mean, std over seeds), the curve, and a recommended search range for C.
//!
//! The exact rule the paper used for its upper bound is not in the public code (see
//! `research/paper_anchors.md` §g), so it is a parameter:
//! - `kl_crossing` (default): lower = the mean γ = 1 C_u; upper = the C at which the γ = 0.6
//!   runs' KL(U‖p) first reaches the γ = 1 runs' mean KL (linear interpolation between the swept
//!   C). This reading matches the shipped cluster files: γ = 0.6 imbalance reaches the γ = 1 level
//!   at C ≈ 350–400 (CIFAR-10), 400–500 (CIFAR-100), 250–300 (FFHQ), above the best C the paper
//!   reports for each.
//! - `fill_ratio`: upper = the largest swept C whose γ = 0.6 fill ratio C_u/C is still at least
//!   `min_fill` (C-EDM's data: 0.98–0.99 up to C ≈ 400 for CIFAR-10).
//! - `gamma1`: the range is [min, max] of the γ = 1 C_u (the most conservative reading).

use std::collections::BTreeMap;

use cedm_engine::{Artifact, Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::clusters::ClusterStats;
use crate::artifacts::metrics::BoundMetrics;
use crate::artifacts::write_json;

/// How the upper end of the search range is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Where γ = 0.6's KL(U‖p) reaches the γ = 1 level.
    KlCrossing,
    /// Largest C with γ = 0.6 fill ratio ≥ `min_fill`.
    FillRatio,
    /// [min, max] of the γ = 1 used clusters.
    Gamma1,
}

/// Params of `cluster/bound`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The rule for the upper bound: `kl_crossing`, `fill_ratio` or `gamma1`. Default: `kl_crossing`.
    #[serde(default = "kl")]
    pub rule: Rule,
    /// Fill ratio threshold of the `fill_ratio` rule. Default: 0.95.
    #[serde(default = "fill")]
    pub min_fill: f64,
}

fn kl() -> Rule {
    Rule::KlCrossing
}
fn fill() -> f64 {
    0.95
}

/// One clustering run as the bound sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Run {
    /// Requested C.
    pub clusters: usize,
    /// γ it was trained with.
    pub gamma: f64,
    /// Seed.
    pub seed: u64,
    /// Used clusters.
    pub used: usize,
    /// KL(U‖p).
    pub kl: f64,
}

fn read_run(a: &Artifact) -> Result<Run, NodeError> {
    let m = ClusterStats::read(a).map_err(|e| {
        NodeError::msg(format!(
            "input {} ({}): {e}: is it a cluster node?",
            a.slot, a.record.kind
        ))
    })?;
    Ok(Run {
        clusters: m.clusters,
        gamma: a
            .record
            .params
            .get("gamma")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(f64::NAN),
        seed: a
            .record
            .params
            .get("seed")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0),
        used: m.used_clusters,
        kl: m.kl_uniform,
    })
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Per C: (C, mean C_u, std C_u, mean KL, runs).
pub fn by_c(runs: &[Run]) -> Vec<(usize, f64, f64, f64, usize)> {
    let mut groups: BTreeMap<usize, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        groups.entry(r.clusters).or_default().push(r);
    }
    groups
        .into_iter()
        .map(|(c, rs)| {
            let (m, s) = mean_std(&rs.iter().map(|r| r.used as f64).collect::<Vec<_>>());
            let kl = rs.iter().map(|r| r.kl).sum::<f64>() / rs.len() as f64;
            (c, m, s, kl, rs.len())
        })
        .collect()
}

/// The recommended range and whether the rule found its crossing inside the swept Cs.
pub fn recommend(
    rule: Rule,
    min_fill: f64,
    g1: &[Run],
    curve: &[Run],
) -> Result<(f64, f64, bool), String> {
    if g1.is_empty() {
        return Err("no γ = 1 runs".into());
    }
    let used: Vec<f64> = g1.iter().map(|r| r.used as f64).collect();
    let (lower, _) = mean_std(&used);
    match rule {
        Rule::Gamma1 => Ok((
            used.iter().cloned().fold(f64::INFINITY, f64::min),
            used.iter().cloned().fold(0.0, f64::max),
            true,
        )),
        Rule::KlCrossing => {
            let level = g1.iter().map(|r| r.kl).sum::<f64>() / g1.len() as f64;
            let pts = by_c(curve);
            if pts.is_empty() {
                return Err("rule kl_crossing needs the γ = 0.6 runs on input `curve`".into());
            }
            for w in pts.windows(2) {
                let (c0, _, _, k0, _) = w[0];
                let (c1, _, _, k1, _) = w[1];
                if k0 < level && k1 >= level {
                    let t = (level - k0) / (k1 - k0);
                    return Ok((lower, c0 as f64 + t * (c1 as f64 - c0 as f64), true));
                }
            }
            if pts[0].3 >= level {
                return Ok((lower, pts[0].0 as f64, true));
            }
            Ok((
                lower,
                pts.last().map(|p| p.0 as f64).unwrap_or(lower),
                false,
            ))
        }
        Rule::FillRatio => {
            let pts = by_c(curve);
            if pts.is_empty() {
                return Err("rule fill_ratio needs the γ = 0.6 runs on input `curve`".into());
            }
            let ok: Vec<usize> = pts
                .iter()
                .filter(|p| p.1 / p.0 as f64 >= min_fill)
                .map(|p| p.0)
                .collect();
            match ok.last() {
                Some(&c) => Ok((lower, c as f64, c != pts.last().map(|p| p.0).unwrap_or(c))),
                None => Ok((lower, lower, true)),
            }
        }
    }
}

/// The `cluster/bound` kind.
pub struct ClusterBound;

impl Kind for ClusterBound {
    const KIND: &'static str = "cluster/bound";
    // 2: metrics.json has the std of the γ = 1 C_u across C and seeds (seed Table 1's ±).
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Cluster-count bound (seed Table 1): γ = 1 used clusters per C, the γ = 0.6 utilisation curve, a recommended range for C";
    const INPUTS: &'static [Slot] = &[
        Slot::gather(
            "gamma1",
            "TEMI runs with γ = 1 (gathered over the sweep of C and seeds)",
        ),
        Slot::gather_optional("curve", "TEMI runs with γ = 0.6 (gathered over C)"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        rules::within("min_fill", p.min_fill, 0.0, 1.0)
            .into_iter()
            .collect()
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let g1: Vec<Run> = ctx
            .inputs_many("gamma1")
            .into_iter()
            .map(read_run)
            .collect::<Result<_, _>>()?;
        let curve: Vec<Run> = ctx
            .inputs_many("curve")
            .into_iter()
            .map(read_run)
            .collect::<Result<_, _>>()?;
        for r in &g1 {
            if (r.gamma - 1.0).abs() > 1e-9 {
                ctx.log(format!(
                    "warning: a `gamma1` run has γ = {} (C = {})",
                    r.gamma, r.clusters
                ));
            }
        }
        let (lower, upper, inside) =
            recommend(p.rule, p.min_fill, &g1, &curve).map_err(NodeError::msg)?;
        let table = |rs: &[Run]| -> Vec<serde_json::Value> {
            by_c(rs)
                .into_iter()
                .map(|(c, m, s, kl, n)| serde_json::json!({"clusters": c, "used_mean": m, "used_std": s, "fill_ratio": m / c as f64, "kl_uniform": kl, "runs": n}))
                .collect()
        };
        let used = mean_std(&g1.iter().map(|r| r.used as f64).collect::<Vec<_>>());
        ctx.log(format!(
            "γ = 1: C_u = {:.1} ± {:.1} over {} runs (seed Table 1)",
            used.0,
            used.1,
            g1.len()
        ));
        ctx.log(format!(
            "recommended C in [{lower:.0}, {upper:.0}] by {:?}{}",
            p.rule,
            if inside {
                ""
            } else {
                " (not reached inside the swept C: extend the sweep)"
            }
        ));
        write_json(
            &ctx.out_dir().join("bound.json"),
            &serde_json::json!({"rule": p.rule, "gamma1": table(&g1), "curve": table(&curve), "runs": {"gamma1": g1, "curve": curve}}),
        )?;
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &BoundMetrics {
                lower: lower.round(),
                upper: upper.round(),
                reached: inside,
                gamma1_used_mean: used.0,
                gamma1_used_std: used.1,
                gamma1_runs: g1.len(),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: usize, gamma: f64, seed: u64, used: usize, kl: f64) -> Run {
        Run {
            clusters: c,
            gamma,
            seed,
            used,
            kl,
        }
    }

    #[test]
    fn kl_crossing_interpolates_between_swept_c() {
        let g1 = vec![
            run(100, 1.0, 0, 33, 0.5),
            run(100, 1.0, 1, 35, 0.5),
            run(400, 1.0, 0, 34, 0.5),
        ];
        let curve = vec![
            run(100, 0.6, 0, 100, 0.1),
            run(200, 0.6, 0, 199, 0.3),
            run(400, 0.6, 0, 391, 0.7),
        ];
        let (lo, hi, inside) = recommend(Rule::KlCrossing, 0.95, &g1, &curve).unwrap();
        assert!((lo - 34.0).abs() < 1e-9);
        assert!((hi - 300.0).abs() < 1e-9, "{hi}");
        assert!(inside);
        let (_, hi2, _) = recommend(Rule::FillRatio, 0.99, &g1, &curve).unwrap();
        assert_eq!(hi2, 200.0);
        let (a, b, _) = recommend(Rule::Gamma1, 0.95, &g1, &[]).unwrap();
        assert_eq!((a, b), (33.0, 35.0));
    }
}

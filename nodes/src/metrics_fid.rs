//! `metrics/fid`: Fréchet Inception Distance of generated samples against reference
//! statistics, with EDM's protocol: `repeats` disjoint runs of `num` consecutive samples (the
//! paper: 3 × 50k, seeds 0–49 999, 50 000–99 999, 100 000–149 999), one FID each, reported as
//! mean, min (what EDM reports), std and the list.

use std::path::Path;

use cedm_engine::{
    Checked, FileParam, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::features::extract;
use crate::fid::{FidResize, Stats, frechet_distance, inception_embedder};
use crate::images::ImageSet;
use crate::io::write_json;
use crate::metrics_fid_ref::{b32, tf_bilinear};
use crate::models::inception::DIM;

/// Params of `metrics/fid`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The FID Inception (`inception-2015-12-05.safetensors`). Required.
    pub weights: String,
    /// Reference statistics from a file (`.npz` with `mu`/`sigma`, e.g. EDM's
    /// `cifar10-32x32.npz`, or a `stats.safetensors`) instead of a `ref` input.
    #[serde(default)]
    pub ref_stats: Option<String>,
    /// Samples per FID. Default: all samples divided by `repeats`.
    #[serde(default)]
    pub num: Option<usize>,
    /// Number of disjoint runs. Default: 1 (the paper: 3).
    #[serde(default = "one")]
    pub repeats: usize,
    /// Resize to 299 (must match the reference's). Default: `tf_bilinear`.
    #[serde(default = "tf_bilinear")]
    pub resize: FidResize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: usize,
}

fn one() -> usize {
    1
}

/// The run protocol's checks and the file params shared by `metrics/fid` and `metrics/fdd`:
/// `repeats` ≥ 1, `num` ≥ 2, the network weights and the optional reference file.
///
/// # Errors
/// A bad `repeats` or `num`.
pub fn check_protocol(
    weights: &str,
    ref_stats: Option<&str>,
    num: Option<usize>,
    repeats: usize,
) -> Result<Vec<FileParam>, ParamError> {
    if repeats == 0 {
        return Err(ParamError::invalid("repeats", "must be at least 1"));
    }
    if num.is_some_and(|n| n < 2) {
        return Err(ParamError::invalid("num", "must be at least 2"));
    }
    let mut files = vec![FileParam {
        param: "weights".into(),
        path: weights.into(),
    }];
    if let Some(r) = ref_stats {
        files.push(FileParam {
            param: "ref_stats".into(),
            path: r.into(),
        });
    }
    Ok(files)
}

/// The reference statistics: the `ref` input (written by `ref_kind`) or the `ref_stats` file,
/// exactly one of them.
///
/// # Errors
/// Both or neither given; an unreadable file.
pub fn reference_stats(
    ctx: &RunContext<'_>,
    ref_stats: Option<&str>,
    ref_kind: &str,
) -> Result<Stats, NodeError> {
    match (ctx.input("ref"), ref_stats) {
        (Some(a), None) => Stats::read(a.path("stats.safetensors")?),
        (None, Some(f)) => Stats::read(Path::new(f)),
        (Some(_), Some(_)) => Err(NodeError::msg(
            "give the reference either as the `ref` input or as `ref_stats`, not both",
        )),
        (None, None) => Err(NodeError::msg(format!(
            "no reference: add a `ref` input (a {ref_kind} node) or the `ref_stats` param"
        ))),
    }
}

/// Split `n` samples into `repeats` runs of `num`; errors name what is missing.
///
/// # Errors
/// Too few samples.
pub fn runs(
    n: usize,
    num: Option<usize>,
    repeats: usize,
) -> Result<Vec<std::ops::Range<usize>>, String> {
    let num = num.unwrap_or(n / repeats.max(1));
    if num < 2 {
        return Err(format!(
            "{n} samples cannot make {repeats} runs of at least 2"
        ));
    }
    if num * repeats > n {
        return Err(format!(
            "{repeats} runs of {num} samples need {} samples, the input has {n}",
            num * repeats
        ));
    }
    Ok((0..repeats).map(|r| r * num..(r + 1) * num).collect())
}

/// Summary of several FIDs: mean, min, std (ddof 1; 0 for one run).
pub fn summarize(name: &str, values: &[f64], num: usize) -> serde_json::Value {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let min = values.iter().cloned().fold(f64::INFINITY, f64::min);
    let std = if values.len() > 1 {
        (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        0.0
    };
    serde_json::json!({
        name: mean,
        format!("{name}_min"): min,
        format!("{name}_std"): std,
        format!("{name}_runs"): values,
        "samples_per_run": num,
    })
}

/// The `metrics/fid` kind.
pub struct Fid;

impl Node for Fid {
    fn kind(&self) -> &'static str {
        "metrics/fid"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "FID of samples against reference statistics (EDM's protocol: repeats × num, mean and min)"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[
            Slot::one(
                "samples",
                "generated images (edm/sample) or any image artifact",
            ),
            Slot::optional(
                "ref",
                "reference statistics (metrics/fid_ref); or give `ref_stats`",
            ),
        ];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        if p.batch_size == 0 {
            return Err(ParamError::invalid("batch_size", "must be at least 1"));
        }
        let files = check_protocol(&p.weights, p.ref_stats.as_deref(), p.num, p.repeats)?;
        Ok(Checked {
            params,
            files,
            resources: Resources { gpus: 1 },
        })
    }
    fn batch_defaults(&self) -> cedm_engine::BatchDefaults {
        cedm_engine::BatchDefaults {
            cpus: 8,
            mem_gb: 32,
            minutes: 240,
        }
    }
    fn run(&self, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let p: Params = ctx.params()?;
        let reference = reference_stats(ctx, p.ref_stats.as_deref(), "metrics/fid_ref")?;
        if reference.d != DIM {
            return Err(NodeError::msg(format!(
                "the reference statistics are {}-d; FID needs Inception's {DIM}-d (FDD statistics?)",
                reference.d
            )));
        }
        let set = ImageSet::read(ctx.require("samples")?)?;
        let runs = runs(set.n, p.num, p.repeats).map_err(NodeError::msg)?;
        let used = runs.last().map_or(0, |r| r.end);
        let set = set.subset(Some(used), None);
        let (mut embed, desc) = inception_embedder(
            Path::new(&p.weights),
            ctx.device(),
            p.resize,
            set.c,
            set.h,
            set.w,
        )?;
        ctx.log(format!(
            "Inception on {desc}: {} runs × {} samples",
            runs.len(),
            runs[0].len()
        ));
        let feats = extract(ctx, &set, p.batch_size, DIM, |px, b| embed(px, b))?;
        let mut fids = Vec::new();
        for r in &runs {
            let s = Stats::from_features(&feats.data[r.start * DIM..r.end * DIM], r.len(), DIM)?;
            let fid = frechet_distance(&s, &reference)?;
            ctx.log(format!("samples {}..{}: FID {fid:.4}", r.start, r.end));
            fids.push(fid);
        }
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &summarize("fid", &fids, runs[0].len()),
        )
    }
}

//! `metrics/fdd`: Fréchet DINOv2 Distance of generated samples against reference statistics
//! (dgm-eval's FD on DINOv2 ViT-L/14 CLS features), with the same run protocol as
//! `metrics/fid` (`repeats` disjoint runs of `num`; mean, min, std).

use cedm_engine::{Checked, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::features_vit::Arch;
use crate::fid::frechet_distance;
use crate::images::ImageSet;
use crate::io::write_json;
use crate::metrics_fdd_ref::{Params as Encoder, check_encoder, fdd_stats};
use crate::metrics_fid::{check_protocol, reference_stats, runs, summarize};

/// Params of `metrics/fdd`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The DINOv2 checkpoint (as `metrics/fdd_ref`). Required.
    pub weights: String,
    /// ViT preset. Default: `dinov2_vitl14`; `custom` with `arch` for others.
    #[serde(default = "vitl14")]
    pub model: String,
    /// Architecture for `model: custom`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Input side. Default: 224.
    #[serde(default = "r224")]
    pub resolution: usize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: usize,
    /// Reference statistics from a file (`.npz` or `stats.safetensors`) instead of a `ref` input.
    #[serde(default)]
    pub ref_stats: Option<String>,
    /// Samples per FDD. Default: all samples divided by `repeats`.
    #[serde(default)]
    pub num: Option<usize>,
    /// Number of disjoint runs. Default: 1.
    #[serde(default = "one")]
    pub repeats: usize,
}

fn one() -> usize {
    1
}
fn vitl14() -> String {
    "dinov2_vitl14".into()
}
fn r224() -> usize {
    224
}
fn b32() -> usize {
    32
}

impl Params {
    /// The encoder part (each run is sampled whole: no further subsampling).
    fn encoder(&self) -> Encoder {
        Encoder {
            weights: self.weights.clone(),
            model: self.model.clone(),
            arch: self.arch.clone(),
            resolution: self.resolution,
            max_images: usize::MAX,
            seed: 0,
            batch_size: self.batch_size,
        }
    }
}

/// The `metrics/fdd` kind.
pub struct Fdd;

impl Node for Fdd {
    fn kind(&self) -> &'static str {
        "metrics/fdd"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "FDD (Fréchet distance on DINOv2 ViT-L/14 CLS features) of samples against reference statistics"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[
            Slot::one(
                "samples",
                "generated images (edm/sample) or any image artifact",
            ),
            Slot::optional(
                "ref",
                "reference statistics (metrics/fdd_ref); or give `ref_stats`",
            ),
        ];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        check_encoder(&p.encoder())?;
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
        let reference = reference_stats(ctx, p.ref_stats.as_deref(), "metrics/fdd_ref")?;
        let set = ImageSet::read(ctx.require("samples")?)?;
        let runs = runs(set.n, p.num, p.repeats).map_err(NodeError::msg)?;
        let mut fdds = Vec::new();
        for r in &runs {
            let part = set.select(&r.clone().collect::<Vec<_>>());
            let s = fdd_stats(ctx, &p.encoder(), part)?;
            if s.d != reference.d {
                return Err(NodeError::msg(format!(
                    "the reference statistics are {}-d, the encoder gives {}-d",
                    reference.d, s.d
                )));
            }
            let fdd = frechet_distance(&s, &reference)?;
            ctx.log(format!("samples {}..{}: FDD {fdd:.4}", r.start, r.end));
            fdds.push(fdd);
        }
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &summarize("fdd", &fdds, runs[0].len()),
        )
    }
}

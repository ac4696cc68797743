//! `features/mobilenet_v2`: pooled 1280-d MobileNetV2 features (torchvision's ImageNet weights),
//! the CPU default backbone for clustering.

use std::collections::BTreeMap;
use std::path::Path;

use cedm_engine::{
    Checked, FileParam, Node, NodeError, ParamError, Resources, RunContext, Slot, check_typed,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::device::{Compute, compute};
use crate::features::extract;
use crate::imageops::{Filter, Resample, imagenet_norm, preprocess};
use crate::images::ImageSet;
use crate::models::mobilenet_v2::{MobileNetV2, MobileNetV2Config, MobileNetV2Cpu};
use crate::models::weights::{Weights, tensor};

/// Params of `features/mobilenet_v2`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// torchvision checkpoint `mobilenet_v2-b0353104.pth` (scripts/fetch_assets.sh puts it in
    /// `assets/weights/`). Required.
    pub weights: String,
    /// Input side length after resizing (96–224; ImageNet training used 224). Default: 224.
    #[serde(default = "r224")]
    pub resolution: usize,
    /// Resize filter, antialiased: `bilinear` (torchvision's default) or `bicubic`. Default: `bilinear`.
    #[serde(default = "bilinear")]
    pub filter: Filter,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: usize,
}

fn r224() -> usize {
    224
}
fn bilinear() -> Filter {
    Filter::Bilinear
}
fn b32() -> usize {
    32
}

/// The `features/mobilenet_v2` kind.
pub struct FeaturesMobileNetV2;

/// Load the model for a compute device and return a batch function over uint8 NCHW pixels.
///
/// # Errors
/// Unreadable weights, unknown device.
pub fn embedder(
    weights: &Path,
    device: &str,
    resolution: usize,
    filter: Filter,
    c: usize,
    h: usize,
    w: usize,
) -> Result<
    (
        Box<dyn FnMut(&[u8], usize) -> Result<Vec<f32>, NodeError>>,
        String,
    ),
    NodeError,
> {
    let wts = Weights::load(weights)?;
    let cfg = MobileNetV2Config::imagenet();
    let comp = compute(device)?;
    let (scale, offset) = imagenet_norm();
    let prep = move |px: &[u8], b: usize| {
        preprocess(
            px,
            b,
            c,
            h,
            w,
            resolution,
            Resample::Filter(filter),
            scale,
            offset,
        )
    };
    let desc = comp.describe();
    match comp {
        Compute::Cpu(_) => {
            let m = MobileNetV2Cpu::load(&cfg, &wts)?;
            Ok((
                Box::new(move |px, b| {
                    Ok(m.forward_features(&prep(px, b), b, resolution, resolution))
                }),
                format!("{desc}, NHWC kernels"),
            ))
        }
        Compute::Gpu(dev, _) => {
            let m = MobileNetV2::load(&cfg, &wts, &dev)?;
            Ok((
                Box::new(move |px, b| {
                    let x = tensor(prep(px, b), [b, 3, resolution, resolution], &dev);
                    m.forward_features(x)
                        .into_data()
                        .try_into_vec::<f32>()
                        .map_err(|e| NodeError::msg(format!("{e:?}")))
                }),
                desc,
            ))
        }
    }
}

impl Node for FeaturesMobileNetV2 {
    fn kind(&self) -> &'static str {
        "features/mobilenet_v2"
    }
    fn version(&self) -> u32 {
        1
    }
    fn about(&self) -> &'static str {
        "Pooled 1280-d MobileNetV2 features (torchvision ImageNet weights; grey → RGB, resize, ImageNet mean/std)"
    }
    fn inputs(&self) -> &'static [Slot] {
        const SLOTS: &[Slot] = &[Slot::one("images", "an image artifact (data/*)")];
        SLOTS
    }
    fn params_schema(&self) -> serde_json::Value {
        crate::schema::<Params>()
    }
    fn check(&self, params: &serde_json::Value) -> Result<Checked, ParamError> {
        let (p, params) = check_typed::<Params>(params)?;
        if !(32..=1024).contains(&p.resolution) {
            return Err(ParamError::invalid(
                "resolution",
                format!("must be between 32 and 1024, not {}", p.resolution),
            ));
        }
        if p.batch_size == 0 {
            return Err(ParamError::invalid("batch_size", "must be at least 1"));
        }
        Ok(Checked {
            params,
            files: vec![FileParam {
                param: "weights".into(),
                path: p.weights.into(),
            }],
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
        let set = ImageSet::read(ctx.require("images")?)?;
        let (mut embed, desc) = embedder(
            Path::new(&p.weights),
            ctx.device(),
            p.resolution,
            p.filter,
            set.c,
            set.h,
            set.w,
        )?;
        ctx.log(format!(
            "MobileNetV2 on {desc}: {} images {}×{} → {} px",
            set.n, set.h, set.w, p.resolution
        ));
        let feats = extract(ctx, &set, p.batch_size, 1280, |px, b| embed(px, b))?;
        let meta: BTreeMap<String, String> = [
            (
                "model".to_string(),
                "mobilenet_v2 (torchvision IMAGENET1K_V1)".to_string(),
            ),
            ("resolution".to_string(), p.resolution.to_string()),
        ]
        .into();
        feats.write(&ctx.out_dir().join("features.safetensors"), &meta)
    }
}

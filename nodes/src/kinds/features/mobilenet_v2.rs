//! `features/mobilenet_v2`: pooled 1280-d MobileNetV2 features (torchvision's ImageNet weights,
//! [`crate::encoders::mobilenet_v2`]), the CPU default backbone for clustering.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot,
};
use cedm_kernels::imageops::Filter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::device::compute_for;
use crate::encoders::mobilenet_v2::MobileNetV2;
use crate::encoders::{Encoder, extract};
use crate::params::nz;

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
    pub batch_size: NonZeroUsize,
}

fn r224() -> usize {
    224
}
fn bilinear() -> Filter {
    Filter::Bilinear
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `features/mobilenet_v2` kind.
pub struct FeaturesMobileNetV2;

impl Kind for FeaturesMobileNetV2 {
    const KIND: &'static str = "features/mobilenet_v2";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Pooled 1280-d MobileNetV2 features (torchvision ImageNet weights; grey → RGB, resize, ImageNet mean/std)";
    const INPUTS: &'static [Slot] = &[Slot::one("images", "an image artifact (data/*)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        if (32..=1024).contains(&p.resolution) {
            vec![]
        } else {
            vec![ParamError::invalid(
                "resolution",
                format!("must be between 32 and 1024, not {}", p.resolution),
            )]
        }
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (MobileNetV2, batch 32); the measured peak replaces it on the next run.
        Resources::gpu_shared(1024)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let comp = compute_for(ctx)?;
        let enc = MobileNetV2::load(Path::new(&p.weights), &comp, p.resolution, p.filter)?;
        ctx.log(format!(
            "MobileNetV2 on {}: {} images {}×{} → {} px",
            enc.describe(),
            set.n,
            set.h,
            set.w,
            p.resolution
        ));
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
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

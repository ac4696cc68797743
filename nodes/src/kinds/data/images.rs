//! `data/images`: a folder or a zip of PNG/JPEG images (EDM's `dataset_tool.py` layout,
//! [`crate::datasets::folder`]) → an image artifact, centre-cropped and resized.

use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{FileParam, Kind, NodeError, ParamError, RunContext, Slot};
use cedm_kernels::imageops::Filter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datasets::folder::load;

/// Params of `data/images`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A folder (searched recursively) or a `.zip` of `.png`/`.jpg`/`.jpeg` images. Required.
    pub path: String,
    /// Output side length: centre-crop to a square, then resize. Default: keep the size (all
    /// images must then have the same size).
    #[serde(default)]
    pub resolution: Option<NonZeroUsize>,
    /// Resize filter: `lanczos`, `bicubic`, `bilinear` (antialiased). Default: `lanczos`.
    #[serde(default = "lanczos")]
    pub filter: Filter,
    /// Read labels from `dataset.json` when present. Default: true.
    #[serde(default = "yes")]
    pub use_labels: bool,
    /// Output channels: 1 or 3; default: 3 if any image has colour, else 1.
    #[serde(default)]
    pub channels: Option<u32>,
    /// Keep only this many images. Default: all.
    #[serde(default)]
    pub limit: Option<NonZeroUsize>,
    /// With `limit`: a random subset drawn with this seed (order kept). Default: none.
    #[serde(default)]
    pub subset_seed: Option<u64>,
}

fn lanczos() -> Filter {
    Filter::Lanczos
}
fn yes() -> bool {
    true
}

/// The `data/images` kind.
pub struct DataImages;

impl Kind for DataImages {
    const KIND: &'static str = "data/images";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "A folder or zip of PNG/JPEG (EDM dataset_tool layout, optional dataset.json labels) → images, centre-cropped and resized";
    const INPUTS: &'static [Slot] = &[];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems = Vec::new();
        if let Some(c) = p.channels.filter(|c| *c != 1 && *c != 3) {
            problems.push(ParamError::invalid(
                "channels",
                format!("must be 1 or 3, not {c}"),
            ));
        }
        problems.extend(cedm_engine::rules::side(
            "resolution",
            p.resolution.map_or(0, NonZeroUsize::get),
        ));
        problems
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::file_or_dir("path", &p.path)]
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = load(
            Path::new(&p.path),
            p.resolution.map(NonZeroUsize::get),
            p.filter,
            p.use_labels,
            p.channels,
        )?
        .subset(p.limit.map(NonZeroUsize::get), p.subset_seed);
        ctx.log(format!(
            "{} images {}×{}×{} from {}",
            set.n, set.c, set.h, set.w, p.path
        ));
        set.write(ctx.out_dir(), Self::KIND)?;
        set.write_info(ctx.out_dir())
    }
}

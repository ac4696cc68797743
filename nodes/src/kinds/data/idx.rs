//! `data/idx`: MNIST / Fashion-MNIST IDX files (gzipped or raw, [`crate::datasets::idx`]) → an
//! image artifact.

use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{FileParam, Kind, NodeError, ParamError, RunContext, Slot, limits, rules};
use cedm_kernels::imageops::Filter;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datasets::idx::load;

/// Params of `data/idx`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// IDX image file (`*-images-idx3-ubyte`, gzipped or raw). The split is the file named:
    /// `train-…` (60k) or `t10k-…` (10k). Required.
    pub images: String,
    /// IDX label file (`*-labels-idx1-ubyte`, gzipped or raw): ground truth for cluster metrics
    /// and the ground-truth-conditional baseline. Default: none.
    #[serde(default)]
    pub labels: Option<String>,
    /// Keep only this many images. Default: all.
    #[serde(default)]
    pub limit: Option<NonZeroUsize>,
    /// With `limit`: a random subset drawn with this seed (file order kept) instead of the
    /// first `limit` images. Default: none.
    #[serde(default)]
    pub subset_seed: Option<u64>,
    /// Output channels: 1 (as stored) or 3 (grey repeated, for RGB networks). Default: 1.
    #[serde(default = "one")]
    pub channels: u32,
    /// Zero padding on every side, in pixels (2 turns 28×28 into 32×32). Default: 0.
    #[serde(default)]
    pub pad: usize,
    /// Resize to this side length after padding (antialiased). Default: keep.
    #[serde(default)]
    pub resolution: Option<NonZeroUsize>,
    /// Resize filter: `lanczos`, `bicubic`, `bilinear`. Default: `lanczos`.
    #[serde(default = "lanczos")]
    pub filter: Filter,
}

fn lanczos() -> Filter {
    Filter::Lanczos
}

fn one() -> u32 {
    1
}

/// The `data/idx` kind.
pub struct DataIdx;

impl Kind for DataIdx {
    const KIND: &'static str = "data/idx";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "MNIST / Fashion-MNIST IDX files (gzipped or raw) → images [N,C,H,W] uint8 + labels";
    const INPUTS: &'static [Slot] = &[];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut problems = Vec::new();
        if p.channels != 1 && p.channels != 3 {
            problems.push(ParamError::invalid(
                "channels",
                format!("must be 1 or 3, not {}", p.channels),
            ));
        }
        problems.extend(rules::side("pad", p.pad));
        problems.extend(rules::side(
            "resolution",
            p.resolution.map_or(0, NonZeroUsize::get),
        ));
        problems
    }

    fn files(p: &Params) -> Vec<FileParam> {
        let mut files = vec![FileParam::new("images", &p.images)];
        if let Some(l) = &p.labels {
            files.push(FileParam::new("labels", l));
        }
        files
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let mut set = load(Path::new(&p.images), p.labels.as_deref().map(Path::new))?;
        ctx.log(format!(
            "read {} images of {}×{} from {}",
            set.n, set.h, set.w, p.images
        ));
        set = set.subset(p.limit.map(NonZeroUsize::get), p.subset_seed);
        if p.channels == 3 {
            set = set.to_rgb();
        }
        // The output's size in checked arithmetic before it is allocated.
        let (h2, w2) = (set.h + 2 * p.pad, set.w + 2 * p.pad);
        let r = p.resolution.map_or(0, NonZeroUsize::get);
        for dims in [[set.n, set.c, h2, w2], [set.n, set.c, r, r]] {
            limits::elements(&dims, "the padded or resized images").map_err(NodeError::msg)?;
        }
        set = set.pad(p.pad);
        if let Some(r) = p.resolution {
            set = set.resize(r.get(), p.filter);
        }
        ctx.log(format!(
            "kept {} images, {}×{}×{}",
            set.n, set.c, set.h, set.w
        ));
        set.write(ctx.out_dir(), Self::KIND)?;
        set.write_info(ctx.out_dir())
    }
}

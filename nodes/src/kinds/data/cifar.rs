//! `data/cifar`: CIFAR-10 / CIFAR-100 binary batches ([`crate::datasets::cifar`]) → an image
//! artifact, in file order (the order of torchvision's and EDM's train set).

use std::num::NonZeroUsize;
use std::path::Path;

use cedm_engine::{FileParam, Kind, NodeError, RunContext, Slot};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::datasets::cifar::{LabelKind, Split, Variant, load};

/// Params of `data/cifar`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Folder of the binary batches (`cifar-10-batches-bin/` or `cifar-100-binary/`). Required.
    pub dir: String,
    /// `cifar10` or `cifar100`. Required.
    pub variant: Variant,
    /// `train` or `test`. Default: `train`.
    #[serde(default = "train")]
    pub split: Split,
    /// CIFAR-100 labels: `fine` (100) or `coarse` (20). Default: `fine`.
    #[serde(default = "fine")]
    pub labels: LabelKind,
    /// Keep only this many images. Default: all.
    #[serde(default)]
    pub limit: Option<NonZeroUsize>,
    /// With `limit`: a random subset drawn with this seed (file order kept). Default: none.
    #[serde(default)]
    pub subset_seed: Option<u64>,
}

fn train() -> Split {
    Split::Train
}
fn fine() -> LabelKind {
    LabelKind::Fine
}

/// The `data/cifar` kind.
pub struct DataCifar;

impl Kind for DataCifar {
    const KIND: &'static str = "data/cifar";
    const VERSION: u32 = 1;
    const ABOUT: &'static str =
        "CIFAR-10 / CIFAR-100 binary batches → images [N,3,32,32] uint8 + labels, in file order";
    const INPUTS: &'static [Slot] = &[];
    type Params = Params;

    fn files(p: &Params) -> Vec<FileParam> {
        vec![FileParam::dir("dir", &p.dir)]
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let set = load(Path::new(&p.dir), p.variant, p.split, p.labels)?
            .subset(p.limit.map(NonZeroUsize::get), p.subset_seed);
        ctx.log(format!("{} images from {}", set.n, p.dir));
        set.write(ctx.out_dir(), Self::KIND)?;
        set.write_info(ctx.out_dir())
    }
}

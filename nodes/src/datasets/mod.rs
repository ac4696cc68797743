//! Readers of the external dataset formats the `data/*` kinds and the standalone commands
//! (`cedm fid`, `cedm features`, `cedm bench`) load: IDX (MNIST), CIFAR binary batches, folders
//! and zips of PNG/JPEG.

pub mod cifar;
pub mod folder;
pub mod idx;

use std::path::Path;

use cedm_engine::NodeError;
use cedm_kernels::imageops::Filter;

use crate::artifacts::images::ImageSet;

/// Fashion-MNIST's classes, in label order.
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// CIFAR-10's classes, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

/// MNIST's classes (the digits).
pub const MNIST_CLASSES: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The class names of a known dataset, from a data node's kind and params (an IDX file of
/// Fashion-MNIST or MNIST, CIFAR-10's fine labels); `None` where cedm does not know them.
pub fn class_names(kind: &str, params: &serde_json::Value) -> Option<&'static [&'static str]> {
    match kind {
        "data/idx" => {
            let p = params.get("labels")?.as_str()?.to_lowercase();
            if p.contains("fashion") {
                Some(&FASHION_MNIST_CLASSES)
            } else if p.contains("mnist") {
                Some(&MNIST_CLASSES)
            } else {
                None
            }
        }
        "data/cifar" => (params.get("variant")?.as_str()? == "cifar10"
            && params
                .get("labels")
                .and_then(|l| l.as_str())
                .is_none_or(|l| l == "fine"))
        .then_some(&CIFAR10_CLASSES[..]),
        _ => None,
    }
}

/// Load images for standalone commands: a folder or zip of PNG/JPEG, an image artifact
/// (`images.safetensors`), or an IDX file (MNIST format, gz or raw).
///
/// # Errors
/// Unreadable input.
pub fn load_images(path: &Path) -> Result<ImageSet, NodeError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    if path.is_dir() || name.ends_with(".zip") {
        folder::load(path, None, Filter::Lanczos, true, None)
    } else if name.ends_with(".safetensors") {
        ImageSet::read_file(path)
    } else if name.contains("idx3") {
        idx::load(path, None)
    } else {
        Err(NodeError::msg(format!(
            "{}: expected a folder or .zip of images, an images.safetensors, or an IDX (*-idx3-ubyte[.gz]) file",
            path.display()
        )))
    }
}

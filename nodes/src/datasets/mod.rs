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

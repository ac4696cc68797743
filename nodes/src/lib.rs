//! cedm-nodes: the node kinds of a C-EDM experiment, one file each, and the burn models they use.
//!
//! The registry below is the one list of kinds; `docs/nodes.md` is generated from it
//! (`cedm kinds --markdown`), and a test fails when the committed file is stale.

pub mod augment;
pub mod bench;
pub mod blas;
pub mod bound;
pub mod clusters;
pub mod cpu;
pub mod data_cifar;
pub mod data_idx;
pub mod data_images;
pub mod device;
pub mod edm;
pub mod edm_sample;
pub mod edm_train;
pub mod features;
pub mod features_mobilenet_v2;
pub mod features_vit;
pub mod fid;
pub mod imageops;
pub mod images;
pub mod io;
pub mod kmeans;
pub mod knn;
pub mod linalg;
pub mod metrics;
pub mod metrics_fdd;
pub mod metrics_fdd_ref;
pub mod metrics_fid;
pub mod metrics_fid_ref;
pub mod models;
pub mod plot;
pub mod rng;
pub mod temi;

use std::path::Path;

use cedm_engine::{NodeError, Registry};

use crate::images::ImageSet;

/// Every node kind, in the order of the pipeline.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(&data_idx::DataIdx);
    r.register(&data_cifar::DataCifar);
    r.register(&data_images::DataImages);
    r.register(&features_mobilenet_v2::FeaturesMobileNetV2);
    r.register(&features_vit::FeaturesVit);
    r.register(&knn::FeaturesKnn);
    r.register(&temi::ClusterTemi);
    r.register(&kmeans::ClusterKmeans);
    r.register(&metrics::ClusterMetrics);
    r.register(&bound::ClusterBound);
    r.register(&edm_train::EdmTrain);
    r.register(&edm_sample::EdmSample);
    r.register(&metrics_fid_ref::FidRef);
    r.register(&metrics_fid::Fid);
    r.register(&metrics_fdd_ref::FddRef);
    r.register(&metrics_fdd::Fdd);
    r
}

/// JSON schema of a params struct (field docs and defaults), for `cedm kinds` and the docs.
pub fn schema<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

/// Write `info.json` describing an image set (count, shape, label histogram).
///
/// # Errors
/// I/O errors.
pub fn write_info(dir: &Path, set: &ImageSet) -> Result<(), NodeError> {
    let mut counts = std::collections::BTreeMap::<i64, usize>::new();
    if let Some(l) = &set.labels {
        for &x in l {
            *counts.entry(x).or_default() += 1;
        }
    }
    let v = serde_json::json!({
        "images": set.n,
        "shape": [set.c, set.h, set.w],
        "labels": set.labels.is_some(),
        "label_counts": counts.iter().map(|(k, v)| (k.to_string(), serde_json::json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    io::write_json(&dir.join("info.json"), &v)
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
        data_images::load(path, None, imageops::Filter::Lanczos, true, None)
    } else if name.ends_with(".safetensors") {
        ImageSet::read_file(path)
    } else if name.contains("idx3") {
        data_idx::load(path, None)
    } else {
        Err(NodeError::msg(format!(
            "{}: expected a folder or .zip of images, an images.safetensors, or an IDX (*-idx3-ubyte[.gz]) file",
            path.display()
        )))
    }
}

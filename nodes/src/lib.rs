//! cedm-nodes: the node kinds of a C-EDM experiment and what they are built from.
//!
//! - [`kinds`]: one file per node kind, in folders mirroring the YAML names; kinds are leaves.
//! - [`artifacts`]: every on-disk format, one typed reader/writer each.
//! - [`encoders`]: image encoders (Inception, MobileNetV2, ViT) behind one trait.
//! - [`models`]: the burn models (SongUNet and EDM beside it, TEMI heads, the encoders' nets).
//! - [`algorithms`]: kNN, k-means, clustering scores, the Fréchet distance.
//! - [`datasets`]: readers of external dataset formats.
//! - [`protocol`]: EDM's evaluation protocol shared by the metric kinds.
//! - [`device`]: devices, the GPU probe, host reads.
//! - [`kernels`]: the CPU kernels (the `cedm-kernels` crate).
//!
//! docs/architecture.md maps the crate and says what may import what. The registry below is the
//! one list of kinds; `docs/nodes.md` is generated from it (`cedm kinds --markdown`), and a test
//! fails when the committed file is stale.

#![deny(unsafe_code)]

pub use cedm_kernels as kernels;

pub mod algorithms;
pub mod artifacts;
pub mod datasets;
pub mod device;
pub mod encoders;
pub mod kinds;
pub mod models;
pub mod ops;
pub mod params;
pub mod protocol;

use cedm_engine::Registry;

use kinds::{cluster, data, edm, features, figures, labels, metrics};

/// Every node kind, in the order of the pipeline.
pub fn registry() -> Registry {
    let mut r = Registry::new();
    r.register(&data::idx::DataIdx)
        .register(&data::cifar::DataCifar)
        .register(&data::images::DataImages)
        .register(&features::inception::FeaturesInception)
        .register(&features::mobilenet_v2::FeaturesMobileNetV2)
        .register(&features::vit::FeaturesVit)
        .register(&features::clip::FeaturesClip)
        .register(&features::knn::FeaturesKnn)
        .register(&cluster::temi::ClusterTemi)
        .register(&cluster::kmeans::ClusterKmeans)
        .register(&cluster::metrics::ClusterMetrics)
        .register(&cluster::mapping::ClusterMapping)
        .register(&cluster::bound::ClusterBound)
        .register(&labels::clip::LabelsClip)
        .register(&edm::train::EdmTrain)
        .register(&edm::sample::EdmSample)
        .register(&metrics::fid_ref::FidRef)
        .register(&metrics::fid::Fid)
        .register(&metrics::fdd_ref::FddRef)
        .register(&metrics::fdd::Fdd)
        .register(&metrics::fd::MetricsFd)
        .register(&metrics::kid::MetricsKid)
        .register(&metrics::paired::MetricsPaired)
        .register(&metrics::prdc::MetricsPrdc)
        .register(&metrics::probe::MetricsProbe)
        .register(&metrics::classifier::MetricsClassifier)
        .register(&metrics::cnn_probe::MetricsCnnProbe)
        .register(&figures::same_noise::FiguresSameNoise)
        .register(&figures::granularity::FiguresGranularity)
        .register(&figures::gallery::FiguresGallery)
        .register(&figures::confidence::FiguresConfidence);
    r
}

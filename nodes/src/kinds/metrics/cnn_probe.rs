//! `metrics/cnn_probe`: are the samples recognisable as what they were conditioned on, by a
//! CNN trained on real labelled images (`metrics/classifier`)? The image-space counterpart of
//! `metrics/probe` (which classifies cached features): each generated sample is classified
//! and counted against
//! - its condition's class, for a ground-truth-conditional EDM;
//! - its cluster's majority class among the clustered images, with `clusters` (the C-EDM's
//!   label source) and `truth` (the labels of the rows it clusters).
//!
//! The classifier's accuracy on held-out real images is reported beside the share — the
//! ceiling the samples are measured against. Output `metrics.json` ([`ProbeMetrics`], probe
//! `cnn`), which the run summary and `cedm report` show as the probe column.

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::probe::{Score, cluster_majority, score, scored_targets};
use crate::artifacts::classifier::read_classifier;
use crate::artifacts::clusters::ClusterLabels;
use crate::artifacts::images::ImageSet;
use crate::artifacts::labels::read_labels;
use crate::artifacts::metrics::{ClassifierMetrics, ProbeMetrics};
use crate::artifacts::safetensors::Tensors;
use crate::artifacts::{read_json, write_json};
use crate::device::compute_for;
use crate::models::classifier::predict;
use crate::params::nz;

/// Params of `metrics/cnn_probe`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Images per forward pass. Default: 256.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
}

const fn d_batch() -> NonZeroUsize {
    nz(256)
}

/// The `metrics/cnn_probe` kind.
pub struct MetricsCnnProbe;

impl Kind for MetricsCnnProbe {
    const KIND: &'static str = "metrics/cnn_probe";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Recognisable samples: a CNN trained on real labelled images (metrics/classifier) classifies each sample; share classified as its condition (or its cluster's majority class), with the CNN's accuracy on real test images";
    const INPUTS: &'static [Slot] = &[
        Slot::one("classifier", "the trained CNN (a metrics/classifier node)"),
        Slot::one(
            "samples",
            "the generated images and their conditions (an edm/sample node), or labelled real images (a check of the probe)",
        ),
        Slot::optional(
            "clusters",
            "the EDM's label source when it is a clustering: samples are checked against their cluster's majority class",
        ),
        Slot::optional(
            "truth",
            "the ground-truth labels of the rows `clusters` clusters (a data/* node), with `clusters`",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        rules::at_most("batch_size", p.batch_size.get(), 1 << 16)
            .into_iter()
            .collect()
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let comp = compute_for(ctx)?;
        let device = comp.device().clone();
        let cl_in = ctx.require("classifier")?;
        let (cfg, class_values, net) = read_classifier(cl_in, &device)?;
        let cm: ClassifierMetrics = read_json(cl_in.path("metrics.json")?)?;
        let classes = class_values.len();
        let id = |v: i64| class_values.iter().position(|&c| c == v).map(|i| i as i64);

        let s_in = ctx.require("samples")?;
        let samples = ImageSet::read(s_in)?;
        if (samples.c, samples.h, samples.w) != (cfg.channels, cfg.height, cfg.width) {
            return Err(NodeError::msg(format!(
                "the samples are {}×{}×{}, the classifier was trained on {}×{}×{} images",
                samples.c, samples.h, samples.w, cfg.channels, cfg.height, cfg.width
            )));
        }
        let conditions: Vec<i64> = if s_in.files.contains_key("conditions.safetensors") {
            Tensors::open(s_in.path("conditions.safetensors")?)?
                .i64("conditions")?
                .data
        } else if let Some(l) = &samples.labels {
            // Real labelled images as "samples" (a check of the probe itself): their classes.
            l.iter().map(|&v| id(v).unwrap_or(-1)).collect()
        } else {
            return Err(NodeError::msg(
                "`samples` has neither conditions (an edm/sample node) nor labels",
            ));
        };
        if conditions.len() != samples.n {
            return Err(NodeError::msg(format!(
                "{} conditions for {} samples",
                conditions.len(),
                samples.n
            )));
        }

        let (target_name, target_of): (&str, Vec<i64>) = match (
            ctx.input("clusters"),
            ctx.input("truth"),
        ) {
            (None, None) => ("condition", (0..classes as i64).collect()),
            (Some(c), Some(t)) => {
                let path = t.path("labels.safetensors").map_err(|_| {
                        NodeError::msg(
                            "input `truth` has no labels (labels.safetensors): give the data node its label file",
                        )
                    })?;
                let truth_raw = Tensors::open(path)?.i64("labels")?.data;
                let truth = truth_raw
                        .iter()
                        .map(|&v| {
                            id(v).ok_or_else(|| {
                                NodeError::msg(format!(
                                    "label {v} of `truth` is not a class of the classifier ({class_values:?})"
                                ))
                            })
                        })
                        .collect::<Result<Vec<i64>, _>>()?;
                let cl = if c.files.contains_key("clusters.safetensors") {
                    ClusterLabels::read(c)?.labels
                } else {
                    read_labels(c, truth.len())?.0
                };
                if cl.len() != truth.len() {
                    return Err(NodeError::msg(format!(
                        "{} cluster labels for {} `truth` labels: `clusters` must cluster the rows of `truth`",
                        cl.len(),
                        truth.len()
                    )));
                }
                ("cluster majority", cluster_majority(&cl, &truth, classes))
            }
            _ => {
                return Err(NodeError::msg(
                    "give both `clusters` and `truth` (the labels of the clustered rows), or neither",
                ));
            }
        };
        let (scored, targets) = scored_targets(
            &conditions,
            &target_of,
            target_name,
            "classes of the classifier",
        )
        .map_err(NodeError::msg)?;
        let pred = predict(
            &net,
            &cfg,
            &samples.pixels,
            samples.n,
            p.batch_size.get(),
            &device,
        )
        .map_err(NodeError::msg)?;
        let pred: Vec<i64> = scored.iter().map(|&i| pred[i]).collect();
        let Score {
            accuracy,
            per_class,
        } = score(&pred, &targets);
        let (test_accuracy, test_items) = (cm.test_accuracy, cm.test_items);
        ctx.log(format!(
            "CNN probe: {accuracy:.1}% of {} samples classified as their {target_name} (chance {:.1}%){}",
            scored.len(),
            100.0 / classes as f64,
            test_accuracy.map_or(String::new(), |t| format!(
                "; {t:.1}% on {test_items} real test images"
            ))
        ));
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &ProbeMetrics {
                probe: "cnn".into(),
                k: 0,
                c: 0.0,
                classes,
                target: target_name.into(),
                accuracy,
                samples: scored.len(),
                chance: 100.0 / classes as f64,
                test_accuracy,
                test_items,
                per_class,
            },
        )
    }
}

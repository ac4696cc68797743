//! `metrics/probe`: are the samples recognisable as what they were conditioned on? A probe
//! trained on real labelled images — a k-NN classifier on their features
//! ([`crate::algorithms::probe`], scikit-learn's `KNeighborsClassifier` on L2-normalised
//! features) — classifies each generated sample, in the spirit of the classification accuracy
//! score (Ravuri & Vinyals 2019; here the probe is trained on real images and tested on
//! samples):
//! - for a ground-truth-conditional EDM, the share of samples classified as their condition's
//!   class;
//! - with `clusters` (the label source of a C-EDM, clustered over the `train` rows), the share
//!   classified as their cluster's majority class among the training images.
//!
//! With `test` and `test_truth` (held-out real images), the probe's own accuracy on them is
//! reported beside it — the ceiling the samples are measured against.
//!
//! Output `metrics.json` ([`ProbeMetrics`]).

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::probe::{
    Logistic, Score, class_ids, cluster_majority, knn_predict, score, scored_targets,
};
use crate::artifacts::clusters::ClusterLabels;
use crate::artifacts::features::Features;
use crate::artifacts::labels::read_labels;
use crate::artifacts::metrics::ProbeMetrics;
use crate::artifacts::safetensors::Tensors;
use crate::artifacts::write_json;

/// Params of `metrics/probe`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The classifier: `knn` (scikit-learn's `KNeighborsClassifier` on L2-normalised features)
    /// or `logistic` (`LogisticRegression` on standardised features, scikit-learn's tolerance).
    /// Default: knn — on generated samples it agrees with their condition more often than the
    /// logistic probe at the same accuracy on real images (docs/metrics.md).
    #[serde(default)]
    pub probe: ProbeKind,
    /// Neighbours that vote, for `knn` (scikit-learn's `n_neighbors` default). Default: 5.
    #[serde(default = "d_k")]
    pub k: usize,
    /// Inverse L2 strength for `logistic` (scikit-learn's `C`). Default: 1.0.
    #[serde(default = "d_c")]
    pub c: f64,
}

/// The probe's classifier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProbeKind {
    /// k nearest neighbours by cosine similarity.
    #[default]
    Knn,
    /// Multinomial logistic regression on standardised features.
    Logistic,
}

fn d_k() -> usize {
    5
}

fn d_c() -> f64 {
    1.0
}

/// A fitted probe.
enum Fitted<'a> {
    Knn {
        train: &'a [f32],
        truth: &'a [i64],
        d: usize,
        k: usize,
        classes: usize,
    },
    Logistic(Logistic),
}

impl Fitted<'_> {
    fn predict(&self, q: &[f32]) -> Vec<i64> {
        match self {
            Fitted::Knn {
                train,
                truth,
                d,
                k,
                classes,
            } => knn_predict(train, truth, q, *d, *k, *classes),
            Fitted::Logistic(m) => m.predict(q),
        }
    }
}

/// The `metrics/probe` kind.
pub struct MetricsProbe;

impl Kind for MetricsProbe {
    const KIND: &'static str = "metrics/probe";
    const VERSION: u32 = 2;
    const ABOUT: &'static str = "Recognisable samples: a probe (logistic regression or k-NN) trained on real labelled features classifies each sample; share classified as its condition (or its cluster's majority class), with the probe's accuracy on real test images";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "train",
            "features of the labelled real images the probe is fitted on (features/*)",
        ),
        Slot::one(
            "truth",
            "their ground-truth labels (the data/* node with a label file)",
        ),
        Slot::one(
            "samples",
            "features of the generated images (features/* over edm/sample)",
        ),
        Slot::one(
            "conditions",
            "the edm/sample node the samples came from (its conditions.safetensors), or a data/* node's labels when the samples are real images",
        ),
        Slot::optional(
            "clusters",
            "the EDM's label source when it is a clustering of the `train` rows: samples are checked against their cluster's majority class",
        ),
        Slot::optional("test", "features of held-out real images"),
        Slot::optional("test_truth", "their ground-truth labels"),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_least("k", p.k, 1));
        v.extend(rules::at_most("k", p.k, 1000));
        v.extend(rules::positive("c", p.c));
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let train = Features::read(ctx.require("train")?)?;
        let samples = Features::read(ctx.require("samples")?)?;
        if train.d != samples.d {
            return Err(NodeError::msg(format!(
                "the training features are {}-d, the samples' {}-d: embed both with the same encoder",
                train.d, samples.d
            )));
        }
        if p.probe == ProbeKind::Knn && p.k > train.n {
            return Err(NodeError::msg(format!(
                "k = {} but only {} training items",
                p.k, train.n
            )));
        }
        // Labels as the EDM's ids: sorted distinct ground-truth values → 0..classes.
        let raw = |a: &cedm_engine::Artifact,
                   n: usize,
                   what: &str|
         -> Result<Vec<i64>, NodeError> {
            let path = a.path("labels.safetensors").map_err(|_| {
                NodeError::msg(format!(
                    "input `{what}` has no labels (labels.safetensors): give the data node its label file"
                ))
            })?;
            let l = Tensors::open(path)?.i64("labels")?.data;
            if l.len() != n {
                return Err(NodeError::msg(format!(
                    "{} labels in `{what}` for {n} feature rows",
                    l.len()
                )));
            }
            Ok(l)
        };
        let truth_raw = raw(ctx.require("truth")?, train.n, "truth")?;
        let id = class_ids(&truth_raw);
        let classes = id.len();
        let truth: Vec<i64> = truth_raw.iter().map(|v| id[v]).collect();

        let cond_in = ctx.require("conditions")?;
        let conditions: Vec<i64> = if cond_in.files.contains_key("conditions.safetensors") {
            Tensors::open(cond_in.path("conditions.safetensors")?)?
                .i64("conditions")?
                .data
        } else {
            // Real labelled images as "samples" (a check of the probe itself): their classes.
            raw(cond_in, samples.n, "conditions")?
                .iter()
                .map(|v| id.get(v).copied().unwrap_or(-1))
                .collect()
        };
        if conditions.len() != samples.n {
            return Err(NodeError::msg(format!(
                "{} conditions for {} sample features: `conditions` must be the edm/sample node the features were computed from",
                conditions.len(),
                samples.n
            )));
        }
        // Targets: the condition's class, or the cluster's majority class.
        let (target_name, target_of): (&str, Vec<i64>) = match ctx.input("clusters") {
            None => ("condition", (0..classes as i64).collect()),
            Some(c) => {
                let cl = if c.files.contains_key("clusters.safetensors") {
                    ClusterLabels::read(c)?.labels
                } else {
                    read_labels(c, train.n)?.0
                };
                if cl.len() != train.n {
                    return Err(NodeError::msg(format!(
                        "{} cluster labels for {} training rows: `clusters` must cluster the `train` rows",
                        cl.len(),
                        train.n
                    )));
                }
                ("cluster majority", cluster_majority(&cl, &truth, classes))
            }
        };
        let (scored, targets) =
            scored_targets(&conditions, &target_of, target_name, "classes of `truth`")
                .map_err(NodeError::msg)?;
        let queries: Vec<f32> = scored
            .iter()
            .flat_map(|&i| samples.row(i).to_vec())
            .collect();
        let fitted = match p.probe {
            ProbeKind::Knn => Fitted::Knn {
                train: &train.data,
                truth: &truth,
                d: train.d,
                k: p.k,
                classes,
            },
            ProbeKind::Logistic => {
                let m = Logistic::fit(&train.data, &truth, train.d, classes, p.c, 1e-4, 1000);
                ctx.log(format!(
                    "logistic regression (C = {}) fitted in {} L-BFGS iterations",
                    p.c, m.iterations
                ));
                Fitted::Logistic(m)
            }
        };
        let pred = fitted.predict(&queries);
        let Score {
            accuracy,
            per_class,
        } = score(&pred, &targets);

        let (test_accuracy, test_items) = match (ctx.input("test"), ctx.input("test_truth")) {
            (None, None) => (None, 0),
            (Some(t), Some(tt)) => {
                let test = Features::read(t)?;
                if test.d != train.d {
                    return Err(NodeError::msg(format!(
                        "the test features are {}-d, the training features {}-d",
                        test.d, train.d
                    )));
                }
                let labels = raw(tt, test.n, "test_truth")?
                    .iter()
                    .map(|v| {
                        id.get(v).copied().ok_or_else(|| {
                            NodeError::msg(format!("test label {v} is not a class of `truth`"))
                        })
                    })
                    .collect::<Result<Vec<i64>, _>>()?;
                let pred = fitted.predict(&test.data);
                let ok = pred.iter().zip(&labels).filter(|(a, b)| a == b).count();
                (Some(100.0 * ok as f64 / test.n.max(1) as f64), test.n)
            }
            _ => {
                return Err(NodeError::msg(
                    "give both `test` and `test_truth`, or neither",
                ));
            }
        };
        let what = match p.probe {
            ProbeKind::Knn => format!("k-NN, k = {}", p.k),
            ProbeKind::Logistic => format!("logistic regression, C = {}", p.c),
        };
        ctx.log(format!(
            "probe ({what}): {accuracy:.1}% of {} samples classified as their {target_name} (chance {:.1}%){}",
            scored.len(),
            100.0 / classes as f64,
            test_accuracy.map_or(String::new(), |t| format!("; {t:.1}% on {test_items} real test images"))
        ));
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &ProbeMetrics {
                probe: match p.probe {
                    ProbeKind::Knn => "knn",
                    ProbeKind::Logistic => "logistic",
                }
                .into(),
                k: if p.probe == ProbeKind::Knn { p.k } else { 0 },
                c: if p.probe == ProbeKind::Logistic {
                    p.c
                } else {
                    0.0
                },
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

//! `metrics/classifier`: a small CNN ([`crate::models::classifier`]) trained on real labelled
//! images — the probe `metrics/cnn_probe` classifies generated samples with. Trained once per
//! image set and settings; every probe of an experiment reads it.
//!
//! Training as the PyTorch script it was measured against (docs/results.md): Adam at `lr`
//! (torch's defaults otherwise), `epochs` passes over the images in a seeded random order,
//! `batch_size` images per step (the last batch of an epoch smaller), each image flipped
//! horizontally with probability ½ (`flip`), dropout `dropout` on the hidden layer, mean
//! cross-entropy. Inputs `x / 127.5 − 1`, as the EDM sees them. Deterministic: the order, flips
//! and dropout masks come from stream `epoch` of `seed`.
//!
//! Outputs: `network.safetensors` (PyTorch's names and layouts, the architecture and the class
//! values in its metadata) and `metrics.json` ([`ClassifierMetrics`]: loss per epoch, accuracy on
//! the `test` images).

use std::num::NonZeroUsize;

use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::algorithms::probe::{class_ids, score};
use crate::artifacts::classifier::write_classifier;
use crate::artifacts::images::ImageSet;
use crate::artifacts::metrics::ClassifierMetrics;
use crate::artifacts::write_json;
use crate::device::compute_for;
use crate::models::classifier::{ClassifierConfig, Trainer, normalize, predict};
use crate::params::nz;

/// Params of `metrics/classifier`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Channels of the first two convolutions (the third has twice as many). Default: 32.
    #[serde(default = "d_filters")]
    pub filters: NonZeroUsize,
    /// Units of the hidden layer. Default: 128.
    #[serde(default = "d_hidden")]
    pub hidden: NonZeroUsize,
    /// Passes over the training images. Default: 15.
    #[serde(default = "d_epochs")]
    pub epochs: usize,
    /// Images per step. Default: 64.
    #[serde(default = "d_batch")]
    pub batch_size: NonZeroUsize,
    /// Adam's learning rate. Default: 0.001 (torch.optim.Adam's).
    #[serde(default = "d_lr")]
    pub lr: f64,
    /// Dropout on the hidden layer. Default: 0.3.
    #[serde(default = "d_dropout")]
    pub dropout: f64,
    /// Random horizontal flips (garments, digits would not want them). Default: true.
    #[serde(default = "yes")]
    pub flip: bool,
    /// Seed of the initialisation, order, flips and dropout. Default: 0.
    #[serde(default)]
    pub seed: u64,
}

const fn d_filters() -> NonZeroUsize {
    nz(32)
}
const fn d_hidden() -> NonZeroUsize {
    nz(128)
}
fn d_epochs() -> usize {
    15
}
const fn d_batch() -> NonZeroUsize {
    nz(64)
}
fn d_lr() -> f64 {
    1e-3
}
fn d_dropout() -> f64 {
    0.3
}
fn yes() -> bool {
    true
}

/// The `metrics/classifier` kind.
pub struct MetricsClassifier;

impl Kind for MetricsClassifier {
    const KIND: &'static str = "metrics/classifier";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "A small CNN classifier trained on real labelled images (the probe of metrics/cnn_probe), with its accuracy on held-out images";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "train",
            "labelled real images to train on (a data/* node with its label file)",
        ),
        Slot::optional(
            "test",
            "labelled held-out real images: the classifier's accuracy on them",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::at_least("epochs", p.epochs, 1));
        v.extend(rules::at_most("epochs", p.epochs, 10_000));
        v.extend(rules::at_most("filters", p.filters.get(), 1024));
        v.extend(rules::at_most("hidden", p.hidden.get(), 65_536));
        v.extend(rules::at_most("batch_size", p.batch_size.get(), 65_536));
        v.extend(rules::positive("lr", p.lr));
        v.extend(rules::within("dropout", p.dropout, 0.0, 0.95));
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let train = ImageSet::read(ctx.require("train")?)?;
        let Some(truth) = train.labels.as_ref() else {
            return Err(NodeError::msg(
                "input `train` has no labels (labels.safetensors): give the data node its label file",
            ));
        };
        if train.h < 4 || train.w < 4 {
            return Err(NodeError::msg(format!(
                "the images are {}×{}: the classifier pools twice by 2, so it needs at least 4×4",
                train.h, train.w
            )));
        }
        let ids = class_ids(truth);
        let classes = ids.len();
        if classes < 2 {
            return Err(NodeError::msg(
                "the training labels have fewer than 2 classes",
            ));
        }
        let y: Vec<i64> = truth.iter().map(|v| ids[v]).collect();
        let cfg = ClassifierConfig {
            channels: train.c,
            height: train.h,
            width: train.w,
            filters: p.filters.get(),
            hidden: p.hidden.get(),
            classes,
        };
        let comp = compute_for(ctx)?;
        let device = comp.device().clone();
        let mut trainer =
            Trainer::new(cfg, &cfg.init_values(p.seed), &device).map_err(NodeError::msg)?;
        ctx.log(format!(
            "CNN {}→{}→{}→{} on {} images {}×{}×{}, {classes} classes, {} epochs of batch {} ({})",
            cfg.channels,
            cfg.filters,
            2 * cfg.filters,
            cfg.hidden,
            train.n,
            train.c,
            train.h,
            train.w,
            p.epochs,
            p.batch_size,
            comp.describe()
        ));
        let il = train.image_len();
        let bs = p.batch_size.get();
        let steps_per_epoch = train.n.div_ceil(bs) as u64;
        let total = steps_per_epoch * p.epochs as u64;
        let mut losses = Vec::with_capacity(p.epochs);
        let t0 = std::time::Instant::now();
        for epoch in 0..p.epochs {
            let mut rng = cedm_kernels::rng::Rng::stream(p.seed, epoch as u64);
            let mut order: Vec<usize> = (0..train.n).collect();
            rng.shuffle(&mut order);
            let mut sum = 0.0;
            for (s, idx) in order.chunks(bs).enumerate() {
                if ctx.should_stop() {
                    return Err(NodeError::Interrupted);
                }
                let mut pixels = Vec::with_capacity(idx.len() * il);
                for &i in idx {
                    let img = train.image(i);
                    if p.flip && rng.uniform() < 0.5 {
                        for row in img.chunks(train.w) {
                            pixels.extend(row.iter().rev());
                        }
                    } else {
                        pixels.extend_from_slice(img);
                    }
                }
                let keep = (p.dropout > 0.0).then(|| {
                    let scale = (1.0 / (1.0 - p.dropout)) as f32;
                    (0..idx.len() * cfg.hidden)
                        .map(|_| {
                            if rng.uniform() < p.dropout {
                                0.0
                            } else {
                                scale
                            }
                        })
                        .collect()
                });
                let yb: Vec<i64> = idx.iter().map(|&i| y[i]).collect();
                let lv = trainer
                    .step(normalize(&pixels), &yb, keep, p.lr)
                    .map_err(NodeError::msg)?;
                if !lv.is_finite() {
                    return Err(NodeError::msg(format!(
                        "the loss is {lv} at epoch {} step {s}: lower `lr`",
                        epoch + 1
                    )));
                }
                sum += f64::from(lv) * idx.len() as f64;
                let done = epoch as u64 * steps_per_epoch + s as u64 + 1;
                ctx.progress(done, Some(total), "steps", None);
            }
            let mean = sum / train.n as f64;
            ctx.log(format!("epoch {}: mean loss {mean:.4}", epoch + 1));
            ctx.scalars(
                (epoch + 1) as f64,
                "epoch",
                &[("loss", mean)],
                epoch + 1 == p.epochs,
            );
            losses.push(mean);
        }
        ctx.stat(
            "img_per_s",
            (train.n * p.epochs) as f64 / t0.elapsed().as_secs_f64(),
        );
        let values = trainer.to_torch().map_err(NodeError::msg)?;
        let net = crate::models::classifier::Classifier::from_torch(&cfg, &values, &device)
            .map_err(NodeError::msg)?;

        let (test_accuracy, test_items) = match ctx.input("test") {
            None => (None, 0),
            Some(t) => {
                let test = ImageSet::read(t)?;
                let Some(tl) = test.labels.as_ref() else {
                    return Err(NodeError::msg(
                        "input `test` has no labels (labels.safetensors): give the data node its label file",
                    ));
                };
                if (test.c, test.h, test.w) != (train.c, train.h, train.w) {
                    return Err(NodeError::msg(format!(
                        "the test images are {}×{}×{}, the training images {}×{}×{}",
                        test.c, test.h, test.w, train.c, train.h, train.w
                    )));
                }
                let target = tl
                    .iter()
                    .map(|v| {
                        ids.get(v).copied().ok_or_else(|| {
                            NodeError::msg(format!("test label {v} is not a class of `train`"))
                        })
                    })
                    .collect::<Result<Vec<i64>, _>>()?;
                let pred = predict(&net, &cfg, &test.pixels, test.n, 256, &device)
                    .map_err(NodeError::msg)?;
                let acc = score(&pred, &target).accuracy;
                ctx.log(format!("accuracy on {} test images: {acc:.1}%", test.n));
                (Some(acc), test.n)
            }
        };

        let class_values: Vec<i64> = ids.keys().copied().collect();
        write_classifier(
            &ctx.out_dir().join("network.safetensors"),
            &cfg,
            &class_values,
            &values,
        )?;
        write_json(
            &ctx.out_dir().join("metrics.json"),
            &ClassifierMetrics {
                classes,
                class_values,
                train_items: train.n,
                epochs: p.epochs,
                losses,
                test_accuracy,
                test_items,
                resolution: [cfg.channels, cfg.height, cfg.width],
            },
        )
    }
}

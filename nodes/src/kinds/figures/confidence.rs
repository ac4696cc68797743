//! `figures/confidence`: the seed's Fig. 6 — how confidently the clustering recognises generated
//! samples. Each sample, embedded with the clustering backbone (a `features/*` node over the
//! samples, with the clustering features' params), is scored by the trained TEMI head
//! (`cluster/temi`'s `head.safetensors`, its best head): the maximum softmax probability (MSP)
//! of softmax(logits / T) and the cluster it picks. T defaults to TEMI's student temperature
//! 0.1 (`--student_temp`, losses/mi.py:23), the temperature its loss reads cluster
//! probabilities at; `temperature: 1` gives the raw softmax.
//!
//! The figure shows the `show` lowest- and highest-confidence samples, each under the
//! unconditional EDM's sample from the same noise (`uncond`, an `edm/sample` with the same
//! seeds), column labels the MSP. With `reference` (features of real images, e.g. the training
//! set), the real images' MSP is measured too and marked in the histogram: the scale a sample's
//! confidence is read against.
//!
//! Outputs: `confidence.safetensors` (`msp` f32 `[N]`, `cluster` i64 `[N]`: the picked cluster
//! as the EDM's label id, −1 for a cluster no training item has); `histogram.png`;
//! `figure.png`; `figure.json` — mean, quantiles and histogram of the MSP, the share of samples
//! whose picked cluster is the one they were conditioned on, the reference's mean MSP, and the
//! samples shown.

use std::num::NonZeroUsize;

use burn::tensor::{Tensor, TensorData};
use cedm_engine::{Kind, NodeError, ParamError, RunContext, Slot, rules};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::features::Features;
use crate::artifacts::figure::{Row, histogram_png, labelled_grid};
use crate::artifacts::images::ImageSet;
use crate::artifacts::safetensors::{Tensors, Writer};
use crate::artifacts::write_json;
use crate::device::{compute_for, to_host};
use crate::models::temi_heads::{Heads, forward, load_head};
use crate::params::nz;

/// Params of `figures/confidence`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Softmax temperature T of the head's logits (TEMI's student temperature). Default: 0.1.
    #[serde(default = "d_temp")]
    pub temperature: f64,
    /// Lowest- and highest-confidence samples shown, each. Default: 8.
    #[serde(default = "d_show")]
    pub show: NonZeroUsize,
    /// Histogram bins over [0, 1]. Default: 20.
    #[serde(default = "d_bins")]
    pub bins: NonZeroUsize,
    /// Pixel scale of the images in figure.png. Default: 3.
    #[serde(default = "d_scale")]
    pub scale: NonZeroUsize,
}

fn d_temp() -> f64 {
    0.1
}
fn d_show() -> NonZeroUsize {
    const { nz(8) }
}
fn d_bins() -> NonZeroUsize {
    const { nz(20) }
}
fn d_scale() -> NonZeroUsize {
    const { nz(3) }
}

/// A sample shown in the figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Shown {
    /// Its index among the samples.
    pub index: usize,
    /// Its MSP.
    pub msp: f64,
    /// The cluster it was conditioned on (None: unconditional samples).
    pub condition: Option<i64>,
    /// The cluster the head picks (None: one no training item has).
    pub predicted: Option<i64>,
}

/// Summary of a set's MSP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MspSummary {
    /// Items scored.
    pub n: usize,
    /// Mean MSP.
    pub mean: f64,
    /// 10th, 50th and 90th percentiles (nearest rank).
    pub quantiles: [f64; 3],
    /// Counts per bin of [0, 1].
    pub histogram: Vec<usize>,
}

/// `figure.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Confidence {
    /// The temperature T.
    pub temperature: f64,
    /// Clusters of the head.
    pub clusters: usize,
    /// The samples.
    pub samples: MspSummary,
    /// Share of conditioned samples whose picked cluster is their condition.
    pub condition_agreement: Option<f64>,
    /// The reference (real) images, when connected.
    pub reference: Option<MspSummary>,
    /// Lowest confidence first.
    pub lowest: Vec<Shown>,
    /// Highest confidence first.
    pub highest: Vec<Shown>,
}

/// MSP and argmax of each row of `feats` under the head.
fn score(
    head: &Heads,
    feats: &Features,
    t: f64,
    dev: &burn::tensor::Device,
) -> Result<(Vec<f64>, Vec<usize>), NodeError> {
    let c = head.config.clusters;
    let (mut msp, mut arg) = (Vec::with_capacity(feats.n), Vec::with_capacity(feats.n));
    for start in (0..feats.n).step_by(4096) {
        let b = 4096.min(feats.n - start);
        let x = Tensor::<2>::from_data(
            TensorData::new(
                feats.data[start * feats.d..(start + b) * feats.d].to_vec(),
                [b, feats.d],
            ),
            dev,
        );
        let logits = to_host(forward(&head.config, &head.params, x))?; // [1, b, C]
        for row in logits.chunks(c) {
            let (k, m) = row
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |a, (i, &v)| if v > a.1 { (i, v) } else { a },
                );
            let z: f64 = row.iter().map(|&v| ((v as f64 - m as f64) / t).exp()).sum();
            msp.push(1.0 / z);
            arg.push(k);
        }
    }
    Ok((msp, arg))
}

fn summary(v: &[f64], bins: usize) -> MspSummary {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let q = |p: f64| {
        if s.is_empty() {
            f64::NAN
        } else {
            s[((p * s.len() as f64).ceil() as usize).clamp(1, s.len()) - 1]
        }
    };
    let mut histogram = vec![0; bins];
    for &x in v {
        histogram[((x * bins as f64) as usize).min(bins - 1)] += 1;
    }
    MspSummary {
        n: v.len(),
        mean: v.iter().sum::<f64>() / v.len().max(1) as f64,
        quantiles: [q(0.1), q(0.5), q(0.9)],
        histogram,
    }
}

/// The `figures/confidence` kind.
pub struct FiguresConfidence;

impl Kind for FiguresConfidence {
    const KIND: &'static str = "figures/confidence";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "Seed Fig. 6: samples scored by the TEMI head (max softmax probability), histogram, lowest/highest with the unconditional sample above";
    const INPUTS: &'static [Slot] = &[
        Slot::one(
            "features",
            "the samples embedded with the clustering backbone (features/* over edm/sample)",
        ),
        Slot::one(
            "head",
            "the clustering (cluster/temi: head.safetensors, clusters.safetensors)",
        ),
        Slot::one("samples", "the samples (edm/sample of the C-EDM)"),
        Slot::optional(
            "uncond",
            "the unconditional EDM's samples from the same seeds (edm/sample)",
        ),
        Slot::optional(
            "reference",
            "real images embedded the same way (features/*), for their MSP",
        ),
    ];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        v.extend(rules::positive("temperature", p.temperature));
        v.extend(rules::at_most("show", p.show.get(), 1 << 10));
        v.extend(rules::at_most("bins", p.bins.get(), 1 << 12));
        v.extend(rules::at_most("scale", p.scale.get(), 16));
        v
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let head_in = ctx.require("head")?;
        let head = load_head(head_in.path("head.safetensors")?, &dev)?;
        // The head picks raw cluster ids; the EDM is conditioned on the used ones, remapped.
        let raw_of_label = Tensors::open(head_in.path("clusters.safetensors")?)?
            .i64("mapping")?
            .data;
        let mut label_of_raw = vec![None; head.config.clusters];
        for (l, &r) in raw_of_label.iter().enumerate() {
            if let Some(slot) = usize::try_from(r)
                .ok()
                .and_then(|r| label_of_raw.get_mut(r))
            {
                *slot = Some(l as i64);
            }
        }
        let feats = Features::read(ctx.require("features")?)?;
        if feats.d != head.config.input {
            return Err(NodeError::msg(format!(
                "the features are {}-d but the head takes {}-d input: embed the samples with the clustering's backbone",
                feats.d, head.config.input
            )));
        }
        let samples_in = ctx.require("samples")?;
        let samples = ImageSet::read(samples_in)?;
        if samples.n != feats.n {
            return Err(NodeError::msg(format!(
                "{} feature rows for {} samples: embed the connected samples",
                feats.n, samples.n
            )));
        }
        let conditions: Option<Vec<i64>> = samples_in
            .path("conditions.safetensors")
            .ok()
            .map(|p| {
                Tensors::open(p)
                    .and_then(|t| t.i64("conditions"))
                    .map(|t| t.data)
            })
            .transpose()?
            .filter(|c| c.len() == samples.n && c.iter().any(|&l| l >= 0));
        let uncond = ctx.input("uncond").map(ImageSet::read).transpose()?;
        if let Some(u) = &uncond
            && (u.n, u.c, u.h, u.w) != (samples.n, samples.c, samples.h, samples.w)
        {
            return Err(NodeError::msg(format!(
                "`uncond` has {} images of {}×{}×{}, the samples {} of {}×{}×{}: sample the unconditional EDM with the same count and seeds",
                u.n, u.c, u.h, u.w, samples.n, samples.c, samples.h, samples.w
            )));
        }
        let (msp, arg) = score(&head, &feats, p.temperature, &dev)?;
        let predicted: Vec<Option<i64>> = arg.iter().map(|&k| label_of_raw[k]).collect();
        let bins = p.bins.get();
        let sum = summary(&msp, bins);
        let condition_agreement = conditions.as_ref().map(|c| {
            let hits = c
                .iter()
                .zip(&predicted)
                .filter(|(c, p)| **c >= 0 && Some(**c) == **p)
                .count();
            hits as f64 / c.iter().filter(|&&l| l >= 0).count().max(1) as f64
        });
        let reference = match ctx.input("reference") {
            Some(a) => {
                let r = Features::read(a)?;
                if r.d != feats.d {
                    return Err(NodeError::msg(format!(
                        "`reference` features are {}-d, the samples' {}-d: embed both the same way",
                        r.d, feats.d
                    )));
                }
                Some(summary(&score(&head, &r, p.temperature, &dev)?.0, bins))
            }
            None => None,
        };
        let mut order: Vec<usize> = (0..msp.len()).collect();
        order.sort_by(|&a, &b| msp[a].total_cmp(&msp[b]).then(a.cmp(&b)));
        let k = p.show.get().min(order.len() / 2).max(1).min(order.len());
        let shown = |i: usize| Shown {
            index: i,
            msp: msp[i],
            condition: conditions.as_ref().map(|c| c[i]),
            predicted: predicted[i],
        };
        let lowest: Vec<Shown> = order[..k].iter().map(|&i| shown(i)).collect();
        let highest: Vec<Shown> = order[order.len() - k..]
            .iter()
            .rev()
            .map(|&i| shown(i))
            .collect();
        ctx.log(format!(
            "MSP (T = {}) of {} samples: mean {:.3}{}{}",
            p.temperature,
            msp.len(),
            sum.mean,
            reference
                .as_ref()
                .map(|r| format!(", real images {:.3}", r.mean))
                .unwrap_or_default(),
            condition_agreement
                .map(|a| format!(", picked cluster = condition for {:.1}%", a * 100.0))
                .unwrap_or_default()
        ));

        // Per-sample scores.
        let picked: Vec<i64> = predicted.iter().map(|p| p.unwrap_or(-1)).collect();
        let msp32: Vec<f32> = msp.iter().map(|&v| v as f32).collect();
        Writer::new()
            .put("msp", &[msp32.len()], &msp32)
            .put("cluster", &[picked.len()], &picked)
            .meta("temperature", p.temperature.to_string())
            .write(&ctx.out_dir().join("confidence.safetensors"))?;

        // The histogram, the real images' mean marked.
        let mut marks = vec![("samples".to_string(), sum.mean, [200u8, 60, 40])];
        if let Some(r) = &reference {
            marks.push(("real".to_string(), r.mean, [40, 150, 60]));
        }
        histogram_png(
            &ctx.out_dir().join("histogram.png"),
            &format!("msp of {} samples, t = {}", msp.len(), p.temperature),
            &sum.histogram,
            0.0,
            1.0,
            &marks,
        )?;

        // Lowest and highest, each under its unconditional twin: one set holding both.
        let mut set = samples.clone();
        let off = set.n;
        if let Some(u) = &uncond {
            set.pixels.extend_from_slice(&u.pixels);
            set.n += u.n;
        }
        let mut rows = Vec::new();
        for (name, group) in [("lowest", &lowest), ("highest", &highest)] {
            if uncond.is_some() {
                rows.push(Row {
                    label: "uncond".into(),
                    cells: group.iter().map(|s| Some(off + s.index)).collect(),
                    space_above: name == "highest",
                    notes: vec![],
                });
            }
            rows.push(Row {
                label: name.into(),
                cells: group.iter().map(|s| Some(s.index)).collect(),
                space_above: name == "highest" && uncond.is_none(),
                notes: group.iter().map(|s| format!("{:.2}", s.msp)).collect(),
            });
        }
        labelled_grid(
            &ctx.out_dir().join("figure.png"),
            &set,
            &rows,
            &[],
            p.scale.get(),
        )?;
        write_json(
            &ctx.out_dir().join("figure.json"),
            &Confidence {
                temperature: p.temperature,
                clusters: head.config.clusters,
                samples: sum,
                condition_agreement,
                reference,
                lowest,
                highest,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_bins_and_quantiles() {
        let v: Vec<f64> = (0..10).map(|i| i as f64 / 10.0 + 0.05).collect();
        let s = summary(&v, 5);
        assert_eq!(s.histogram, vec![2, 2, 2, 2, 2]);
        assert!((s.mean - 0.5).abs() < 1e-12);
        for (q, want) in s.quantiles.iter().zip([0.05, 0.45, 0.85]) {
            assert!((q - want).abs() < 1e-12, "{:?}", s.quantiles);
        }
        assert_eq!(summary(&[1.0], 4).histogram, vec![0, 0, 0, 1]);
    }
}

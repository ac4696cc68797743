//! `labels/clip`: CLIP zero-shot pseudo-labels (seed §4.4, Supp. E) — a label source for
//! `edm/train` like `cluster/temi` and `cluster/kmeans`.
//!
//! Each class name is put into the prompt templates (default: the seed's five, `a photo of a
//! <label>`, `a blurry photo of a <label>`, `a photo of many <label>`, `a photo of the large
//! <label>`, `a photo of the small <label>`), tokenised with CLIP's BPE and embedded by the text
//! tower; a class's embedding is the mean of its prompts' normalised embeddings, renormalised
//! (OpenCLIP `build_zero_shot_classifier`). An image's label is the class of largest cosine
//! similarity to its normalised image embedding. Models are OpenCLIP's ViTs (ViT-B-32 …
//! ViT-bigG-14, the seed's CLIP labeller) from their official checkpoints' key names.
//!
//! Outputs: `clusters.safetensors` (the class index per image, as the cluster kinds write it,
//! remapped to the used classes), `metrics.json` (C = classes, C_u, KL(U‖p)),
//! `classes.json` (names, prompts, images per class), `scores.safetensors` (`similarity`:
//! each image's cosine to its class, float32 `[N]`; `classifier`: the class embeddings
//! `[K, D]`).

use std::path::Path;

use cedm_engine::{
    BatchDefaults, FileParam, Kind, NodeError, ParamError, Resources, RunContext, Slot, rules,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::artifacts::clusters::Clusters;
use crate::artifacts::images::ImageSet;
use crate::artifacts::safetensors::Writer;
use crate::artifacts::write_json;
use crate::device::{compute_for, to_host};
use crate::encoders::clip::{Arch, ClipImage, clip_config};
use crate::encoders::extract;
use crate::models::clip::{Clip, ClipTokenizer, normalize_rows, zero_shot_classifier};
use crate::models::weights::Weights;

/// Params of `labels/clip`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// OpenCLIP model name: `ViT-B-32`, `ViT-B-16`, `ViT-L-14`, `ViT-H-14`, `ViT-g-14`,
    /// `ViT-bigG-14` (each also `-quickgelu`), or `custom` with `arch`. Required.
    pub model: String,
    /// The OpenCLIP checkpoint (`open_clip_pytorch_model.bin`, `.pt` or `.safetensors`).
    /// Required.
    pub weights: String,
    /// CLIP's BPE vocabulary, `bpe_simple_vocab_16e6.txt.gz` as OpenCLIP ships it
    /// (scripts/fetch_assets.sh puts it in assets/clip/). Required.
    pub vocabulary: String,
    /// Architecture for `model: custom`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// The class names, in label order. Required.
    pub classes: Vec<String>,
    /// Prompt templates, `{}` standing for the class name. Default: the seed's five.
    #[serde(default = "d_prompts")]
    pub prompts: Vec<String>,
    /// Images per batch. Default: 32.
    #[serde(default = "d_batch")]
    pub batch_size: usize,
}

fn d_prompts() -> Vec<String> {
    [
        "a photo of a {}",
        "a blurry photo of a {}",
        "a photo of many {}",
        "a photo of the large {}",
        "a photo of the small {}",
    ]
    .map(String::from)
    .to_vec()
}
fn d_batch() -> usize {
    32
}

/// The `labels/clip` kind.
pub struct LabelsClip;

impl Kind for LabelsClip {
    const KIND: &'static str = "labels/clip";
    const VERSION: u32 = 1;
    const ABOUT: &'static str = "CLIP zero-shot pseudo-labels (OpenCLIP ViT towers, BPE tokenizer, the seed's five-prompt ensemble): a label source for edm/train";
    const INPUTS: &'static [Slot] = &[Slot::one("images", "the images to label (data/*)")];
    type Params = Params;

    fn validate(p: &Params) -> Vec<ParamError> {
        let mut v = Vec::new();
        if let Err(m) = clip_config(&p.model, p.arch.as_ref()) {
            v.push(ParamError::invalid("model", m));
        }
        if p.classes.is_empty() {
            v.push(ParamError::invalid(
                "classes",
                "needs at least one class name",
            ));
        }
        if p.prompts.is_empty() || p.prompts.iter().any(|t| !t.contains("{}")) {
            v.push(ParamError::invalid(
                "prompts",
                "needs at least one template, each with `{}` for the class name",
            ));
        }
        v.extend(rules::at_most("classes", p.classes.len(), 1 << 16));
        v.extend(rules::product_at_most(
            &[("classes", p.classes.len()), ("prompts", p.prompts.len())],
            1 << 20,
        ));
        v.extend(rules::at_least("batch_size", p.batch_size, 1));
        v.extend(rules::at_most("batch_size", p.batch_size, 1 << 16));
        v
    }

    fn files(p: &Params) -> Vec<FileParam> {
        vec![
            FileParam::new("weights", &p.weights),
            FileParam::new("vocabulary", &p.vocabulary),
        ]
    }

    fn resources(_: &Params) -> Resources {
        // An estimate (a CLIP ViT-B, both towers); the measured peak replaces it on the next run.
        Resources::gpu_shared(3072)
    }

    fn batch_defaults() -> BatchDefaults {
        BatchDefaults::new(8, 32, 240)
    }

    fn run(&self, p: Params, ctx: &mut RunContext<'_>) -> Result<(), NodeError> {
        let cfg = clip_config(&p.model, p.arch.as_ref()).map_err(NodeError::msg)?;
        let set = ImageSet::read(ctx.require("images")?)?;
        let comp = compute_for(ctx)?;
        let dev = comp.device().clone();
        let tok = ClipTokenizer::load(Path::new(&p.vocabulary), cfg.context)?;
        let mut w = Weights::load(Path::new(&p.weights))?;
        let model = Clip::load(&cfg, &mut w, &dev)?;
        let d = cfg.embed_dim;
        // The class embeddings: every class through every prompt, a few hundred texts a batch.
        let texts: Vec<Vec<u32>> = p
            .classes
            .iter()
            .flat_map(|c| p.prompts.iter().map(move |t| t.replace("{}", c)))
            .map(|s| tok.tokenize(&s))
            .collect();
        if let Some(bad) = texts.iter().flatten().find(|&&id| id as usize >= cfg.vocab) {
            return Err(NodeError::msg(format!(
                "token id {bad} outside the model's vocabulary of {}: the vocabulary file does not belong to these weights",
                cfg.vocab
            )));
        }
        let mut text_emb = Vec::with_capacity(texts.len() * d);
        for chunk in texts.chunks(256) {
            text_emb.extend(to_host(model.encode_text(chunk))?);
        }
        let classifier = zero_shot_classifier(&text_emb, p.classes.len(), p.prompts.len(), d);
        ctx.log(format!(
            "{} on {}: {} classes × {} prompts, {} images → {} px",
            p.model,
            comp.describe(),
            p.classes.len(),
            p.prompts.len(),
            set.n,
            cfg.image_size
        ));
        let enc = ClipImage {
            model: &model,
            device: dev.clone(),
            desc: comp.describe(),
        };
        let mut img = extract(ctx, &set, p.batch_size, &enc)?.data;
        normalize_rows(&mut img, d);
        let k = p.classes.len();
        let (mut labels, mut sims) = (Vec::with_capacity(set.n), Vec::with_capacity(set.n));
        for row in img.chunks(d) {
            let (best, s) = (0..k)
                .map(|c| {
                    let s: f32 = row
                        .iter()
                        .zip(&classifier[c * d..(c + 1) * d])
                        .map(|(a, b)| a * b)
                        .sum();
                    (c, s)
                })
                .fold((0, f32::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
            labels.push(best as i64);
            sims.push(s);
        }
        let clusters = Clusters { c: k, raw: labels };
        clusters.write(ctx.out_dir())?;
        let stats = clusters.stats();
        let mut counts = vec![0usize; k];
        for &l in &clusters.raw {
            counts[l as usize] += 1;
        }
        ctx.log(format!(
            "{} of {} classes used; KL(U‖p) {:.3}",
            stats.used_clusters, k, stats.kl_uniform
        ));
        write_json(&ctx.out_dir().join("metrics.json"), &stats)?;
        write_json(
            &ctx.out_dir().join("classes.json"),
            &serde_json::json!({"classes": p.classes, "prompts": p.prompts, "images_per_class": counts}),
        )?;
        Writer::new()
            .put("similarity", &[sims.len()], &sims)
            .put("classifier", &[k, d], &classifier)
            .write(&ctx.out_dir().join("scores.safetensors"))
    }
}

//! CLIP's image and text towers as OpenCLIP builds them (Radford et al. 2021; Cherti et al.
//! 2023; reference: mlfoundations/open_clip `transformer.py` `VisionTransformer` and
//! `TextTransformer`, `model.py` `CLIP.encode_image` / `encode_text`), loading OpenCLIP's
//! checkpoint key names, and CLIP's BPE tokenizer (`tokenizer.py` `SimpleTokenizer`).
//!
//! Vision: `conv1` (no bias) patches → class token prepended → `positional_embedding` →
//! `ln_pre` → pre-norm blocks → `ln_post` → the class token → `@ proj`. Text: token embedding +
//! `positional_embedding` → blocks under a causal mask → `ln_final` → the end-of-text token
//! (the largest id: `text.argmax(-1)`) → `@ text_projection`. Blocks are the ViT block of
//! [`super::vit`] (`ln_1`, `attn.in_proj_*`, `attn.out_proj`, `ln_2`, `mlp.c_fc`, `mlp.c_proj`),
//! LayerNorm ε 1e-5 (PyTorch's default, which OpenCLIP keeps), GELU or, for OpenAI's weights,
//! QuickGELU.

use std::io::BufRead;
use std::path::Path;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};
use cedm_engine::NodeError;
use instant_clip_tokenizer::Tokenizer;

use super::vit::Block;
use super::weights::{Weights, WeightsError, tensor};

/// One tower's transformer.
#[derive(Clone, Debug, PartialEq)]
pub struct TowerConfig {
    /// Width.
    pub width: usize,
    /// Blocks.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP width (`int(width · mlp_ratio)`).
    pub mlp: usize,
}

/// A CLIP model's architecture (OpenCLIP's `model_configs/*.json`).
#[derive(Clone, Debug, PartialEq)]
pub struct ClipConfig {
    /// Joint embedding dimension.
    pub embed_dim: usize,
    /// Input side.
    pub image_size: usize,
    /// Patch size.
    pub patch: usize,
    /// The image tower.
    pub vision: TowerConfig,
    /// The text tower.
    pub text: TowerConfig,
    /// Context length (77).
    pub context: usize,
    /// Vocabulary size (49 408).
    pub vocab: usize,
    /// QuickGELU (OpenAI's weights) instead of GELU.
    pub quick_gelu: bool,
}

fn tower(width: usize, layers: usize, head_width: usize, mlp_ratio: f64) -> TowerConfig {
    TowerConfig {
        width,
        layers,
        heads: width / head_width,
        mlp: (width as f64 * mlp_ratio) as usize,
    }
}

impl ClipConfig {
    fn vit(embed: usize, patch: usize, vision: TowerConfig, text: TowerConfig) -> ClipConfig {
        ClipConfig {
            embed_dim: embed,
            image_size: 224,
            patch,
            vision,
            text,
            context: 77,
            vocab: 49408,
            quick_gelu: false,
        }
    }

    /// A preset by OpenCLIP's model name (`ViT-B-32`, `ViT-B-16`, `ViT-L-14`, `ViT-H-14`,
    /// `ViT-g-14`, `ViT-bigG-14`; a `-quickgelu` suffix selects QuickGELU as OpenCLIP does).
    pub fn preset(name: &str) -> Option<ClipConfig> {
        let (base, quick) = match name.strip_suffix("-quickgelu") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let t512 = tower(512, 12, 64, 4.0);
        let mut c = match base {
            "ViT-B-32" => Self::vit(512, 32, tower(768, 12, 64, 4.0), t512),
            "ViT-B-16" => Self::vit(512, 16, tower(768, 12, 64, 4.0), t512),
            "ViT-L-14" => Self::vit(768, 14, tower(1024, 24, 64, 4.0), tower(768, 12, 64, 4.0)),
            "ViT-H-14" => Self::vit(1024, 14, tower(1280, 32, 80, 4.0), tower(1024, 24, 64, 4.0)),
            "ViT-g-14" => Self::vit(
                1024,
                14,
                tower(1408, 40, 88, 4.3637),
                tower(1024, 24, 64, 4.0),
            ),
            "ViT-bigG-14" => Self::vit(
                1280,
                14,
                tower(1664, 48, 104, 4.9231),
                tower(1280, 32, 64, 4.0),
            ),
            _ => return None,
        };
        c.quick_gelu = quick;
        Some(c)
    }

    /// Names accepted by [`ClipConfig::preset`] (each also with `-quickgelu`).
    pub const PRESETS: [&'static str; 6] = [
        "ViT-B-32",
        "ViT-B-16",
        "ViT-L-14",
        "ViT-H-14",
        "ViT-g-14",
        "ViT-bigG-14",
    ];

    fn grid(&self) -> usize {
        self.image_size / self.patch
    }
}

/// CLIP's two towers.
#[derive(Debug)]
pub struct Clip {
    conv1: Conv2d,
    class_embedding: Param<Tensor<3>>,
    vis_pos: Param<Tensor<3>>,
    ln_pre: LayerNorm,
    vis_blocks: Vec<Block>,
    ln_post: LayerNorm,
    proj: Param<Tensor<2>>,
    token_embedding: Param<Tensor<2>>,
    txt_pos: Param<Tensor<3>>,
    txt_blocks: Vec<Block>,
    ln_final: LayerNorm,
    text_projection: Param<Tensor<2>>,
    config: ClipConfig,
}

fn linear(
    w: &Weights,
    name: &str,
    din: usize,
    dout: usize,
    dev: &Device,
) -> Result<Linear, WeightsError> {
    linear_named(
        w,
        &format!("{name}.weight"),
        &format!("{name}.bias"),
        din,
        dout,
        dev,
    )
}

fn linear_named(
    w: &Weights,
    wname: &str,
    bname: &str,
    din: usize,
    dout: usize,
    dev: &Device,
) -> Result<Linear, WeightsError> {
    let wt = w.values(wname, &[dout, din])?;
    // PyTorch [out, in] → burn [in, out].
    let mut t = vec![0f32; din * dout];
    for o in 0..dout {
        for i in 0..din {
            t[i * dout + o] = wt[o * din + i];
        }
    }
    let mut l = LinearConfig::new(din, dout).init(dev);
    l.weight = Param::from_tensor(tensor(t, [din, dout], dev));
    l.bias = Some(Param::from_tensor(w.tensor(bname, [dout], dev)?));
    Ok(l)
}

fn layer_norm(w: &Weights, name: &str, d: usize, dev: &Device) -> Result<LayerNorm, WeightsError> {
    let mut l = LayerNormConfig::new(d).with_epsilon(1e-5).init(dev);
    l.gamma = Param::from_tensor(w.tensor(&format!("{name}.weight"), [d], dev)?);
    l.beta = Some(Param::from_tensor(w.tensor(
        &format!("{name}.bias"),
        [d],
        dev,
    )?));
    Ok(l)
}

fn blocks(
    w: &Weights,
    prefix: &str,
    t: &TowerConfig,
    causal: bool,
    quick: bool,
    dev: &Device,
) -> Result<Vec<Block>, WeightsError> {
    let d = t.width;
    (0..t.layers)
        .map(|i| {
            let p = format!("{prefix}transformer.resblocks.{i}");
            Ok(Block::from_parts(
                layer_norm(w, &format!("{p}.ln_1"), d, dev)?,
                linear_named(
                    w,
                    &format!("{p}.attn.in_proj_weight"),
                    &format!("{p}.attn.in_proj_bias"),
                    d,
                    3 * d,
                    dev,
                )?,
                linear(w, &format!("{p}.attn.out_proj"), d, d, dev)?,
                t.heads,
                causal,
                layer_norm(w, &format!("{p}.ln_2"), d, dev)?,
                linear(w, &format!("{p}.mlp.c_fc"), d, t.mlp, dev)?,
                linear(w, &format!("{p}.mlp.c_proj"), t.mlp, d, dev)?,
                quick,
            ))
        })
        .collect()
}

impl Clip {
    /// Load an OpenCLIP checkpoint (`open_clip_pytorch_model.bin`, `.pt`, `.safetensors`; a
    /// `state_dict.` or `module.` wrapper is removed).
    ///
    /// # Errors
    /// A missing key or a shape mismatch, naming the file and key.
    pub fn load(config: &ClipConfig, w: &mut Weights, dev: &Device) -> Result<Clip, WeightsError> {
        w.unwrap_checkpoint();
        let (v, t) = (&config.vision, &config.text);
        let g = config.grid();
        let mut conv1 = Conv2dConfig::new([3, v.width], [config.patch, config.patch])
            .with_stride([config.patch, config.patch])
            .with_bias(false)
            .init(dev);
        conv1.weight = Param::from_tensor(w.tensor(
            "visual.conv1.weight",
            [v.width, 3, config.patch, config.patch],
            dev,
        )?);
        Ok(Clip {
            conv1,
            class_embedding: Param::from_tensor(
                w.tensor::<1>("visual.class_embedding", [v.width], dev)?
                    .reshape([1, 1, v.width]),
            ),
            vis_pos: Param::from_tensor(
                w.tensor::<2>("visual.positional_embedding", [g * g + 1, v.width], dev)?
                    .reshape([1, g * g + 1, v.width]),
            ),
            ln_pre: layer_norm(w, "visual.ln_pre", v.width, dev)?,
            vis_blocks: blocks(w, "visual.", v, false, config.quick_gelu, dev)?,
            ln_post: layer_norm(w, "visual.ln_post", v.width, dev)?,
            proj: Param::from_tensor(w.tensor("visual.proj", [v.width, config.embed_dim], dev)?),
            token_embedding: Param::from_tensor(w.tensor(
                "token_embedding.weight",
                [config.vocab, t.width],
                dev,
            )?),
            txt_pos: Param::from_tensor(
                w.tensor::<2>("positional_embedding", [config.context, t.width], dev)?
                    .reshape([1, config.context, t.width]),
            ),
            txt_blocks: blocks(w, "", t, true, config.quick_gelu, dev)?,
            ln_final: layer_norm(w, "ln_final", t.width, dev)?,
            text_projection: Param::from_tensor(w.tensor(
                "text_projection",
                [t.width, config.embed_dim],
                dev,
            )?),
            config: config.clone(),
        })
    }

    /// The architecture.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Image embeddings (not normalised), as `encode_image`.
    ///
    /// # Shapes
    /// `[b, 3, s, s]` (CLIP-normalised, s = the config's image size) → `[b, embed_dim]`
    pub fn encode_image(&self, x: Tensor<4>) -> Tensor<2> {
        let [b, _, _, _] = x.dims();
        let t = self.conv1.forward(x); // [b, w, g, g]
        let [_, d, gh, gw] = t.dims();
        let t = t.reshape([b, d, gh * gw]).swap_dims(1, 2);
        let cls = self.class_embedding.val().expand([b, 1, d]);
        let mut t = self
            .ln_pre
            .forward(Tensor::cat(vec![cls, t], 1) + self.vis_pos.val());
        for blk in &self.vis_blocks {
            t = blk.forward(t);
        }
        let pooled = self.ln_post.forward(t).narrow(1, 0, 1).reshape([b, d]);
        pooled.matmul(self.proj.val())
    }

    /// Text embeddings (not normalised), as `encode_text`.
    ///
    /// # Shapes
    /// `tokens`: `[b, context]` ids → `[b, embed_dim]`
    pub fn encode_text(&self, tokens: &[Vec<u32>]) -> Tensor<2> {
        let dev = self.token_embedding.val().device();
        let b = tokens.len();
        let n = self.config.context;
        let w = self.config.text.width;
        let flat: Vec<i64> = tokens
            .iter()
            .flat_map(|t| t.iter().map(|&v| v as i64))
            .collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(flat, [b * n]), &dev);
        let mut x =
            self.token_embedding.val().select(0, ids).reshape([b, n, w]) + self.txt_pos.val();
        for blk in &self.txt_blocks {
            x = blk.forward(x);
        }
        let x = self.ln_final.forward(x);
        // The end-of-text token: the largest id in each row (first occurrence).
        let eot: Vec<i64> = tokens
            .iter()
            .enumerate()
            .map(|(r, t)| {
                let (k, _) = t
                    .iter()
                    .enumerate()
                    .fold((0, 0u32), |a, (i, &v)| if v > a.1 { (i, v) } else { a });
                (r * n + k) as i64
            })
            .collect();
        let idx = Tensor::<1, Int>::from_data(TensorData::new(eot, [b]), &dev);
        x.reshape([b * n, w])
            .select(0, idx)
            .matmul(self.text_projection.val())
    }
}

/// CLIP's mean and std (OpenCLIP `OPENAI_DATASET_MEAN` / `_STD`) as the affine map of uint8
/// pixels: `x · scale + offset`.
pub fn clip_norm() -> ([f32; 3], [f32; 3]) {
    let mean = [0.481_454_66f32, 0.457_827_5, 0.408_210_73];
    let std = [0.268_629_54f32, 0.261_302_6, 0.275_777_1];
    (
        [0, 1, 2].map(|c| 1.0 / (255.0 * std[c])),
        [0, 1, 2].map(|c| -mean[c] / std[c]),
    )
}

/// CLIP's tokenizer: OpenCLIP's `SimpleTokenizer` cleaning (HTML entities unescaped twice, the
/// `ftfy` repairs that apply to well-formed text — curly quotes straightened, ligatures and
/// full-width forms folded —, whitespace collapsed, lower case) and byte-level BPE over the
/// vocabulary file OpenCLIP ships (`bpe_simple_vocab_16e6.txt.gz`) through the
/// `instant-clip-tokenizer` crate; `<start_of_text>` … `<end_of_text>`, cut to the context
/// length with the last token kept as end-of-text, zero-padded.
pub struct ClipTokenizer {
    inner: Tokenizer,
    context: usize,
}

impl ClipTokenizer {
    /// Load the vocabulary (`.txt` or `.txt.gz`).
    ///
    /// # Errors
    /// An unreadable or malformed file.
    pub fn load(path: &Path, context: usize) -> Result<ClipTokenizer, NodeError> {
        let bad =
            |e: std::io::Error| NodeError::msg(format!("CLIP vocabulary {}: {e}", path.display()));
        let f = std::fs::File::open(path).map_err(bad)?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|e| e == "gz") {
            Box::new(std::io::BufReader::new(flate2::read::GzDecoder::new(f)))
        } else {
            Box::new(std::io::BufReader::new(f))
        };
        let inner = Tokenizer::with_vocabulary(reader, 49408).map_err(bad)?;
        if context < 2 {
            return Err(NodeError::msg("a CLIP context needs at least 2 tokens"));
        }
        Ok(ClipTokenizer { inner, context })
    }

    /// The ids of one text, `[context]`.
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut toks = Vec::new();
        self.inner.encode(&clean(text), &mut toks);
        let mut ids = vec![u32::from(self.inner.start_of_text().to_u16())];
        ids.extend(toks.into_iter().map(|t| u32::from(t.to_u16())));
        ids.push(u32::from(self.inner.end_of_text().to_u16()));
        if ids.len() > self.context {
            ids.truncate(self.context);
            ids[self.context - 1] = u32::from(self.inner.end_of_text().to_u16());
        }
        ids.resize(self.context, 0);
        ids
    }
}

/// `html.unescape` for the entities text carries (named basics and numeric ones).
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest[1..].find(';').map(|j| j + 1).filter(|&j| j <= 10);
        let rep = end.and_then(|j| {
            let ent = &rest[1..j];
            let c = match ent {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => ent
                    .strip_prefix("#x")
                    .or_else(|| ent.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| ent.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, j + 1))
        });
        match rep {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The cleaning before BPE: `whitespace_clean(basic_clean(text)).lower()` as OpenCLIP.
fn clean(text: &str) -> String {
    let s = unescape(&unescape(text));
    let mut fixed = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            // ftfy.uncurl_quotes
            '\u{2018}' | '\u{2019}' | '\u{201a}' | '\u{201b}' => fixed.push('\''),
            '\u{201c}' | '\u{201d}' | '\u{201e}' | '\u{201f}' => fixed.push('"'),
            // ftfy.fix_latin_ligatures
            '\u{fb00}' => fixed.push_str("ff"),
            '\u{fb01}' => fixed.push_str("fi"),
            '\u{fb02}' => fixed.push_str("fl"),
            '\u{fb03}' => fixed.push_str("ffi"),
            '\u{fb04}' => fixed.push_str("ffl"),
            // ftfy.fix_character_width: full-width ASCII forms and the ideographic space
            '\u{ff01}'..='\u{ff5e}' => {
                fixed.push(char::from_u32(c as u32 - 0xfee0).unwrap_or(c));
            }
            '\u{3000}' => fixed.push(' '),
            c => fixed.push(c),
        }
    }
    fixed.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// L2-normalise each row of `[n, d]` in place.
pub fn normalize_rows(v: &mut [f32], d: usize) {
    for r in v.chunks_mut(d.max(1)) {
        let n = r.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
        r.iter_mut().for_each(|x| *x /= n);
    }
}

/// The zero-shot classifier (OpenCLIP `build_zero_shot_classifier`, zero_shot_classifier.py):
/// for each class, the mean of its prompts' normalised text embeddings, renormalised. `text`
/// is `[classes · prompts, d]`, class-major; returns `[classes, d]`.
pub fn zero_shot_classifier(text: &[f32], classes: usize, prompts: usize, d: usize) -> Vec<f32> {
    let mut t = text.to_vec();
    normalize_rows(&mut t, d);
    let mut out = vec![0f32; classes * d];
    for c in 0..classes {
        for p in 0..prompts {
            let row = &t[(c * prompts + p) * d..(c * prompts + p + 1) * d];
            out[c * d..(c + 1) * d]
                .iter_mut()
                .zip(row)
                .for_each(|(o, x)| *o += x / prompts as f32);
        }
    }
    normalize_rows(&mut out, d);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning_unescapes_twice_and_collapses_whitespace() {
        assert_eq!(clean("  a &amp;amp; b\t\n c "), "a & b c");
        assert_eq!(
            clean("&lt;x&gt; &#39;q&#x27; &bogus; &"),
            "<x> 'q' &bogus; &"
        );
        assert_eq!(clean("\u{201c}ﬁne\u{201d}　ＡＢ"), "\"fine\" AB");
    }
}

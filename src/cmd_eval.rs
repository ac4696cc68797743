//! `cedm eval A B --metrics fid,kid,prdc,fd:mobilenet_v2`: sample-quality metrics between two
//! sets outside any experiment, like torch-fidelity's and dgm-eval's command lines. A is the
//! generated set, B the reference. Each may be images (a folder or .zip of PNG/JPEG, an
//! images.safetensors, an IDX file), precomputed features (`.npy` or `.safetensors` [N, D]) or,
//! for Fréchet distances only, statistics (`.npz` with mu/sigma, `stats.safetensors`). Each
//! encoder runs at most once per image set, whatever the number of metrics on it. The numbers
//! are the ones the `metrics/*` kinds compute (the same functions, the same defaults).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cedm_nodes::algorithms::frechet::bias_corrected_interval;
use cedm_nodes::algorithms::frechet::{PreparedReference, bootstrap_mean};
use cedm_nodes::algorithms::kid::{KidBootstrap, PolyKernel, mean_std_population, subset_mmds};
use cedm_nodes::algorithms::prdc::prdc;
use cedm_nodes::artifacts::features::{Features, distance_name_of};
use cedm_nodes::artifacts::safetensors::Tensors;
use cedm_nodes::artifacts::stats::Stats;
use cedm_nodes::datasets::load_images;
use cedm_nodes::device::compute;
use cedm_nodes::encoders::clip::{ClipImageOwned, clip_config};
use cedm_nodes::encoders::inception::{FidResize, Inception};
use cedm_nodes::encoders::mobilenet_v2::MobileNetV2;
use cedm_nodes::encoders::vit::{Vit, config};
use cedm_nodes::encoders::{Encoder, extract_batches};
use cedm_nodes::kernels::imageops::Filter;
use cedm_nodes::kinds::metrics::kid::BOOTSTRAP_MAX_FLOATS;
use rayon::prelude::*;
use serde::Serialize;

use crate::cli::EvalArgs;
use crate::{CliError, outln};

/// One requested metric.
#[derive(Clone, Debug, PartialEq)]
enum Metric {
    /// Fréchet distance on an encoder (`fid` = `fd:inception`, `fdd` = `fd:dinov2_vitl14`).
    Fd(String),
    /// KID on an encoder (default Inception, as torch-fidelity).
    Kid(String),
    /// Precision/recall (k 3) and density/coverage (k 5) on an encoder (default Inception).
    Prdc(String),
}

impl Metric {
    fn encoder(&self) -> &str {
        match self {
            Metric::Fd(e) | Metric::Kid(e) | Metric::Prdc(e) => e,
        }
    }
}

/// Parse `--metrics`: a comma list of `fid`, `fdd`, `fd:ENC`, `kid[:ENC]`, `prdc[:ENC]`.
fn parse_metrics(s: &str) -> Result<Vec<Metric>, CliError> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (name, enc) = match item.split_once(':') {
            Some((n, e)) => (n, Some(e.to_string())),
            None => (item, None),
        };
        let inception = || "inception".to_string();
        let m = match (name, enc) {
            ("fid", None) => Metric::Fd(inception()),
            ("fdd", None) => Metric::Fd("dinov2_vitl14".into()),
            ("fd", Some(e)) => Metric::Fd(e),
            ("kid", e) => Metric::Kid(e.unwrap_or_else(inception)),
            ("prdc", e) => Metric::Prdc(e.unwrap_or_else(inception)),
            ("fd", None) => {
                return Err(CliError::Usage(
                    "`fd` needs an encoder: fd:inception, fd:mobilenet_v2, fd:dinov2_vitl14, …"
                        .into(),
                ));
            }
            _ => {
                return Err(CliError::Usage(format!(
                    "unknown metric `{item}`: expected fid, fdd, fd:ENCODER, kid[:ENCODER] or prdc[:ENCODER] (ENCODER: inception, mobilenet_v2, a ViT preset such as dinov2_vitl14, or clip[:OPENCLIP_MODEL])"
                )));
            }
        };
        let e = m.encoder();
        if let Some(model) = clip_model(e) {
            if model != "custom" {
                clip_config(model, None).map_err(|msg| {
                    CliError::Usage(format!("metric `{item}`: encoder `{e}`: {msg}"))
                })?;
            }
        } else if e != "inception" && e != "mobilenet_v2" && e != "custom" {
            config(e, None).map_err(|msg| {
                CliError::Usage(format!("metric `{item}`: unknown encoder `{e}` ({msg})"))
            })?;
        }
        if !out.contains(&m) {
            out.push(m);
        }
    }
    if out.is_empty() {
        return Err(CliError::Usage("--metrics is empty".into()));
    }
    Ok(out)
}

/// The OpenCLIP model an encoder name asks for: `clip` (ViT-L-14, dgm-eval's CLIP) or
/// `clip:MODEL` (an OpenCLIP preset such as ViT-B-32); None for other encoders.
fn clip_model(enc: &str) -> Option<&str> {
    match enc {
        "clip" => Some("ViT-L-14"),
        e => e.strip_prefix("clip:"),
    }
}

/// The `--arch ENCODER=FILE` architecture of `name`, parsed from its JSON file (None when not
/// given).
fn arch_of<T: serde::de::DeserializeOwned>(
    a: &EvalArgs,
    name: &str,
) -> Result<Option<T>, CliError> {
    let Some(file) = a
        .arch
        .iter()
        .filter_map(|w| w.split_once('='))
        .find_map(|(k, v)| (k == name).then_some(v))
    else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(file)
        .map_err(|e| CliError::Input(format!("--arch {name}={file}: {e}")))?;
    serde_json::from_str(&text).map(Some).map_err(|e| {
        CliError::Input(format!(
            "--arch {name}={file}: not the encoder's `arch` (docs/nodes.md): {e}"
        ))
    })
}

/// The default weights file of an encoder, looked up in `$CEDM_ASSETS/weights`, then
/// `./assets/weights`, then `assets/weights` beside the binary's repository (a `cargo build`
/// puts the binary in `target/<profile>/`).
pub fn default_weights(file: &str) -> Option<PathBuf> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Some(a) = std::env::var_os("CEDM_ASSETS") {
        roots.push(PathBuf::from(a));
    }
    roots.push(PathBuf::from("assets"));
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(|p| p.join("assets")));
    }
    roots
        .into_iter()
        .map(|r| r.join("weights").join(file))
        .find(|p| p.is_file())
}

/// One side's input.
enum Input {
    Images(cedm_nodes::artifacts::images::ImageSet),
    Features(Features),
    Stats(Stats),
}

fn input_err(e: cedm_engine::NodeError) -> CliError {
    CliError::Input(e.to_string())
}

fn read_input(path: &Path, limit: Option<usize>) -> Result<Input, CliError> {
    cedm_engine::FileKind::FileOrDir
        .check(path)
        .map_err(CliError::Input)?;
    // By content, not by name: cache objects have no extension.
    if path.is_file() {
        let mut magic = [0u8; 6];
        let n = std::fs::File::open(path)
            .and_then(|mut f| std::io::Read::read(&mut f, &mut magic))
            .unwrap_or(0);
        if n == 6 && &magic == b"\x93NUMPY" {
            let f = Features::read_npy(path).map_err(input_err)?;
            return Ok(Input::Features(take(f, limit)));
        }
        if path.to_string_lossy().ends_with(".npz") {
            return Ok(Input::Stats(Stats::read(path).map_err(input_err)?));
        }
        if let Ok(t) = Tensors::open(path) {
            let names = t.names();
            if names.iter().any(|s| s == "sigma") {
                return Ok(Input::Stats(Stats::read(path).map_err(input_err)?));
            }
            if names.iter().any(|s| s == "features") {
                let f = Features::read_file(path).map_err(input_err)?;
                return Ok(Input::Features(take(f, limit)));
            }
            if names.iter().any(|s| s == "images") {
                let set =
                    cedm_nodes::artifacts::images::ImageSet::read_file(path).map_err(input_err)?;
                return Ok(Input::Images(set.subset(limit, None)));
            }
        }
    }
    Ok(Input::Images(
        load_images(path).map_err(input_err)?.subset(limit, None),
    ))
}

fn take(f: Features, limit: Option<usize>) -> Features {
    match limit {
        Some(l) if l < f.n => Features {
            n: l,
            d: f.d,
            data: f.data[..l * f.d].to_vec(),
        },
        _ => f,
    }
}

/// A loaded encoder by name.
fn load_encoder(a: &EvalArgs, name: &str) -> Result<Box<dyn Encoder>, CliError> {
    let given: BTreeMap<&str, &str> = a.weights.iter().filter_map(|w| w.split_once('=')).collect();
    let (default, hint) = match name {
        "inception" => (
            Some("inception-2015-12-05.safetensors"),
            "run scripts/fetch_assets.sh",
        ),
        "mobilenet_v2" => (
            Some("mobilenet_v2-b0353104.pth"),
            "run scripts/fetch_assets.sh",
        ),
        _ => (None, "give the official checkpoint"),
    };
    let w = match given.get(name) {
        Some(p) => PathBuf::from(p),
        None => default.and_then(default_weights).ok_or_else(|| {
            CliError::Input(format!(
                "no weights for `{name}`: {hint}, set CEDM_ASSETS, or pass --weights {name}=PATH"
            ))
        })?,
    };
    cedm_engine::FileKind::File
        .check(&w)
        .map_err(CliError::Input)?;
    let comp = compute(a.device).map_err(input_err)?;
    if let Some(model) = clip_model(name) {
        let arch: Option<cedm_nodes::encoders::clip::Arch> = arch_of(a, name)?;
        if model == "custom" && arch.is_none() {
            return Err(CliError::Usage(format!(
                "encoder `{name}`: `model: custom` needs `arch` (--arch {name}=FILE.json)"
            )));
        }
        return Ok(Box::new(
            ClipImageOwned::load(model, arch.as_ref(), &w, &comp).map_err(input_err)?,
        ));
    }
    Ok(match name {
        "inception" => {
            Box::new(Inception::load(&w, &comp, FidResize::TfBilinear).map_err(input_err)?)
        }
        "mobilenet_v2" => Box::new(
            MobileNetV2::load(&w, &comp, a.resolution, Filter::Bilinear).map_err(input_err)?,
        ),
        vit => {
            let arch: Option<cedm_nodes::encoders::vit::Arch> = arch_of(a, vit)?;
            if vit == "custom" && arch.is_none() {
                return Err(CliError::Usage(
                    "encoder `custom` needs its architecture: --arch custom=FILE.json".into(),
                ));
            }
            Box::new(
                Vit::load(vit, arch.as_ref(), &w, None, &comp, 224, Filter::Bicubic)
                    .map_err(input_err)?,
            )
        }
    })
}

/// A side's features for an encoder: embedded once per encoder, or the given features.
fn side_features<'a>(
    a: &EvalArgs,
    which: &str,
    input: &Input,
    enc: &str,
    cache: &'a mut BTreeMap<String, Features>,
) -> Result<&'a Features, CliError> {
    if !cache.contains_key(enc) {
        let f = match input {
            Input::Features(f) => f.clone(),
            Input::Stats(_) => {
                return Err(CliError::Usage(format!(
                    "{which} is a statistics file: it serves Fréchet distances only (kid and prdc need features or images)"
                )));
            }
            Input::Images(set) => {
                let e = load_encoder(a, enc)?;
                if !a.json {
                    eprintln!(
                        "{which}: {enc} on {}, {} images {}×{}",
                        e.describe(),
                        set.n,
                        set.h,
                        set.w
                    );
                }
                extract_batches(set, a.batch_size.max(1), e.as_ref(), |_| true)
                    .map_err(input_err)?
            }
        };
        cache.insert(enc.to_string(), f);
    }
    Ok(&cache[enc])
}

/// One result line.
#[derive(Serialize, Debug)]
struct Value {
    /// `FID`, `FD_MobileNetV2`, `KID`, `precision`, …
    metric: String,
    /// The encoder it is on.
    encoder: String,
    value: f64,
    /// Bootstrap interval (Fréchet distances).
    #[serde(skip_serializing_if = "Option::is_none")]
    ci_low: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ci_high: Option<f64>,
    /// KID's std over subsets.
    #[serde(skip_serializing_if = "Option::is_none")]
    std: Option<f64>,
}

fn fd_name(enc: &str) -> String {
    if clip_model(enc).is_some() {
        return distance_name_of("features/clip", None);
    }
    match enc {
        "inception" | "mobilenet_v2" => distance_name_of(&format!("features/{enc}"), None),
        vit => distance_name_of("features/vit", Some(vit)),
    }
}

/// `cedm eval`.
pub fn eval(a: &EvalArgs) -> Result<ExitCode, CliError> {
    let metrics = parse_metrics(&a.metrics)?;
    if !(a.confidence > 0.0 && a.confidence < 1.0) {
        return Err(CliError::Usage(
            "--confidence must be strictly between 0 and 1".into(),
        ));
    }
    for (flag, list, eg) in [
        (
            "weights",
            &a.weights,
            "dinov2_vitl14=dinov2_vitl14_pretrain.pth",
        ),
        ("arch", &a.arch, "clip:custom=arch.json"),
    ] {
        if let Some(w) = list.iter().find(|w| !w.contains('=')) {
            return Err(CliError::Usage(format!(
                "--{flag} {w}: expected ENCODER=PATH (e.g. {eg})"
            )));
        }
    }
    let (ia, ib) = (read_input(&a.a, a.limit)?, read_input(&a.b, a.limit)?);
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    let mut out: Vec<Value> = Vec::new();
    for m in &metrics {
        let enc = m.encoder();
        match m {
            Metric::Fd(_) => {
                let reference = match &ib {
                    Input::Stats(s) => s.clone(),
                    _ => {
                        let f = side_features(a, "B", &ib, enc, &mut fb)?;
                        Stats::from_features(&f.data, f.n, f.d).map_err(input_err)?
                    }
                };
                let prep = PreparedReference::new(&reference);
                let value = match &ia {
                    Input::Stats(s) => {
                        if a.bootstrap > 0 && !a.json {
                            eprintln!("A is a statistics file: no bootstrap interval");
                        }
                        let v = cedm_nodes::algorithms::frechet::frechet_distance(s, &reference)
                            .map_err(input_err)?;
                        (v, None)
                    }
                    _ => {
                        let f = side_features(a, "A", &ia, enc, &mut fa)?;
                        if f.d != reference.d {
                            return Err(CliError::Input(format!(
                                "A's features are {}-d, B's {}-d: the same encoder must embed both",
                                f.d, reference.d
                            )));
                        }
                        let rows: Vec<(usize, u32)> = (0..f.n).map(|i| (i, 1)).collect();
                        let v = prep.distance(&f.data, &rows).map_err(input_err)?;
                        let runs = [0..f.n];
                        let ci = bootstrap_mean(
                            &prep,
                            &f.data,
                            &runs,
                            v,
                            a.bootstrap,
                            a.seed,
                            a.confidence,
                            |_| true,
                        )
                        .map_err(input_err)?;
                        (v, ci)
                    }
                };
                out.push(Value {
                    metric: fd_name(enc),
                    encoder: enc.into(),
                    value: value.0,
                    ci_low: value.1.map(|i| i.low),
                    ci_high: value.1.map(|i| i.high),
                    std: None,
                });
            }
            Metric::Kid(_) | Metric::Prdc(_) => {
                let x = side_features(a, "A", &ia, enc, &mut fa)?.clone();
                let y = side_features(a, "B", &ib, enc, &mut fb)?;
                if x.d != y.d {
                    return Err(CliError::Input(format!(
                        "A's features are {}-d, B's {}-d: the same encoder must embed both",
                        x.d, y.d
                    )));
                }
                if let Metric::Kid(_) = m {
                    let size = a.kid_subset_size;
                    if x.n < size || y.n < size {
                        return Err(CliError::Usage(format!(
                            "--kid-subset-size {size} but the sets have {} and {} items: lower it",
                            x.n, y.n
                        )));
                    }
                    let kernel = PolyKernel {
                        degree: 3,
                        gamma: None,
                        coef0: 1.0,
                    };
                    let mmds =
                        subset_mmds(&x.data, &y.data, x.d, a.kid_subsets, size, kernel, 2020);
                    let (kid, std) = mean_std_population(&mmds);
                    // The interval of metrics/kid: resampled samples, the same subsets.
                    let ci = (a.bootstrap > 0
                        && x.n.saturating_mul(x.n + y.n) <= BOOTSTRAP_MAX_FLOATS)
                        .then(|| {
                            let boot = KidBootstrap::new(
                                &x.data,
                                &y.data,
                                x.d,
                                a.kid_subsets,
                                size,
                                kernel,
                                2020,
                            );
                            let reps: Vec<f64> = (0..a.bootstrap)
                                .into_par_iter()
                                .map(|r| boot.replicate(r))
                                .collect();
                            bias_corrected_interval(&reps, kid, a.confidence)
                        })
                        .flatten();
                    out.push(Value {
                        metric: "KID".into(),
                        encoder: enc.into(),
                        value: kid,
                        ci_low: ci.map(|i| i.low),
                        ci_high: ci.map(|i| i.high),
                        std: Some(std),
                    });
                } else {
                    let p3 = prdc(&y.data, &x.data, x.d, 3);
                    let p5 = prdc(&y.data, &x.data, x.d, 5);
                    for (name, v) in [
                        ("precision", p3.precision),
                        ("recall", p3.recall),
                        ("density", p5.density),
                        ("coverage", p5.coverage),
                    ] {
                        out.push(Value {
                            metric: name.into(),
                            encoder: enc.into(),
                            value: v,
                            ci_low: None,
                            ci_high: None,
                            std: None,
                        });
                    }
                }
            }
        }
    }
    if a.json {
        let v = serde_json::json!({
            "a": a.a.display().to_string(),
            "b": a.b.display().to_string(),
            "confidence": a.confidence,
            "bootstrap": a.bootstrap,
            "metrics": out,
        });
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = out
        .iter()
        .map(|v| {
            // KIDs are often 1e-4: those get three significant digits, not `0.0000`.
            let small = v.value != 0.0 && v.value.abs() < 0.01;
            let digits = if v.value.abs() < 1.0 { 4 } else { 2 };
            let num = |x: f64| {
                if small {
                    format!("{x:.2e}")
                } else {
                    format!("{x:.digits$}")
                }
            };
            let spread = match (v.ci_low, v.ci_high, v.std) {
                (Some(l), Some(h), _) => {
                    format!("{:.0}% CI [{}, {}]", a.confidence * 100.0, num(l), num(h))
                }
                (_, _, Some(s)) => format!("± {} (std over {} subsets)", num(s), a.kid_subsets),
                _ => String::new(),
            };
            [v.metric.clone(), v.encoder.clone(), num(v.value), spread]
        })
        .collect();
    let head = ["metric", "encoder", "value", ""];
    let w: Vec<usize> = (0..4)
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([head[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String; 4]| {
        format!(
            "{:<w0$}  {:<w1$}  {:>w2$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        )
        .trim_end()
        .to_string()
    };
    outln!("{}", line(&head.map(String::from)));
    for r in &rows {
        outln!("{}", line(r));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lists_parse_with_default_encoders_and_reject_unknowns() {
        assert_eq!(
            parse_metrics("fid, kid,prdc:mobilenet_v2,fd:mobilenet_v2,fdd,fid").unwrap(),
            vec![
                Metric::Fd("inception".into()),
                Metric::Kid("inception".into()),
                Metric::Prdc("mobilenet_v2".into()),
                Metric::Fd("mobilenet_v2".into()),
                Metric::Fd("dinov2_vitl14".into()),
            ]
        );
        assert!(parse_metrics("fd").is_err());
        assert!(parse_metrics("fid,bleu").is_err());
        assert!(parse_metrics("fd:resnet9000").is_err());
        assert_eq!(
            parse_metrics("fd:clip,kid:clip:ViT-B-32").unwrap(),
            vec![
                Metric::Fd("clip".into()),
                Metric::Kid("clip:ViT-B-32".into())
            ]
        );
        assert!(parse_metrics("fd:clip:ViT-Z-99").is_err());
        assert_eq!(fd_name("clip:ViT-B-32"), "FD_CLIP");
        assert!(parse_metrics(" , ").is_err());
    }
}

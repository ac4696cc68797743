//! Benchmarks (not tests): cedm's kernels against the reference implementations the paper's
//! code uses (PyTorch, scikit-learn, SciPy), run side by side on the same input. `cedm bench …`
//! renders these; the Python side is a committed script in `benches/` run with the interpreter
//! the user names (one with torch / sklearn / scipy installed).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cedm_engine::NodeError;
use serde::Serialize;

/// One measured implementation.
#[derive(Clone, Debug, Serialize)]
pub struct Measurement {
    /// What ran (`cedm (NHWC kernels)`, `torch 2.15.0`).
    pub implementation: String,
    /// Wall seconds of the timed part.
    pub seconds: f64,
    /// Throughput in the benchmark's unit, if it has one.
    pub rate: Option<f64>,
    /// The process's peak resident memory (MiB) when the measurement ended: cedm's from
    /// /proc/self/status (VmHWM, before the reference runs), the reference script's from
    /// `resource.getrusage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_mib: Option<f64>,
}

/// This process's peak resident set size so far, in MiB (Linux: VmHWM).
pub fn peak_rss_mib() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A benchmark's result.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Benchmark name.
    pub name: String,
    /// What was measured, in words.
    pub setup: String,
    /// Unit of `rate` (e.g. `img/s`).
    pub unit: String,
    /// cedm's measurement.
    pub ours: Measurement,
    /// The reference's, when a Python was given.
    pub reference: Option<Measurement>,
    /// Extra facts (agreement between the two, peak memory).
    pub notes: Vec<String>,
    /// Where each side's time goes, with `--profile` (milliseconds per step by operation).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<ProfileRow>,
}

/// One line of a time breakdown.
#[derive(Clone, Debug, Serialize)]
pub struct ProfileRow {
    /// `cedm` or `reference`.
    pub side: String,
    /// Operation (or group of operations).
    pub op: String,
    /// Milliseconds per step.
    pub ms_per_step: f64,
    /// Calls per step (when known).
    pub calls_per_step: Option<f64>,
}

impl Report {
    /// Reference time / our time (> 1 means cedm is faster).
    pub fn speedup(&self) -> Option<f64> {
        self.reference
            .as_ref()
            .map(|r| r.seconds / self.ours.seconds)
    }
}

/// The machine a benchmark ran on: CPU model, threads, and the GEMM / convolution providers
/// cedm found (the ratios depend on all three; docs/performance.md).
#[derive(Clone, Debug, Serialize)]
pub struct Host {
    /// `model name` from /proc/cpuinfo (or the architecture).
    pub cpu: String,
    /// rayon's threads (cedm) — the reference scripts use as many.
    pub threads: usize,
    /// System BLAS for large GEMMs, or the `gemm` crate.
    pub blas: String,
    /// oneDNN (convolutions, per-core products), or not found.
    pub onednn: String,
}

impl Host {
    /// This machine.
    pub fn here() -> Host {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| std::env::consts::ARCH.to_string());
        Host {
            cpu,
            threads: rayon::current_num_threads(),
            blas: cedm_nodes::kernels::blas::describe(),
            onednn: cedm_nodes::kernels::dnnl::describe(),
        }
    }
}

/// The repository's `benches/` folder (scripts are looked up there, or in `CEDM_BENCHES`).
pub fn benches_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CEDM_BENCHES") {
        return PathBuf::from(d);
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../benches");
    if here.exists() {
        here
    } else {
        PathBuf::from("benches")
    }
}

/// Run a reference script and parse the JSON line it prints last.
///
/// # Errors
/// When the interpreter or script fails.
pub fn run_reference(
    python: &Path,
    script: &str,
    args: &[String],
) -> Result<serde_json::Value, NodeError> {
    let path = benches_dir().join(script);
    let out = Command::new(python)
        .arg(&path)
        .args(args)
        .output()
        .map_err(|e| {
            NodeError::msg(format!(
                "cannot run {} {}: {e}",
                python.display(),
                path.display()
            ))
        })?;
    if !out.status.success() {
        return Err(NodeError::msg(format!(
            "{} {} failed:\n{}",
            python.display(),
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or("");
    serde_json::from_str(line)
        .map_err(|e| NodeError::msg(format!("{script} printed no JSON result ({e}): {stdout}")))
}

fn field(v: &serde_json::Value, k: &str) -> f64 {
    v.get(k)
        .and_then(serde_json::Value::as_f64)
        .unwrap_or(f64::NAN)
}

/// The reference's measurement from its JSON line (`impl`, `seconds`) and a rate.
fn measured(v: &serde_json::Value, rate: Option<f64>) -> Measurement {
    Measurement {
        implementation: v
            .get("impl")
            .and_then(|s| s.as_str())
            .unwrap_or("reference")
            .to_string(),
        seconds: field(v, "seconds"),
        rate,
        peak_rss_mib: v.get("peak_rss_mib").and_then(serde_json::Value::as_f64),
    }
}

/// MobileNetV2 feature extraction throughput on random images at `resolution`.
///
/// # Errors
/// Unreadable weights, failing reference.
pub fn features(
    weights: &Path,
    images: usize,
    resolution: usize,
    batch: usize,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use cedm_nodes::models::mobilenet_v2::{MobileNetV2Config, MobileNetV2Cpu};
    let w = cedm_nodes::models::weights::Weights::load(weights)?;
    let m = MobileNetV2Cpu::load(&MobileNetV2Config::imagenet(), &w)?;
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let x: Vec<f32> = (0..batch * 3 * resolution * resolution)
        .map(|_| rng.uniform() as f32)
        .collect();
    for _ in 0..2 {
        m.forward_features(&x, batch, resolution, resolution);
    }
    let t = Instant::now();
    let mut done = 0;
    while done < images {
        m.forward_features(&x, batch, resolution, resolution);
        done += batch;
    }
    let secs = t.elapsed().as_secs_f64();
    let ours = Measurement {
        peak_rss_mib: peak_rss_mib(),
        implementation: "cedm NHWC CPU kernels".into(),
        seconds: secs,
        rate: Some(done as f64 / secs),
    };
    let reference = match python {
        Some(py) => {
            let v = run_reference(
                py,
                "mobilenet_v2.py",
                &[
                    "--resolution".into(),
                    resolution.to_string(),
                    "--batch".into(),
                    batch.to_string(),
                    "--images".into(),
                    done.to_string(),
                ],
            )?;
            Some(measured(&v, Some(field(&v, "img_per_s"))))
        }
        None => None,
    };
    Ok(Report {
        name: "features".into(),
        setup: format!(
            "MobileNetV2 pooled features, {done} images at {resolution} px, batch {batch}, {} threads",
            rayon::current_num_threads()
        ),
        unit: "img/s".into(),
        ours,
        reference,
        notes: vec![],
        profile: Vec::new(),
    })
}

/// Throughput of a ViT preset or OpenCLIP image tower (`clip:MODEL`) on random images, with
/// the given checkpoint or random weights (ViTs: burn's initialisation; CLIP: a random
/// open_clip model the reference script exports first, so both sides run the same weights).
///
/// # Errors
/// An unknown model, unreadable weights, CLIP without weights or Python, failing reference.
pub fn encoder(
    model: &str,
    weights: Option<&Path>,
    images: usize,
    batch: usize,
    resolution: usize,
    device: cedm_engine::DeviceSpec,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use cedm_nodes::encoders::Encoder;
    use cedm_nodes::kernels::imageops::Filter;
    let comp = cedm_nodes::device::compute(device)?;
    let batch = batch.max(1);
    let clip = model.strip_prefix("clip:");
    let dir = std::env::temp_dir().join(format!("cedm-bench-encoder-{}", std::process::id()));
    let exported = dir.join("clip_random.safetensors");
    let (enc, side, random): (Box<dyn Encoder>, usize, bool) = match (clip, weights) {
        (Some(m), w) => {
            let cfg = cedm_nodes::encoders::clip::clip_config(m, None).map_err(NodeError::msg)?;
            let path = match (w, python) {
                (Some(w), _) => w.to_path_buf(),
                (None, Some(py)) => {
                    std::fs::create_dir_all(&dir).map_err(NodeError::io("creating", &dir))?;
                    run_reference(
                        py,
                        "encoder.py",
                        &[
                            "--model".into(),
                            model.into(),
                            "--export".into(),
                            exported.display().to_string(),
                        ],
                    )?;
                    exported.clone()
                }
                (None, None) => {
                    return Err(NodeError::msg(
                        "CLIP needs weights: --weights CHECKPOINT, or --python (the reference script exports a random open_clip model)",
                    ));
                }
            };
            let e = cedm_nodes::encoders::clip::ClipImageOwned::load(m, None, &path, &comp)?;
            (Box::new(e), cfg.image_size, w.is_none())
        }
        (None, Some(w)) => (
            Box::new(cedm_nodes::encoders::vit::Vit::load(
                model,
                None,
                w,
                None,
                &comp,
                resolution,
                Filter::Bicubic,
            )?),
            resolution,
            false,
        ),
        (None, None) => (
            Box::new(cedm_nodes::encoders::vit::Vit::random(
                model,
                &comp,
                resolution,
                Filter::Bicubic,
            )?),
            resolution,
            true,
        ),
    };
    // Input already at the model's side: the forward pass is timed, not the resize.
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let pixels: Vec<u8> = (0..batch * 3 * side * side)
        .map(|_| rng.below(256) as u8)
        .collect();
    let x = enc.preprocess(&pixels, batch, [3, side, side]);
    enc.forward(x.clone(), batch)?;
    let t = Instant::now();
    let mut done = 0;
    while done < images.max(1) {
        enc.forward(x.clone(), batch)?;
        done += batch;
    }
    let secs = t.elapsed().as_secs_f64();
    let ours = Measurement {
        peak_rss_mib: peak_rss_mib(),
        implementation: format!("cedm (burn, {})", enc.describe()),
        seconds: secs,
        rate: Some(done as f64 / secs),
    };
    let reference = match python {
        Some(py) => {
            let mut args: Vec<String> = vec![
                "--model".into(),
                model.into(),
                "--resolution".into(),
                side.to_string(),
                "--batch".into(),
                batch.to_string(),
                "--images".into(),
                done.to_string(),
                "--threads".into(),
                rayon::current_num_threads().to_string(),
            ];
            if clip.is_some() {
                args.extend([
                    "--weights".into(),
                    if random {
                        exported.display().to_string()
                    } else {
                        weights.map(|w| w.display().to_string()).unwrap_or_default()
                    },
                ]);
            }
            let v = run_reference(py, "encoder.py", &args)?;
            Some(measured(&v, Some(field(&v, "img_per_s"))))
        }
        None => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        name: "encoder".into(),
        setup: format!(
            "{model}{}, {done} images at {side} px, batch {batch}, {} threads",
            if random { " (random weights)" } else { "" },
            rayon::current_num_threads()
        ),
        unit: "img/s".into(),
        ours,
        reference,
        notes: vec![format!("{}-d features", enc.dim())],
        profile: Vec::new(),
    })
}

/// Exact kNN on random Gaussian features `n × d` (same file for both sides).
///
/// # Errors
/// I/O, failing reference.
pub fn knn(n: usize, d: usize, k: usize, python: Option<&Path>) -> Result<Report, NodeError> {
    use cedm_nodes::artifacts::features::Features;
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let f = Features {
        n,
        d,
        data: (0..n * d).map(|_| rng.normal() as f32).collect(),
    };
    let dir = std::env::temp_dir().join(format!("cedm-bench-knn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(NodeError::io("creating", &dir))?;
    let file = dir.join("features.safetensors");
    f.write(&file, &Default::default())?;
    let t = Instant::now();
    let ours_knn = cedm_nodes::kernels::knn::knn(&f.data, f.n, f.d, k, true, 1024, |_| true)
        .map_err(|e| NodeError::msg(format!("{e:?}")))?;
    let secs = t.elapsed().as_secs_f64();
    let mut notes = Vec::new();
    let reference = match python {
        Some(py) => {
            let idx = dir.join("torch_indices.npy");
            let v = run_reference(
                py,
                "knn.py",
                &[
                    "--features".into(),
                    file.display().to_string(),
                    "--k".into(),
                    k.to_string(),
                    "--out".into(),
                    idx.display().to_string(),
                ],
            )?;
            if let Ok(theirs) = read_npy_i64(&idx) {
                let mut same = 0usize;
                for i in 0..n {
                    let a: std::collections::HashSet<i64> = ours_knn.indices[i * k..(i + 1) * k]
                        .iter()
                        .copied()
                        .collect();
                    same += theirs[i * k..(i + 1) * k]
                        .iter()
                        .filter(|j| a.contains(j))
                        .count();
                }
                notes.push(format!(
                    "neighbour sets agree on {:.4}% of entries (float ties aside)",
                    100.0 * same as f64 / (n * k) as f64
                ));
            }
            Some(measured(&v, None))
        }
        None => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        name: "knn".into(),
        setup: format!(
            "exact top-{k} cosine kNN of {n}×{d} random features, {} threads",
            rayon::current_num_threads()
        ),
        unit: String::new(),
        ours: Measurement {
            peak_rss_mib: peak_rss_mib(),
            implementation: "cedm (symmetric blocked gemm)".into(),
            seconds: secs,
            rate: None,
        },
        reference,
        notes,
        profile: Vec::new(),
    })
}

/// Read a little-endian int64 `.npy` (as numpy writes it).
///
/// # Errors
/// When the file is not such an array.
pub fn read_npy_i64(path: &Path) -> Result<Vec<i64>, NodeError> {
    let b = std::fs::read(path).map_err(NodeError::io("reading", path))?;
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(NodeError::msg(format!(
            "{}: not a .npy file",
            path.display()
        )));
    }
    let (hlen, start) = if b[6] == 1 {
        (u16::from_le_bytes([b[8], b[9]]) as usize, 10)
    } else {
        (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12)
    };
    let header = String::from_utf8_lossy(&b[start..start + hlen]);
    if !header.contains("<i8") || header.contains("'fortran_order': True") {
        return Err(NodeError::msg(format!(
            "{}: expected a C-order int64 array, header {header}",
            path.display()
        )));
    }
    Ok(b[start + hlen..]
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// k-means on a features file (or random Gaussian features) against scikit-learn.
///
/// # Errors
/// I/O, failing reference.
pub fn kmeans(
    features: Option<&Path>,
    n: usize,
    d: usize,
    k: usize,
    n_init: usize,
    max_iter: usize,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use cedm_nodes::artifacts::features::Features;
    let dir = std::env::temp_dir().join(format!("cedm-bench-kmeans-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(NodeError::io("creating", &dir))?;
    let (f, file, what) = match features {
        Some(p) => (
            Features::read_file(p)?,
            p.to_path_buf(),
            format!("features of {}", p.display()),
        ),
        None => {
            let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
            let f = Features {
                n,
                d,
                data: (0..n * d).map(|_| rng.normal() as f32).collect(),
            };
            let file = dir.join("features.safetensors");
            f.write(&file, &Default::default())?;
            (f, file, "random Gaussian features".to_string())
        }
    };
    let t = Instant::now();
    let r = cedm_nodes::kernels::kmeans::kmeans(&f.data, f.n, f.d, k, n_init, max_iter, 1e-4, 0)
        .map_err(NodeError::msg)?;
    let secs = t.elapsed().as_secs_f64();
    let mut notes = vec![format!(
        "cedm: {} iterations, inertia {:.6e}",
        r.iterations, r.inertia
    )];
    let reference = match python {
        Some(py) => {
            let v = run_reference(
                py,
                "kmeans.py",
                &[
                    "--features".into(),
                    file.display().to_string(),
                    "--k".into(),
                    k.to_string(),
                    "--n-init".into(),
                    n_init.to_string(),
                    "--max-iter".into(),
                    max_iter.to_string(),
                ],
            )?;
            notes.push(format!(
                "reference: {} iterations, inertia {:.6e}",
                field(&v, "iterations"),
                field(&v, "inertia")
            ));
            Some(measured(&v, None))
        }
        None => None,
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Report {
        name: "kmeans".into(),
        setup: format!(
            "k-means k = {k}, n_init {n_init}, max_iter {max_iter} on {}×{} {what}, {} threads",
            f.n,
            f.d,
            rayon::current_num_threads()
        ),
        unit: String::new(),
        ours: Measurement {
            peak_rss_mib: peak_rss_mib(),
            implementation: "cedm (k-means++, Lloyd with Hamerly bounds)".into(),
            seconds: secs,
            rate: None,
        },
        reference,
        notes,
        profile: Vec::new(),
    })
}

/// FID Inception throughput on random 299×299 inputs (the preprocessing is not timed).
///
/// # Errors
/// Unreadable weights, failing reference.
pub fn inception(
    weights: &Path,
    torchscript: Option<&Path>,
    images: usize,
    batch: usize,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use cedm_nodes::models::inception::{InceptionCpu, SIZE};
    let w = cedm_nodes::models::weights::Weights::load(weights)?;
    let m = InceptionCpu::load(&w)?;
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let x: Vec<f32> = (0..batch * 3 * SIZE * SIZE)
        .map(|_| rng.uniform() as f32 * 2.0 - 1.0)
        .collect();
    m.forward(&x, batch, SIZE, SIZE);
    let t = Instant::now();
    let mut done = 0;
    while done < images {
        m.forward(&x, batch, SIZE, SIZE);
        done += batch;
    }
    let secs = t.elapsed().as_secs_f64();
    let ours = Measurement {
        peak_rss_mib: peak_rss_mib(),
        implementation: "cedm NHWC CPU kernels".into(),
        seconds: secs,
        rate: Some(done as f64 / secs),
    };
    let reference = match python {
        Some(py) => {
            let ts = torchscript
                .map(Path::to_path_buf)
                .unwrap_or_else(|| weights.with_extension("pt"));
            let v = run_reference(
                py,
                "inception.py",
                &[
                    "--weights".into(),
                    ts.display().to_string(),
                    "--batch".into(),
                    batch.to_string(),
                    "--images".into(),
                    done.to_string(),
                ],
            )?;
            Some(measured(&v, Some(field(&v, "img_per_s"))))
        }
        None => None,
    };
    Ok(Report {
        name: "inception".into(),
        setup: format!(
            "FID Inception pool3, {done} images at 299 px, batch {batch}, {} threads",
            rayon::current_num_threads()
        ),
        unit: "img/s".into(),
        ours,
        reference,
        notes: vec![],
        profile: Vec::new(),
    })
}

/// Fréchet distance of two random `d`-dimensional statistics (covariances of `n` random
/// correlated samples each), against scipy on the same files.
///
/// # Errors
/// I/O, failing reference.
pub fn frechet(d: usize, n: usize, python: Option<&Path>) -> Result<Report, NodeError> {
    use cedm_nodes::algorithms::frechet::frechet_distance;
    use cedm_nodes::artifacts::stats::Stats;
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let mut make = |shift: f32| -> Result<Stats, NodeError> {
        let mix: Vec<f32> = (0..d * d)
            .map(|_| rng.normal() as f32 / (d as f32).sqrt())
            .collect();
        let z: Vec<f32> = (0..n * d).map(|_| rng.normal() as f32).collect();
        let mut x = vec![0f32; n * d];
        cedm_nodes::kernels::cpu::gemm(n, d, d, &z, false, &mix, false, &mut x, false);
        x.iter_mut().for_each(|v| *v += shift);
        Stats::from_features(&x, n, d)
    };
    let (a, b) = (make(0.0)?, make(0.1)?);
    // The reference starts from the two statistics files: so does the peak measured here. The
    // generation's buffers are given back (the allocator's cache trimmed) and the kernel's
    // high-water mark reset to what is resident now (`/proc/self/clear_refs` 5, Linux ≥ 4.0).
    cedm_nodes::kernels::alloc::trim();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let t = Instant::now();
    let fd = frechet_distance(&a, &b)?;
    let secs = t.elapsed().as_secs_f64();
    let mut notes = vec![format!("cedm: FD {fd:.10}")];
    let reference = match python {
        Some(py) => {
            let dir =
                std::env::temp_dir().join(format!("cedm-bench-frechet-{}", std::process::id()));
            std::fs::create_dir_all(&dir).map_err(NodeError::io("creating", &dir))?;
            let (fa, fb) = (dir.join("a.npz"), dir.join("b.npz"));
            a.write_npz(&fa)?;
            b.write_npz(&fb)?;
            let v = run_reference(
                py,
                "frechet.py",
                &[fa.display().to_string(), fb.display().to_string()],
            );
            let _ = std::fs::remove_dir_all(&dir);
            let v = v?;
            let theirs = field(&v, "fd");
            notes.push(format!(
                "scipy: FD {theirs:.10} (relative difference {:.2e})",
                (fd - theirs).abs() / theirs.abs()
            ));
            Some(measured(&v, None))
        }
        None => None,
    };
    Ok(Report {
        name: "frechet".into(),
        setup: format!(
            "Fréchet distance of two {d}-d Gaussians (covariances of {n} samples), {} threads; peak memory from the statistics on, as the reference's",
            rayon::current_num_threads()
        ),
        unit: String::new(),
        ours: Measurement {
            peak_rss_mib: peak_rss_mib(),
            implementation: "cedm (pivoted Cholesky + symmetric eigenvalues)".into(),
            seconds: secs,
            rate: None,
        },
        reference,
        notes,
        profile: Vec::new(),
    })
}

/// Options of [`edm`].
#[derive(Clone, Debug)]
pub struct EdmBench {
    /// `cifar`, `ffhq64` or `small`.
    pub preset: String,
    /// Label dimension (clusters).
    pub label_dim: usize,
    /// Images per step.
    pub batch: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed steps first (kernel compilation and autotuning on GPUs).
    pub warmup: usize,
    /// cedm's device (`cpu`, `wgpu:0`, `cuda:0`).
    pub device: cedm_engine::DeviceSpec,
    /// `fp32` or `fp16` (mixed precision), on both sides.
    pub precision: String,
    /// The reference's device (`cpu`, `cuda`).
    pub torch_device: String,
    /// Also measure where the time goes (a second, profiled run of `steps` on each side).
    pub profile: bool,
}

/// A SongUNet preset of `cedm bench edm` / `cedm bench sample` (benches/songunet_presets.py
/// has the same four).
fn preset(
    name: &str,
    label_dim: usize,
) -> Result<cedm_nodes::models::edm::songunet::SongUNetConfig, NodeError> {
    use cedm_nodes::models::edm::songunet::SongUNetConfig;
    Ok(match name {
        "cifar" => SongUNetConfig::cifar(label_dim),
        "ffhq64" => SongUNetConfig::ffhq64(label_dim),
        "small" => SongUNetConfig::small(32, 3, label_dim),
        // experiments/quickstart.yaml's EDM (16 px grey Fashion-MNIST).
        "quickstart" => SongUNetConfig {
            model_channels: 16,
            channel_mult: vec![1, 2],
            attn_resolutions: vec![],
            ..SongUNetConfig::small(16, 1, label_dim)
        },
        p => {
            return Err(NodeError::msg(format!(
                "unknown preset `{p}` (cifar, ffhq64, small, quickstart)"
            )));
        }
    })
}

/// Sampling throughput: EDM's deterministic Heun sampler (`steps` steps, 2·steps − 1 network
/// evaluations per image) on a preset's SongUNet (random weights; the arithmetic is what is
/// measured), `images` images in batches of `batch`, against the same loop in PyTorch
/// (benches/sample.py).
///
/// # Errors
/// Unknown preset, failing reference.
pub fn sample(
    preset_name: &str,
    label_dim: usize,
    images: usize,
    batch: usize,
    steps: usize,
    profile_ops: bool,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use burn::tensor::Device;
    use cedm_nodes::models::edm::sampler::{Sampler, generate};
    let mut cfg = preset(preset_name, label_dim)?;
    cfg.dropout = 0.0;
    let dev = Device::flex();
    let net = cfg.init(0, &dev);
    let shape = (cfg.in_channels, cfg.img_resolution, cfg.img_resolution);
    let items: Vec<(u64, Option<usize>)> = (0..images as u64)
        .map(|k| (k, (label_dim > 0).then_some(k as usize % label_dim.max(1))))
        .collect();
    let p = Sampler {
        steps: steps.max(1),
        sigma_min: 0.002,
        sigma_max: 80.0,
        rho: 7.0,
        guidance: 0.0,
        batch_size: batch.max(1),
    };
    // Warm-up: one batch, two steps (kernel generation, allocator).
    let warm = Sampler { steps: 2, ..p };
    generate(
        &net,
        &dev,
        shape,
        cfg.label_dim,
        &items[..batch.min(images)],
        &warm,
        0,
        |_| true,
    )?;
    let t = Instant::now();
    generate(&net, &dev, shape, cfg.label_dim, &items, &p, 0, |_| true)?;
    let secs = t.elapsed().as_secs_f64();
    let mut profile = Vec::new();
    if profile_ops {
        cedm_nodes::ops::set_profiling(true);
        let t = Instant::now();
        generate(&net, &dev, shape, cfg.label_dim, &items, &p, 0, |_| true)?;
        let wall = t.elapsed().as_secs_f64();
        profile = op_rows(wall, 1);
    }
    let reference = match python {
        Some(py) => {
            let v = run_reference(
                py,
                "sample.py",
                &[
                    "--preset".into(),
                    preset_name.into(),
                    "--label-dim".into(),
                    label_dim.to_string(),
                    "--images".into(),
                    images.to_string(),
                    "--batch".into(),
                    batch.to_string(),
                    "--steps".into(),
                    steps.to_string(),
                ],
            )?;
            Some(measured(&v, Some(field(&v, "rate"))))
        }
        None => None,
    };
    Ok(Report {
        name: "sample".into(),
        setup: format!(
            "EDM Heun sampler, {steps} steps ({} network evaluations per image), SongUNet {preset_name} at {} px, {images} images in batches of {batch}, {} threads",
            2 * steps.max(1) - 1,
            cfg.img_resolution,
            rayon::current_num_threads()
        ),
        unit: "img/s".into(),
        ours: Measurement {
            peak_rss_mib: peak_rss_mib(),
            implementation: "cedm (burn flex + custom CPU ops)".into(),
            seconds: secs,
            rate: Some(images as f64 / secs),
        },
        reference,
        notes: vec![],
        profile,
    })
}

/// The custom operations' times since profiling was switched on (then switched off), per
/// step of `steps`, and the rest of `wall`.
fn op_rows(wall: f64, steps: usize) -> Vec<ProfileRow> {
    let ops = cedm_nodes::ops::profile();
    cedm_nodes::ops::set_profiling(false);
    let per = |s: f64| 1e3 * s / steps.max(1) as f64;
    let custom: f64 = ops.iter().map(|(_, s, _)| s).sum();
    let mut rows: Vec<ProfileRow> = ops
        .into_iter()
        .map(|(op, s, calls)| ProfileRow {
            side: "cedm".into(),
            op,
            ms_per_step: per(s),
            calls_per_step: Some(calls as f64 / steps.max(1) as f64),
        })
        .collect();
    rows.push(ProfileRow {
        side: "cedm".into(),
        op: "everything else (burn ops, autodiff, data)".into(),
        ms_per_step: per(wall - custom),
        calls_per_step: None,
    });
    rows
}

/// One EDM training step (SongUNet forward and backward with EDM's preconditioning and loss,
/// Adam) at a preset's config, in images per second, against PyTorch on the same config
/// (benches/songunet.py). Dropout is off on both sides.
///
/// # Errors
/// Unknown preset or device, failing reference.
pub fn edm(o: &EdmBench, python: Option<&Path>) -> Result<Report, NodeError> {
    use burn::tensor::FloatDType;
    use cedm_nodes::models::params::{Adam, flat};
    let mut cfg = preset(&o.preset, o.label_dim)?;
    cfg.dropout = 0.0;
    let half = match o.precision.as_str() {
        "fp32" => None,
        "fp16" => Some(FloatDType::F16),
        p => {
            return Err(NodeError::msg(format!(
                "unknown precision `{p}` (fp32, fp16)"
            )));
        }
    };
    let comp = cedm_nodes::device::compute(o.device)?;
    let ad = comp.device().clone().autodiff();
    let mut net = cfg.init(0, &ad);
    let mut adam = Adam::new(&flat(&net), 0.9, 0.999, 1e-8);
    let (b, r, c, ld) = (o.batch, cfg.img_resolution, cfg.in_channels, cfg.label_dim);
    let il = c * r * r;
    let mut rng = cedm_nodes::kernels::rng::Rng::new(1);
    let mut run = |net: cedm_nodes::models::edm::songunet::SongUNet, adam: &mut Adam| {
        let x: Vec<f32> = (0..b * il)
            .map(|_| (rng.uniform() * 2.0 - 1.0) as f32)
            .collect();
        let sigma: Vec<f64> = (0..b).map(|_| (rng.normal() * 1.2 - 1.2).exp()).collect();
        let noise: Vec<f32> = (0..b * il)
            .map(|j| (rng.normal() * sigma[j / il]) as f32)
            .collect();
        let mut labels = vec![0f32; b * ld];
        for i in 0..b {
            labels[i * ld + (rng.uniform() * ld as f64) as usize % ld.max(1)] = 1.0;
        }
        let aug = vec![0f32; b * 9];
        let weights: Vec<f32> = sigma
            .iter()
            .map(|&s| cedm_nodes::models::edm::precond::loss_weight(s) as f32)
            .collect();
        let bt = cedm_nodes::kinds::edm::train::step::Batch {
            x: &x,
            noise: &noise,
            labels: &labels,
            aug: &aug,
            weights: &weights,
            sigma: &sigma,
            shape: [c, r, r],
            label_dim: ld,
            aug_dim: 9,
        };
        cedm_nodes::kinds::edm::train::step::bench_step(net, &ad, adam, half, &bt, 1e-4)
            .map_err(NodeError::msg)
    };
    for _ in 0..o.warmup {
        net = run(net, &mut adam)?.0;
    }
    let t = Instant::now();
    let mut loss = f32::NAN;
    for _ in 0..o.steps {
        let (n, l) = run(net, &mut adam)?;
        net = n;
        loss = l;
    }
    // The loss was read back each step, so the device has finished.
    let secs = t.elapsed().as_secs_f64();
    let mut profile = Vec::new();
    if o.profile {
        cedm_nodes::ops::set_profiling(true);
        let t = Instant::now();
        for _ in 0..o.steps {
            net = run(net, &mut adam)?.0;
        }
        let wall = t.elapsed().as_secs_f64();
        profile = op_rows(wall, o.steps);
    }
    let params = burn::module::Module::num_params(&net);
    let ours = Measurement {
        peak_rss_mib: peak_rss_mib(),
        implementation: format!("cedm (burn, {}, {})", comp.describe(), o.precision),
        seconds: secs,
        rate: Some((o.steps * b) as f64 / secs),
    };
    let mut notes = vec![format!("{params} parameters; last loss {loss:.3}")];
    let reference = match python {
        Some(py) => {
            let mut args = vec![
                "--preset".to_string(),
                o.preset.clone(),
                "--label-dim".into(),
                o.label_dim.to_string(),
                "--batch".into(),
                b.to_string(),
                "--steps".into(),
                o.steps.to_string(),
                "--warmup".into(),
                o.warmup.to_string(),
                "--device".into(),
                o.torch_device.clone(),
            ];
            if half.is_some() {
                args.push("--fp16".into());
            }
            if o.profile {
                args.push("--profile".into());
            }
            let v = run_reference(py, "songunet.py", &args)?;
            if let Some(rows) = v.get("profile").and_then(|p| p.as_array()) {
                for r in rows {
                    profile.push(ProfileRow {
                        side: "reference".into(),
                        op: r.get("op").and_then(|x| x.as_str()).unwrap_or("?").into(),
                        ms_per_step: r.get("ms_per_step").and_then(|x| x.as_f64()).unwrap_or(0.0),
                        calls_per_step: r.get("calls_per_step").and_then(|x| x.as_f64()),
                    });
                }
            }
            let theirs = field(&v, "params");
            if theirs as usize != params {
                notes.push(format!(
                    "PyTorch network has {theirs} parameters (cedm {params})"
                ));
            }
            Some(measured(&v, Some(field(&v, "rate"))))
        }
        None => None,
    };
    Ok(Report {
        name: "edm".into(),
        setup: format!(
            "EDM training step (SongUNet {} at {r} px, label_dim {ld}, dropout off, Adam), batch {b}, {} timed steps after {} warm-up",
            o.preset, o.steps, o.warmup
        ),
        unit: "img/s".into(),
        ours,
        reference,
        notes,
        profile,
    })
}

/// One TEMI training step (H heads, student and teacher, loss with γ = 0.6, AdamW, teacher EMA)
/// on random pairs, reported per epoch of `items` (steps of `batch`), against the same heads in
/// PyTorch CPU (benches/temi.py).
///
/// # Errors
/// Failing reference.
pub fn temi(
    heads: usize,
    batch: usize,
    dim: usize,
    clusters: usize,
    items: usize,
    steps: usize,
    python: Option<&Path>,
) -> Result<Report, NodeError> {
    use burn::tensor::{Device, Tensor, TensorData};
    use cedm_nodes::models::temi_heads::{HeadsConfig, StepConfig, TemiState};
    let cfg = HeadsConfig {
        heads,
        input: dim,
        hidden: 512,
        hidden_layers: 1,
        bottleneck: 256,
        clusters,
    };
    let dev = Device::flex();
    let mut st = TemiState::new(cfg.init(0, &dev));
    let mut rng = cedm_nodes::kernels::rng::Rng::new(0);
    let x: Vec<f32> = (0..batch * dim).map(|_| rng.normal() as f32).collect();
    let xn: Vec<f32> = x.iter().map(|v| v + 0.1 * rng.normal() as f32).collect();
    let sc = StepConfig {
        student_temp: 0.1,
        teacher_temp: 0.1,
        gamma: 0.6,
        prior_momentum: 0.9,
        teacher_momentum: 0.996,
        lr: 2e-4,
        weight_decay: 1e-4,
        freeze_last: false,
    };
    let mut step = || {
        let a = Tensor::<2>::from_data(TensorData::new(x.clone(), [batch, dim]), &dev);
        let b = Tensor::<2>::from_data(TensorData::new(xn.clone(), [batch, dim]), &dev);
        st.step(a, b, &sc).map(|o| o.loss)
    };
    step()?;
    let t = Instant::now();
    for _ in 0..steps {
        step()?;
    }
    let per_step = t.elapsed().as_secs_f64() / steps.max(1) as f64;
    let per_epoch = items / batch.max(1);
    let reference = match python {
        Some(py) => {
            let v = run_reference(
                py,
                "temi.py",
                &[
                    "--heads".into(),
                    heads.to_string(),
                    "--batch".into(),
                    batch.to_string(),
                    "--dim".into(),
                    dim.to_string(),
                    "--clusters".into(),
                    clusters.to_string(),
                    "--items".into(),
                    items.to_string(),
                    "--steps".into(),
                    steps.to_string(),
                ],
            )?;
            Some(measured(
                &v,
                Some(field(&v, "steps_per_epoch") / field(&v, "seconds")),
            ))
        }
        None => None,
    };
    Ok(Report {
        name: "temi".into(),
        setup: format!(
            "TEMI epoch of {items} items: {per_epoch} steps of {batch} pairs, {heads} heads {dim}→512→256→{clusters} (TEMI nlayers 2), {} threads",
            rayon::current_num_threads()
        ),
        unit: "step/s".into(),
        ours: Measurement {
            peak_rss_mib: peak_rss_mib(),
            implementation: "cedm (burn flex, stacked heads)".into(),
            seconds: per_step * per_epoch as f64,
            rate: Some(1.0 / per_step),
        },
        reference,
        notes: vec![],
        profile: Vec::new(),
    })
}

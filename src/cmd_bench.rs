//! `cedm bench …` and `cedm features`.

use std::process::ExitCode;

use cedm_nodes::algorithms::frechet::frechet_distance;
use cedm_nodes::artifacts::safetensors::Tensors;
use cedm_nodes::artifacts::stats::Stats;
use cedm_nodes::datasets::load_images;
use cedm_nodes::device::compute;
use cedm_nodes::encoders::inception::{FidResize, Inception};
use cedm_nodes::encoders::mobilenet_v2::MobileNetV2;
use cedm_nodes::encoders::vit::Vit;
use cedm_nodes::encoders::{Encoder, extract_batches};
use cedm_nodes::kernels::imageops::Filter;
use cedm_nodes::models::inception::{DIM, Tap};
use indicatif::{ProgressBar, ProgressStyle};

use crate::bench::{self, Report};

use crate::cli::{BenchCommand, FeaturesArgs, FidArgs, FidMetric};
use crate::render::secs;
use crate::{CliError, outln};

fn node_err(e: cedm_engine::NodeError) -> CliError {
    CliError::Other(e.to_string())
}

fn print(r: &Report, json: bool) {
    let host = bench::Host::here();
    if json {
        let mut v = serde_json::to_value(r).unwrap_or_default();
        if let (Some(m), Ok(h)) = (v.as_object_mut(), serde_json::to_value(&host)) {
            m.insert("host".into(), h);
        }
        outln!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    outln!("{}: {}", r.name, r.setup);
    outln!(
        "  host: {}, {} threads; {}; {}",
        host.cpu,
        host.threads,
        host.blas,
        host.onednn
    );
    let rate = |m: &bench::Measurement| {
        let rss = m
            .peak_rss_mib
            .map(|x| format!("  (peak RSS {x:.0} MiB)"))
            .unwrap_or_default();
        m.rate
            .map(|x| format!("  {x:.1} {}", r.unit))
            .unwrap_or_default()
            + &rss
    };
    outln!(
        "  {:<36} {:>10}{}",
        r.ours.implementation,
        secs(r.ours.seconds),
        rate(&r.ours)
    );
    if let Some(m) = &r.reference {
        outln!(
            "  {:<36} {:>10}{}",
            m.implementation,
            secs(m.seconds),
            rate(m)
        );
        if let Some(s) = r.speedup() {
            outln!("  ratio: cedm is {s:.2}× the reference's speed");
        }
    } else {
        outln!("  (no reference run: pass --python PATH to a Python with torch/sklearn/scipy)");
    }
    for n in &r.notes {
        outln!("  {n}");
    }
    for side in ["cedm", "reference"] {
        let rows: Vec<_> = r.profile.iter().filter(|p| p.side == side).collect();
        if rows.is_empty() {
            continue;
        }
        let total: f64 = rows.iter().map(|p| p.ms_per_step).sum();
        outln!("  where {side}'s time goes ({total:.1} ms per step):");
        for p in rows {
            let calls = p
                .calls_per_step
                .map(|c| format!("  {c:>5.1} calls"))
                .unwrap_or_default();
            outln!(
                "    {:<44} {:>8.2} ms {:>5.1}%{calls}",
                p.op,
                p.ms_per_step,
                100.0 * p.ms_per_step / total.max(1e-12)
            );
        }
    }
}

/// `cedm bench`.
pub fn bench(b: &BenchCommand) -> Result<ExitCode, CliError> {
    match b {
        BenchCommand::Features {
            weights,
            images,
            resolution,
            batch,
            reference,
        } => {
            let r = bench::features(
                weights,
                *images,
                *resolution,
                *batch,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Encoder {
            model,
            weights,
            images,
            batch,
            resolution,
            device,
            reference,
        } => {
            let r = bench::encoder(
                model,
                weights.as_deref(),
                *images,
                *batch,
                *resolution,
                *device,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Inception {
            weights,
            torchscript,
            images,
            batch,
            reference,
        } => {
            let r = bench::inception(
                weights,
                torchscript.as_deref(),
                *images,
                *batch,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Edm {
            preset,
            label_dim,
            batch,
            steps,
            warmup,
            device,
            precision,
            torch_device,
            profile,
            reference,
        } => {
            let o = bench::EdmBench {
                preset: preset.clone(),
                label_dim: *label_dim,
                batch: *batch,
                steps: *steps,
                warmup: *warmup,
                device: *device,
                precision: precision.clone(),
                torch_device: torch_device.clone(),
                profile: *profile,
            };
            let r = bench::edm(&o, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Sample {
            preset,
            label_dim,
            images,
            batch,
            steps,
            profile,
            reference,
        } => {
            let r = bench::sample(
                preset,
                *label_dim,
                *images,
                *batch,
                *steps,
                *profile,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Temi {
            heads,
            batch,
            dim,
            clusters,
            items,
            steps,
            reference,
        } => {
            let r = bench::temi(
                *heads,
                *batch,
                *dim,
                *clusters,
                *items,
                *steps,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Frechet { d, n, reference } => {
            let r = bench::frechet(*d, *n, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Knn { n, d, k, reference } => {
            let r = bench::knn(*n, *d, *k, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Kmeans {
            features,
            n,
            d,
            k,
            n_init,
            max_iter,
            reference,
        } => {
            let r = bench::kmeans(
                features.as_deref(),
                *n,
                *d,
                *k,
                *n_init,
                *max_iter,
                reference.python.as_deref(),
            )
            .map_err(node_err)?;
            print(&r, reference.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A progress bar over `n` images, for the standalone commands.
fn image_bar(n: usize) -> ProgressBar {
    let pb = ProgressBar::new(n as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30.cyan/blue}] {pos}/{len} img ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb
}

/// `cedm features`.
pub fn features(a: &FeaturesArgs) -> Result<ExitCode, CliError> {
    let set = load_images(&a.input).map_err(node_err)?;
    let comp = compute(a.device).map_err(node_err)?;
    let enc: Box<dyn Encoder> = if a.model == "mobilenet_v2" {
        Box::new(
            MobileNetV2::load(&a.weights, &comp, a.resolution, Filter::Bilinear)
                .map_err(node_err)?,
        )
    } else {
        Box::new(
            Vit::load(
                &a.model,
                None,
                &a.weights,
                None,
                &comp,
                a.resolution,
                Filter::Bicubic,
            )
            .map_err(node_err)?,
        )
    };
    eprintln!(
        "{} on {}: {} images {}×{}×{} → {} px",
        a.model,
        enc.describe(),
        set.n,
        set.c,
        set.h,
        set.w,
        a.resolution
    );
    let pb = image_bar(set.n);
    let t0 = std::time::Instant::now();
    let f = extract_batches(&set, a.batch_size, enc.as_ref(), |done| {
        pb.set_position(done as u64);
        true
    })
    .map_err(node_err)?;
    pb.finish_and_clear();
    let meta = [
        ("model".to_string(), a.model.clone()),
        ("resolution".to_string(), a.resolution.to_string()),
    ]
    .into();
    f.write(&a.output, &meta).map_err(node_err)?;
    eprintln!(
        "wrote {}×{} features to {} in {}",
        f.n,
        f.d,
        a.output.display(),
        secs(t0.elapsed().as_secs_f64())
    );
    Ok(ExitCode::SUCCESS)
}

fn is_stats_file(p: &std::path::Path) -> bool {
    let name = p.to_string_lossy();
    p.is_file()
        && (name.ends_with(".npz")
            || (name.ends_with(".safetensors")
                && Tensors::open(p).is_ok_and(|t| t.names().iter().any(|n| n == "sigma"))))
}

/// Statistics of a path for `cedm fid`: read a stats file, or embed the images.
/// A bad input file: exit 2, like a bad experiment.
fn input_err(e: cedm_engine::NodeError) -> CliError {
    CliError::Input(e.to_string())
}

fn fid_stats(a: &FidArgs, path: &std::path::Path) -> Result<Stats, CliError> {
    // A FIFO, a device or a socket is refused before it is read (the read would block).
    cedm_engine::FileKind::FileOrDir
        .check(path)
        .map_err(CliError::Input)?;
    if is_stats_file(path) {
        return Stats::read(path).map_err(input_err);
    }
    let set = load_images(path).map_err(input_err)?.subset(a.limit, None);
    let comp = compute(a.device).map_err(node_err)?;
    let enc: Box<dyn Encoder> = match a.metric {
        FidMetric::Fid => {
            let w = match &a.weights {
                Some(w) => w.clone(),
                None => crate::cmd_eval::default_weights("inception-2015-12-05.safetensors")
                    .ok_or_else(|| {
                        CliError::Input(
                            "the FID Inception is not in $CEDM_ASSETS/weights, ./assets/weights or the assets beside the binary: run scripts/fetch_assets.sh in the repository, set CEDM_ASSETS, or pass --weights".into(),
                        )
                    })?,
            };
            cedm_engine::FileKind::File
                .check(&w)
                .map_err(CliError::Input)?;
            let tap = Tap::from_dims(a.dims).ok_or_else(|| {
                CliError::Usage(format!("--dims {}: expected 64, 192, 768 or 2048", a.dims))
            })?;
            Box::new(Inception::load_tap(&w, &comp, FidResize::TfBilinear, tap).map_err(input_err)?)
        }
        FidMetric::Fdd => {
            let w = a.weights.clone().ok_or_else(|| CliError::Usage("--metric fdd needs --weights (a DINOv2 checkpoint, e.g. dinov2_vitl14_pretrain.pth)".into()))?;
            cedm_engine::FileKind::File
                .check(&w)
                .map_err(CliError::Input)?;
            Box::new(
                Vit::load(&a.model, None, &w, None, &comp, 224, Filter::Bicubic)
                    .map_err(input_err)?,
            )
        }
    };
    eprintln!(
        "{}: {} images {}×{}×{} on {}",
        path.display(),
        set.n,
        set.c,
        set.h,
        set.w,
        enc.describe()
    );
    let pb = image_bar(set.n);
    let f = extract_batches(&set, a.batch_size.max(1), enc.as_ref(), |done| {
        pb.set_position(done as u64);
        true
    })
    .map_err(node_err)?;
    pb.finish_and_clear();
    Stats::from_features(&f.data, f.n, f.d).map_err(node_err)
}

/// `cedm fid`.
pub fn fid(a: &FidArgs) -> Result<ExitCode, CliError> {
    if a.metric == FidMetric::Fdd && a.dims != DIM {
        return Err(CliError::Usage(
            "--dims picks an Inception block, so it goes with --metric fid only".into(),
        ));
    }
    let sa = fid_stats(a, &a.path_a)?;
    if a.save_stats {
        let out = &a.path_b;
        if out.to_string_lossy().ends_with(".safetensors") {
            let tag = match a.metric {
                FidMetric::Fid if a.dims == DIM => "fid".to_string(),
                FidMetric::Fid => format!("fid_{}", a.dims),
                FidMetric::Fdd => "fdd".to_string(),
            };
            sa.write(out, &tag).map_err(node_err)?;
        } else {
            sa.write_npz(out).map_err(node_err)?;
        }
        eprintln!(
            "wrote statistics of {} images ({}-d) to {}",
            sa.n,
            sa.d,
            out.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let sb = fid_stats(a, &a.path_b)?;
    let d = frechet_distance(&sa, &sb).map_err(node_err)?;
    let name = if a.metric == FidMetric::Fid {
        "FID"
    } else {
        "FDD"
    };
    if a.json {
        outln!(
            "{}",
            // Image counts; null for a statistics file that does not record one (.npz).
            serde_json::json!({"metric": name, "value": d, "n_a": (sa.n > 0).then_some(sa.n),
                               "n_b": (sb.n > 0).then_some(sb.n), "dims": sa.d})
        );
    } else {
        outln!("{name}: {d:.6}");
    }
    Ok(ExitCode::SUCCESS)
}

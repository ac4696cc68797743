//! `cedm bench …` and `cedm features`.

use std::process::ExitCode;

use cedm_nodes::bench::{self, Report};
use cedm_nodes::imageops::Filter;
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::{BenchCommand, FeaturesArgs};
use crate::render::secs;
use crate::{CliError, outln};

fn node_err(e: cedm_engine::NodeError) -> CliError {
    CliError::Other(e.to_string())
}

fn print(r: &Report, json: bool) {
    if json {
        outln!("{}", serde_json::to_string_pretty(r).unwrap_or_default());
        return;
    }
    outln!("{}: {}", r.name, r.setup);
    let rate = |m: &bench::Measurement| m.rate.map(|x| format!("  {x:.1} {}", r.unit)).unwrap_or_default();
    outln!("  {:<36} {:>10}{}", r.ours.implementation, secs(r.ours.seconds), rate(&r.ours));
    if let Some(m) = &r.reference {
        outln!("  {:<36} {:>10}{}", m.implementation, secs(m.seconds), rate(m));
        if let Some(s) = r.speedup() {
            outln!("  ratio: cedm is {s:.2}× the reference's speed");
        }
    } else {
        outln!("  (no reference run: pass --python PATH to a Python with torch/sklearn/scipy)");
    }
    for n in &r.notes {
        outln!("  {n}");
    }
}

/// `cedm bench`.
pub fn bench(b: &BenchCommand) -> Result<ExitCode, CliError> {
    match b {
        BenchCommand::Features { weights, images, resolution, batch, reference } => {
            let r = bench::features(weights, *images, *resolution, *batch, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Knn { n, d, k, reference } => {
            let r = bench::knn(*n, *d, *k, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
        BenchCommand::Kmeans { features, n, d, k, n_init, max_iter, reference } => {
            let r = bench::kmeans(features.as_deref(), *n, *d, *k, *n_init, *max_iter, reference.python.as_deref()).map_err(node_err)?;
            print(&r, reference.json);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `cedm features`.
pub fn features(a: &FeaturesArgs) -> Result<ExitCode, CliError> {
    let set = cedm_nodes::load_images(&a.input).map_err(node_err)?;
    let (mut embed, d, desc) = if a.model == "mobilenet_v2" {
        let (e, desc) = cedm_nodes::features_mobilenet_v2::embedder(&a.weights, &a.device, a.resolution, Filter::Bilinear, set.c, set.h, set.w)
            .map_err(node_err)?;
        (e, 1280, desc)
    } else {
        cedm_nodes::features_vit::embedder(&a.model, None, &a.weights, &a.device, a.resolution, Filter::Bicubic, set.c, set.h, set.w)
            .map_err(node_err)?
    };
    eprintln!("{} on {desc}: {} images {}×{}×{} → {} px", a.model, set.n, set.c, set.h, set.w, a.resolution);
    let pb = ProgressBar::new(set.n as u64);
    pb.set_style(
        ProgressStyle::with_template("[{bar:30.cyan/blue}] {pos}/{len} img ({per_sec}, ETA {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let t0 = std::time::Instant::now();
    let f = cedm_nodes::features::extract_batches(&set, a.batch_size, d, |px, b| embed(px, b), |done| {
        pb.set_position(done as u64);
        true
    })
    .map_err(node_err)?;
    pb.finish_and_clear();
    let meta = [("model".to_string(), a.model.clone()), ("resolution".to_string(), a.resolution.to_string())].into();
    f.write(&a.output, &meta).map_err(node_err)?;
    eprintln!("wrote {}×{} features to {} in {}", f.n, f.d, a.output.display(), secs(t0.elapsed().as_secs_f64()));
    Ok(ExitCode::SUCCESS)
}

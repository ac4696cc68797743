//! Same key ⇒ same bytes: an experiment with every node kind, run in two fresh caches, gives
//! identical output digests for every node, and a third run killed (SIGKILL) once a training
//! node has written a checkpoint and then resumed gives them too. Timings and host facts live in
//! the records' meta, never in outputs (issue 16), so early cutoff works below every node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{Dir, output_digests, stderr};

fn assets() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert!(
        p.join("weights/inception-2015-12-05.safetensors").exists()
            && p.join("fashion-mnist/.complete").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    p
}

/// The node names of the experiment below, one per kind (and per sweep point).
const NODES: &[&str] = &[
    "idx",
    "idx16",
    "cifar",
    "folder",
    "feats",
    "vit",
    "knn",
    "temi",
    "temi_g1[C=3]",
    "temi_g1[C=4]",
    "kmeans",
    "scores",
    "bound",
    "train",
    "sample",
    "fid_ref",
    "fid",
    "fdd_ref",
    "fdd",
];

/// Inputs the experiment reads besides the assets: a CIFAR-100 test batch and a folder of PNGs.
fn write_inputs(d: &Dir) {
    let cifar = d.path().join("cifar");
    std::fs::create_dir_all(&cifar).unwrap();
    let mut b = Vec::new();
    for i in 0..16u32 {
        b.extend([(i % 5) as u8, (i % 7) as u8]);
        b.extend((0..3072u32).map(|j| ((i * 31 + j * 7) % 251) as u8));
    }
    std::fs::write(cifar.join("test.bin"), b).unwrap();
    let pngs = d.path().join("pngs");
    std::fs::create_dir_all(&pngs).unwrap();
    for i in 0..12u32 {
        let img = image::GrayImage::from_fn(20, 24, |x, y| {
            image::Luma([((x * 9 + y * 5 + i * 17) % 256) as u8])
        });
        img.save(pngs.join(format!("{i:02}.png"))).unwrap();
    }
}

fn exp(d: &Path) -> String {
    let a = assets();
    let vit =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity/vit_dinov2_tiny.safetensors");
    format!(
        "name: determinism
sweep:
  C: [3, 4]
nodes:
  idx: {{kind: data/idx, params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 48}}}}
  idx16: {{kind: data/idx, params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 48, resolution: 16}}}}
  cifar: {{kind: data/cifar, params: {{dir: {d}/cifar, variant: cifar100, split: test}}}}
  folder: {{kind: data/images, params: {{path: {d}/pngs, resolution: 16}}}}
  feats: {{kind: features/mobilenet_v2, inputs: {{images: idx}}, params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  vit: {{kind: features/vit, inputs: {{images: cifar}}, params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {vit}, resolution: 28}}}}
  knn: {{kind: features/knn, inputs: {{features: feats}}, params: {{k: 5}}}}
  temi: {{kind: cluster/temi, inputs: {{features: feats, knn: knn}}, params: {{clusters: 4, heads: 2, epochs: 3, warmup_epochs: 1, batch_size: 16, knn: 5}}}}
  temi_g1: {{kind: cluster/temi, inputs: {{features: feats, knn: knn}}, params: {{clusters: \"${{C}}\", gamma: 1.0, heads: 1, epochs: 2, warmup_epochs: 1, batch_size: 16, knn: 5}}}}
  kmeans: {{kind: cluster/kmeans, inputs: {{features: feats}}, params: {{clusters: 4, n_init: 2}}}}
  scores: {{kind: cluster/metrics, inputs: {{clusters: temi, truth: idx}}}}
  bound: {{kind: cluster/bound, inputs: {{gamma1: temi_g1}}, params: {{rule: gamma1}}}}
  train:
    kind: edm/train
    inputs: {{images: idx16, labels: temi}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.0, duration_kimg: 0.192, batch_size: 16, lr: 0.002, lr_rampup_kimg: 0.05,
             ema_halflife_kimg: 0.05, log_every_kimg: 0.032, checkpoint_every_kimg: 0.032}}
  sample: {{kind: edm/sample, inputs: {{network: train}}, params: {{count: 8, steps: 4, grid_rows: 2, grid_cols: 4}}}}
  fid_ref: {{kind: metrics/fid_ref, inputs: {{images: folder}}, params: {{weights: {a}/weights/inception-2015-12-05.safetensors}}}}
  fid: {{kind: metrics/fid, inputs: {{samples: sample, ref: fid_ref}}, params: {{weights: {a}/weights/inception-2015-12-05.safetensors}}}}
  fdd_ref: {{kind: metrics/fdd_ref, inputs: {{images: idx}}, params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {vit}, resolution: 28}}}}
  fdd: {{kind: metrics/fdd, inputs: {{samples: sample, ref: fdd_ref}}, params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {vit}, resolution: 28}}}}
",
        a = a.display(),
        d = d.display(),
        vit = vit.display()
    )
}

fn fresh() -> Dir {
    let d = Dir::new();
    write_inputs(&d);
    d.write("exp.yaml", &exp(d.path()));
    d
}

#[test]
fn every_kind_gives_the_same_bytes_in_two_fresh_caches_and_after_a_kill_and_resume() {
    let a = fresh();
    let o = a.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let want = output_digests(&a, "exp.yaml");
    let names: Vec<&str> = want.keys().map(String::as_str).collect();
    assert_eq!(names.len(), NODES.len(), "cached instances: {names:?}");
    for n in NODES {
        assert!(want.contains_key(*n), "{n} missing from {names:?}");
    }

    let b = fresh();
    let o = b.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(output_digests(&b, "exp.yaml"), want, "a second fresh run");

    // Killed once a training node (TEMI or EDM) has checkpointed, then resumed.
    let c = fresh();
    let mut child = c
        .cedm()
        .args(["run", "exp.yaml", "-j", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let work = c.cache().join("work");
    let t0 = std::time::Instant::now();
    loop {
        let found = std::fs::read_dir(&work)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                std::fs::read_dir(e.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .any(|f| f.file_name().to_string_lossy().contains("checkpoint"))
            });
        if found || t0.elapsed() > Duration::from_secs(300) {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    let o = c.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(output_digests(&c, "exp.yaml"), want, "killed and resumed");
}

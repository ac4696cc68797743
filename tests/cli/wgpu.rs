//! The GPU code path, proven on the CPU through wgpu: the same tiny experiment — MobileNetV2
//! features, a few EDM training steps with cluster labels, Heun sampling — runs once with
//! `--device cpu` (flex) and once with `--device wgpu` (in CI: Mesa lavapipe, a Vulkan driver
//! on the CPU), and the artifacts agree within stated tolerances. Only built with
//! `--features wgpu`; without a Vulkan adapter it says so loudly on stderr and skips.
//!
//! Tolerances: both backends compute in f32 but in different orders (tiled GPU kernels vs the CPU
//! GEMM), so results differ by float rounding, which training amplifies a little:
//! - features: max |Δ| ≤ 1e-3 · max |feature|;
//! - training loss at every logged point: relative difference ≤ 1e-3;
//! - samples (uint8, 4 Heun steps from the same noise): mean |Δ| ≤ 0.5 levels, max |Δ| ≤ 8;
//! - mixed precision (`precision: auto`, f16 on wgpu) against fp32 on the CPU: loss within 2 %
//!   at every logged point.

use std::path::{Path, PathBuf};

use crate::util::{Dir, stderr};

fn experiment() -> String {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert!(
        a.join("fashion-mnist/.complete").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    format!(
        "name: gpu
nodes:
  train:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 32}}
  train16:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 32, resolution: 16}}
  feats:
    kind: features/mobilenet_v2
    inputs: {{images: train}}
    params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32, batch_size: 16}}
  edm:
    kind: edm/train
    inputs: {{images: train16, labels: train}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.0, duration_kimg: 0.064, batch_size: 16, lr: 0.002, lr_rampup_kimg: 0.01, log_every_kimg: 0.016, precision: fp32}}
  edm_auto:
    kind: edm/train
    inputs: {{images: train16, labels: train}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.0, duration_kimg: 0.128, batch_size: 16, lr: 0.002, lr_rampup_kimg: 0.01, log_every_kimg: 0.016}}
  sample:
    kind: edm/sample
    inputs: {{network: edm}}
    params: {{count: 8, steps: 4, grid_rows: 2, grid_cols: 4, batch_size: 8}}
",
        a = a.display()
    )
}

fn export(d: &Dir, cache: &Path, node: &str) -> PathBuf {
    let out = d.path().join(format!(
        "{}-{node}",
        cache.file_name().unwrap().to_string_lossy()
    ));
    let o = d
        .cedm()
        .env("CEDM_CACHE", cache)
        .args([
            "cache",
            "export",
            node,
            out.to_str().unwrap(),
            "--experiment",
            "exp.yaml",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

/// A tensor of a safetensors file as f64 values (F32 or U8).
fn tensor(path: &Path, name: &str) -> Vec<f64> {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let off = header[name]["data_offsets"].as_array().unwrap();
    let data = &bytes[8 + hlen + off[0].as_u64().unwrap() as usize
        ..8 + hlen + off[1].as_u64().unwrap() as usize];
    match header[name]["dtype"].as_str().unwrap() {
        "F32" => data
            .chunks(4)
            .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap())))
            .collect(),
        "U8" => data.iter().map(|v| f64::from(*v)).collect(),
        t => panic!("dtype {t}"),
    }
}

fn losses(dir: &Path) -> Vec<f64> {
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("training.json")).unwrap()).unwrap();
    log["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn wgpu_matches_the_cpu_on_features_training_and_sampling() {
    let d = Dir::new();
    d.write("exp.yaml", &experiment());
    let (cpu, gpu) = (d.path().join("cache-cpu"), d.path().join("cache-wgpu"));
    let o = d
        .cedm()
        .env("CEDM_CACHE", &cpu)
        .args(["run", "exp.yaml", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = d
        .cedm()
        .env("CEDM_CACHE", &gpu)
        .env("CUBECL_AUTOTUNE_LEVEL", "minimal")
        .args(["run", "exp.yaml", "--device", "wgpu"])
        .output()
        .unwrap();
    let err = stderr(&o);
    if !o.status.success() && err.contains("device `wgpu:0` does not work") {
        eprintln!(
            "\n*** WGPU TEST SKIPPED: no usable Vulkan adapter (apt-get install mesa-vulkan-drivers libvulkan1; .ci/run does):\n{err} ***\n"
        );
        return;
    }
    assert!(o.status.success(), "{err}");
    // The GPU run really ran on wgpu: the record names the device.
    let show = d
        .cedm()
        .env("CEDM_CACHE", &gpu)
        .args(["cache", "show", "edm", "exp.yaml"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("wgpu"),
        "{}",
        String::from_utf8_lossy(&show.stdout)
    );

    let (fc, fg) = (
        tensor(
            &export(&d, &cpu, "feats").join("features.safetensors"),
            "features",
        ),
        tensor(
            &export(&d, &gpu, "feats").join("features.safetensors"),
            "features",
        ),
    );
    assert_eq!(fc.len(), fg.len());
    let scale = fc.iter().fold(0f64, |m, v| m.max(v.abs()));
    let dmax = fc
        .iter()
        .zip(&fg)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("features: max |Δ| = {dmax:.3e} (max |f| = {scale:.3})");
    assert!(
        dmax <= 1e-3 * scale,
        "features differ: max |Δ| {dmax} vs scale {scale}"
    );

    let (lc, lg) = (
        losses(&export(&d, &cpu, "edm")),
        losses(&export(&d, &gpu, "edm")),
    );
    assert_eq!(lc.len(), lg.len());
    assert!(lc.len() >= 3, "{lc:?}");
    for (a, b) in lc.iter().zip(&lg) {
        assert!(
            (a - b).abs() <= 1e-3 * a.abs(),
            "loss curves differ: cpu {lc:?} wgpu {lg:?}"
        );
    }
    eprintln!("losses: cpu {lc:?} wgpu {lg:?}");

    let show = d
        .cedm()
        .env("CEDM_CACHE", &gpu)
        .args(["cache", "show", "edm_auto", "exp.yaml"])
        .output()
        .unwrap();
    let show = String::from_utf8_lossy(&show.stdout).to_string();
    if show.contains("cannot compute in F16") {
        // Not lavapipe (e.g. wgpu fell back to OpenGL, which has no WGSL f16): `auto` trained in
        // fp32, as it should; the mixed-precision comparison cannot run here.
        eprintln!("\n*** WGPU MIXED-PRECISION CHECK SKIPPED: the adapter has no f16 ***\n{show}");
    } else {
        assert!(show.contains("mixed precision F16"), "{show}");
        let (lc, lg) = (
            losses(&export(&d, &cpu, "edm_auto")),
            losses(&export(&d, &gpu, "edm_auto")),
        );
        let worst = lc
            .iter()
            .zip(&lg)
            .map(|(a, b)| (a - b).abs() / a)
            .fold(0f64, f64::max);
        eprintln!(
            "mixed precision on wgpu vs fp32 on cpu: worst relative difference {worst:.4}\n  cpu {lc:?}\n  wgpu {lg:?}"
        );
        assert!(
            worst <= 0.02 && worst > 1e-6,
            "f16 training on wgpu: {lc:?} vs {lg:?}"
        );
    }

    let (sc, sg) = (
        tensor(
            &export(&d, &cpu, "sample").join("images.safetensors"),
            "images",
        ),
        tensor(
            &export(&d, &gpu, "sample").join("images.safetensors"),
            "images",
        ),
    );
    assert_eq!(sc.len(), sg.len());
    let mean = sc.iter().zip(&sg).map(|(a, b)| (a - b).abs()).sum::<f64>() / sc.len() as f64;
    let max = sc
        .iter()
        .zip(&sg)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    eprintln!("samples: mean |Δ| = {mean:.4} levels, max |Δ| = {max}");
    assert!(
        mean <= 0.5 && max <= 8.0,
        "samples differ: mean |Δ| {mean}, max {max}"
    );
}

/// A wgpu adapter that does not exist: the probe turns burn's worker-thread panic into a node
/// failure that names the device, before any work starts.
#[test]
fn a_missing_wgpu_adapter_is_a_clear_node_failure() {
    let d = Dir::new();
    d.write("exp.yaml", &experiment());
    let o = d
        .cedm()
        .args(["run", "exp.yaml", "--device", "wgpu:99", "--only", "feats"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("feats failed: device `wgpu:99` does not work"),
        "{err}"
    );
}

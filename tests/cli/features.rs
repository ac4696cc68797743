//! Features and kNN on real Fashion-MNIST images with the real MobileNetV2 weights, and the ViT
//! node on the tiny parity checkpoint (no DINO weights exist here).

use std::path::PathBuf;

use crate::util::{Dir, stderr, stdout};

fn assets() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert!(
        p.join("weights/mobilenet_v2-b0353104.pth").exists()
            && p.join("fashion-mnist/.complete").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    p
}

fn tensor(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let t = &header[name];
    let shape: Vec<usize> = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let off = t["data_offsets"].as_array().unwrap();
    let (a, b) = (
        off[0].as_u64().unwrap() as usize,
        off[1].as_u64().unwrap() as usize,
    );
    (shape, bytes[8 + hlen + a..8 + hlen + b].to_vec())
}

fn object(d: &Dir, label: &str, file: &str, output: &str) -> PathBuf {
    let show = stdout(&d.run(&["cache", "show", label, file]));
    let line = show
        .lines()
        .find(|l| l.trim_start().starts_with(output))
        .unwrap_or_else(|| panic!("{output} in\n{show}"));
    PathBuf::from(line.split_whitespace().last().unwrap())
}

#[test]
fn mobilenet_features_and_knn_group_real_images_by_class() {
    let a = assets();
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: feats
nodes:
  data:
    kind: data/idx
    params:
      images: {a}/fashion-mnist/train-images-idx3-ubyte.gz
      labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz
      limit: 400
  feats:
    kind: features/mobilenet_v2
    inputs: {{images: data}}
    params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 64, batch_size: 50}}
  knn:
    kind: features/knn
    inputs: {{features: feats}}
    params: {{k: 10, block_size: 128}}
",
            a = a.display()
        ),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (fshape, _) = tensor(
        &object(&d, "feats", "exp.yaml", "features.safetensors"),
        "features",
    );
    assert_eq!(fshape, [400, 1280]);
    let (kshape, kbytes) = tensor(&object(&d, "knn", "exp.yaml", "knn.safetensors"), "indices");
    assert_eq!(kshape, [400, 10]);
    let (_, lbytes) = tensor(
        &object(&d, "data", "exp.yaml", "labels.safetensors"),
        "labels",
    );
    let labels: Vec<i64> = lbytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let idx: Vec<i64> = kbytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let agree = (0..400)
        .flat_map(|i| (0..10).map(move |j| (i, j)))
        .filter(|&(i, j)| labels[idx[i * 10 + j] as usize] == labels[i])
        .count();
    let frac = agree as f64 / 4000.0;
    // ImageNet features separate Fashion-MNIST classes far above chance (0.1).
    assert!(frac > 0.5, "10-NN label agreement {frac}");
}

#[test]
fn vit_node_runs_a_custom_architecture_checkpoint() {
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity/vit_dinov2_tiny.safetensors");
    let a = assets();
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: vit
nodes:
  data:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, limit: 6}}
  feats:
    kind: features/vit
    inputs: {{images: data}}
    params:
      model: custom
      arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}
      weights: {w}
      resolution: 28
",
            a = a.display(),
            w = fixture.display()
        ),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, _) = tensor(
        &object(&d, "feats", "exp.yaml", "features.safetensors"),
        "features",
    );
    assert_eq!(shape, [6, 32]);
    // A resolution that is not a multiple of the patch is refused up front.
    let bad = std::fs::read_to_string(d.path().join("exp.yaml"))
        .unwrap()
        .replace("resolution: 28", "resolution: 30");
    d.write("exp.yaml", &bad);
    let o = d.run(&["run", "exp.yaml"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("multiple of the patch size 7"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn features_command_writes_a_feature_file() {
    let a = assets();
    let d = Dir::new();
    let out = d.path().join("f.safetensors");
    let o = d.run(&[
        "features",
        "mobilenet_v2",
        &a.join("mnist/t10k-images-idx3-ubyte").display().to_string(),
        "--weights",
        &a.join("weights/mobilenet_v2-b0353104.pth")
            .display()
            .to_string(),
        "-o",
        &out.display().to_string(),
        "--resolution",
        "32",
        "--batch-size",
        "500",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (shape, _) = tensor(&out, "features");
    assert_eq!(shape, [10000, 1280]);
}

//! FID and FDD: the metric nodes in an experiment on real images (real Inception weights), the
//! `cedm fid` command and its statistics files, and FDD on the tiny ViT parity checkpoint (no
//! DINOv2 weights exist here).

use std::path::PathBuf;

use crate::util::{Dir, stderr, stdout};

fn assets() -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    assert!(
        p.join("weights/inception-2015-12-05.safetensors").exists()
            && p.join("fashion-mnist/.complete").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    p
}

fn metrics(d: &Dir, label: &str) -> serde_json::Value {
    let show = stdout(&d.run(&["cache", "show", label, "exp.yaml"]));
    let line = show
        .lines()
        .find(|l| l.trim_start().starts_with("metrics.json"))
        .unwrap_or_else(|| panic!("metrics.json in\n{show}"));
    let path = line.split_whitespace().last().unwrap();
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[test]
fn fid_nodes_compute_reference_once_and_report_runs() {
    let a = assets();
    let d = Dir::new();
    let yaml = |repeats: usize| {
        format!(
            "name: fid
vars: {{w: {a}/weights/inception-2015-12-05.safetensors}}
nodes:
  train:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 40}}
  other:
    kind: data/idx
    params: {{images: {a}/mnist/t10k-images-idx3-ubyte, limit: 40}}
  ref:
    kind: metrics/fid_ref
    inputs: {{images: train}}
    params: {{weights: \"${{w}}\"}}
  fid_other:
    kind: metrics/fid
    inputs: {{samples: other, ref: ref}}
    params: {{weights: \"${{w}}\", repeats: {repeats}}}
  fid_self:
    kind: metrics/fid
    inputs: {{samples: train, ref: ref}}
    params: {{weights: \"${{w}}\"}}
",
            a = a.display()
        )
    };
    d.write("exp.yaml", &yaml(2));
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The results table shows the FIDs.
    assert!(stdout(&o).contains("fid_min"), "{}", stdout(&o));
    let m = metrics(&d, "fid_other");
    let runs = m["fid_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(m["samples_per_run"], 20);
    let (r0, r1) = (runs[0].as_f64().unwrap(), runs[1].as_f64().unwrap());
    assert!((m["fid_min"].as_f64().unwrap() - r0.min(r1)).abs() < 1e-9);
    assert!((m["fid"].as_f64().unwrap() - (r0 + r1) / 2.0).abs() < 1e-9);
    // MNIST digits are far from Fashion-MNIST; the training set against itself is at 0.
    let self_fid = metrics(&d, "fid_self")["fid"].as_f64().unwrap();
    assert!(
        self_fid.abs() < 1e-6,
        "FID of a set against its own statistics: {self_fid}"
    );
    assert!(r0 > 50.0 && r1 > 50.0, "{r0} {r1}");

    // Another protocol recomputes only that node; the reference statistics stay cached.
    d.write("exp.yaml", &yaml(1));
    let s = stdout(&d.run(&["status", "exp.yaml"]));
    let line = |id: &str| {
        s.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} in\n{s}"))
            .to_string()
    };
    assert!(line("ref").contains("cached"), "{s}");
    assert!(!line("fid_other").contains("cached"), "{s}");
    assert!(line("fid_self").contains("cached"), "{s}");

    // A reference of the wrong kind and a missing reference are clear errors.
    let bad = yaml(1).replace(
        "inputs: {samples: other, ref: ref}",
        "inputs: {samples: other}",
    );
    d.write("exp.yaml", &bad);
    let o = d.run(&["run", "exp.yaml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no reference"), "{}", stderr(&o));
}

#[test]
fn fid_command_matches_its_saved_statistics() {
    let a = assets();
    let d = Dir::new();
    let fashion = a
        .join("fashion-mnist/t10k-images-idx3-ubyte.gz")
        .display()
        .to_string();
    let mnist = a.join("mnist/t10k-images-idx3-ubyte").display().to_string();
    let w = a
        .join("weights/inception-2015-12-05.safetensors")
        .display()
        .to_string();
    let o = d.run(&["fid", &fashion, &mnist, "--limit", "24", "--weights", &w]);
    assert!(o.status.success(), "{}", stderr(&o));
    let direct = stdout(&o);
    assert!(direct.starts_with("FID: "), "{direct}");
    let stats = d.path().join("fashion.npz");
    let o = d.run(&[
        "fid",
        "--save-stats",
        &fashion,
        &stats.display().to_string(),
        "--limit",
        "24",
        "--weights",
        &w,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stats_arg = stats.display().to_string();
    let from_stats = |extra: &[&str]| {
        let mut args = vec!["fid", &stats_arg, &mnist, "--limit", "24", "--weights", &w];
        args.extend_from_slice(extra);
        d.run(&args)
    };
    let o = from_stats(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), direct, "FID from saved statistics differs");
    // --json: the same number, with the set sizes and dimension.
    let o = from_stats(&["--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let text: f64 = direct.trim().trim_start_matches("FID: ").parse().unwrap();
    assert_eq!(j["metric"], "FID");
    assert!((j["value"].as_f64().unwrap() - text).abs() < 1e-6, "{j}");
    // An .npz records no image count: null, not 0.
    assert!(j["n_a"].is_null(), "{j}");
    assert_eq!(
        (j["n_b"].as_u64(), j["dims"].as_u64()),
        (Some(24), Some(2048)),
        "{j}"
    );
    // Statistics against themselves: 0.
    let o = d.run(&[
        "fid",
        &stats.display().to_string(),
        &stats.display().to_string(),
    ]);
    let v: f64 = stdout(&o)
        .trim()
        .trim_start_matches("FID: ")
        .parse()
        .unwrap();
    assert!(v.abs() < 1e-6, "{v}");
    // Without --weights, the default weights are found wherever the command runs (here a
    // temporary directory): beside the binary's repository.
    let o = d.run(&["fid", &fashion, &mnist, "--limit", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("FID: "), "{}", stdout(&o));
    // FDD needs a checkpoint.
    let o = d.run(&["fid", "--metric", "fdd", &fashion, &mnist]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("needs --weights"), "{}", stderr(&o));
}

#[test]
fn fdd_nodes_run_a_custom_dinov2_checkpoint() {
    let a = assets();
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity/vit_dinov2_tiny.safetensors");
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: fdd
nodes:
  train:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 200}}
  other:
    kind: data/idx
    params: {{images: {a}/mnist/t10k-images-idx3-ubyte, limit: 200}}
  ref:
    kind: metrics/fdd_ref
    inputs: {{images: train}}
    params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {w}, resolution: 28}}
  fdd:
    kind: metrics/fdd
    inputs: {{samples: other, ref: ref}}
    params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {w}, resolution: 28}}
  fdd_self:
    kind: metrics/fdd
    inputs: {{samples: train, ref: ref}}
    params: {{model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {w}, resolution: 28}}
",
            a = a.display(),
            w = fixture.display()
        ),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let other = metrics(&d, "fdd")["fdd"].as_f64().unwrap();
    let same = metrics(&d, "fdd_self")["fdd"].as_f64().unwrap();
    assert!(same.abs() < 1e-6, "{same}");
    assert!(other > 0.01, "{other}");
}

/// `cluster/mapping` (seed Fig. 2's cluster → class map) on k-means clusters of real features:
/// one class per cluster, and with C = the number of classes its agreement is the Hungarian
/// accuracy `cluster/metrics` reports.
#[test]
fn cluster_mapping_agrees_with_the_hungarian_accuracy() {
    let a = assets();
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: mapping
nodes:
  train: {{kind: data/idx, params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 300}}}}
  feats: {{kind: features/mobilenet_v2, inputs: {{images: train}}, params: {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  kmeans: {{kind: cluster/kmeans, inputs: {{features: feats}}, params: {{clusters: 10, n_init: 2}}}}
  scores: {{kind: cluster/metrics, inputs: {{clusters: kmeans, truth: train}}}}
  mapping: {{kind: cluster/mapping, inputs: {{clusters: kmeans, truth: train}}}}
",
            a = a.display()
        ),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let read = |node: &str, file: &str| -> serde_json::Value {
        let out = d.path().join(node);
        let e = d.run(&[
            "cache",
            "export",
            node,
            out.to_str().unwrap(),
            "--experiment",
            "exp.yaml",
        ]);
        assert!(e.status.success(), "{}", stderr(&e));
        serde_json::from_slice(&std::fs::read(out.join(file)).unwrap()).unwrap()
    };
    let m = read("mapping", "mapping.json");
    let s = read("scores", "metrics.json");
    let c2k: Vec<i64> = m["cluster_to_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().expect("every cluster has a class when C = K"))
        .collect();
    let mut sorted = c2k.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..10).collect::<Vec<i64>>(), "one to one");
    let agreement = m["agreement"].as_f64().unwrap();
    assert!(
        (agreement * 100.0 - s["acc"].as_f64().unwrap()).abs() < 1e-9,
        "{agreement} vs ACC {}",
        s["acc"]
    );
}

/// `labels/clip` on the tiny OpenCLIP parity checkpoint (no CLIP weights exist here) over real
/// Fashion-MNIST images with the real vocabulary: a label per image, the classes' counts and
/// the cluster statistics written as a cluster kind would, and an `edm/train` conditioned on
/// them that records CLIP as its source with C = the number of classes.
#[test]
fn clip_pseudo_labels_are_a_label_source_for_edm() {
    let a = assets();
    let parity = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity");
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: clip
nodes:
  train:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 40, resolution: 16}}
  clip:
    kind: labels/clip
    inputs: {{images: train}}
    params:
      model: custom
      weights: {p}/clip_tiny.safetensors
      vocabulary: {a}/clip/bpe_simple_vocab_16e6.txt.gz
      arch: &arch {{embed_dim: 12, image_size: 32, patch: 8, vision: {{width: 32, layers: 2, heads: 4, mlp: 128}}, text: {{width: 8, layers: 2, heads: 2, mlp: 32}}}}
      classes: [t-shirt, trouser, pullover, dress, coat, sandal, shirt, sneaker, bag, ankle boot]
  clip_features:
    kind: features/clip
    inputs: {{images: train}}
    params: {{model: custom, weights: {p}/clip_tiny.safetensors, arch: *arch}}
  edm:
    kind: edm/train
    inputs: {{images: train, labels: clip}}
    params: {{model: small, model_channels: 8, channel_mult: [1], num_blocks: 1, attn_resolutions: [], dropout: 0.0, augment_p: 0.0, duration_kimg: 0.016, batch_size: 8, log_every_kimg: 0.008}}
",
            a = a.display(),
            p = parity.display()
        ),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&d, "clip");
    assert_eq!(m["clusters"], 10);
    let used = m["used_clusters"].as_u64().unwrap();
    assert!((1..=10).contains(&used), "{m}");
    let show = stdout(&d.run(&["cache", "show", "clip", "exp.yaml"]));
    let classes = show
        .lines()
        .find(|l| l.trim_start().starts_with("classes.json"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap();
    let c: serde_json::Value = serde_json::from_slice(&std::fs::read(classes).unwrap()).unwrap();
    let counts: Vec<u64> = c["images_per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u64>(), 40);
    assert_eq!(counts.iter().filter(|&&n| n > 0).count() as u64, used);
    assert_eq!(c["prompts"][1], "a blurry photo of a {}");
    let show = stdout(&d.run(&["cache", "show", "edm", "exp.yaml"]));
    let labels = show
        .lines()
        .find(|l| l.trim_start().starts_with("labels.json"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap();
    let l: serde_json::Value = serde_json::from_slice(&std::fs::read(labels).unwrap()).unwrap();
    assert_eq!(l["source"], "labels/clip");
    assert_eq!(l["clusters"], 10);
    assert_eq!(l["dim"].as_u64().unwrap(), used);
    // features/clip gives the image embeddings labels/clip classified: normalised, their best
    // cosine to the class embeddings is each image's recorded similarity.
    let f = cedm_nodes::artifacts::features::Features::read_file(&output_path(
        &d,
        "clip_features",
        "features.safetensors",
    ))
    .unwrap();
    assert_eq!((f.n, f.d), (40, 12));
    let scores = cedm_nodes::artifacts::safetensors::Tensors::open(&output_path(
        &d,
        "clip",
        "scores.safetensors",
    ))
    .unwrap();
    let classifier = scores.f32("classifier").unwrap().data;
    let sims = scores.f32("similarity").unwrap().data;
    for (i, row) in f.data.chunks(12).enumerate() {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        let best = classifier
            .chunks(12)
            .map(|c| row.iter().zip(c).map(|(a, b)| a * b).sum::<f32>() / norm)
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(
            (best - sims[i]).abs() < 1e-5,
            "image {i}: {best} vs {}",
            sims[i]
        );
    }
    // A bad prompt list is refused before anything runs, naming the param.
    let bad = std::fs::read_to_string(d.path().join("exp.yaml"))
        .unwrap()
        .replace("      classes:", "      prompts: [a photo]\n      classes:");
    d.write("bad.yaml", &bad);
    let o = d.run(&["run", "bad.yaml"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("prompts"), "{}", stderr(&o));

    // `cedm eval` embeds images with the same CLIP (`clip:custom`, its architecture from
    // --arch): the training images against the features/clip node's features are the same
    // set, so FD_CLIP is 0 to round-off and precision/recall are 1.
    d.write(
        "arch.json",
        r#"{"embed_dim": 12, "image_size": 32, "patch": 8, "vision": {"width": 32, "layers": 2, "heads": 4, "mlp": 128}, "text": {"width": 8, "layers": 2, "heads": 2, "mlp": 32}}"#,
    );
    // (Cache objects as they are: eval tells inputs by their content.)
    let images = output_path(&d, "train", "images.safetensors");
    let feats = output_path(&d, "clip_features", "features.safetensors");
    let w = format!(
        "clip:custom={}",
        parity.join("clip_tiny.safetensors").display()
    );
    let eval = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            images.to_str().unwrap(),
            feats.to_str().unwrap(),
            "-m",
            "fd:clip:custom,prdc:clip:custom",
            "--weights",
            &w,
            "--bootstrap",
            "0",
            "--json",
        ];
        args.extend_from_slice(extra);
        d.run(&args)
    };
    let o = eval(&["--arch", "clip:custom=arch.json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let by = |m: &str| {
        v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["metric"] == m)
            .unwrap_or_else(|| panic!("{m} in {v}"))["value"]
            .as_f64()
            .unwrap()
    };
    assert!(by("FD_CLIP").abs() < 1e-4, "{v}");
    assert_eq!((by("precision"), by("recall")), (1.0, 1.0), "{v}");
    // Without its architecture a custom encoder is a usage error naming --arch.
    let o = eval(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("needs `arch`") && stderr(&o).contains("clip:custom=FILE.json"),
        "{}",
        stderr(&o)
    );
}

/// KID and PRDC from cached MobileNetV2 features: two halves of Fashion-MNIST are close (KID
/// near 0, high precision/coverage), Fashion-MNIST against MNIST is far; adding the metrics
/// re-runs no encoder; an impossible subset size is a clear error.
#[test]
fn kid_and_prdc_rank_near_and_far_sets_from_cached_features() {
    let a = assets();
    let d = Dir::new();
    let yaml = format!(
        "name: feats
nodes:
  fa:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 200}}
  fb:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, limit: 200}}
  mn:
    kind: data/idx
    params: {{images: {a}/mnist/train-images-idx3-ubyte, limit: 200}}
  ea: {{kind: features/mobilenet_v2, inputs: {{images: fa}}, params: &m {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  eb: {{kind: features/mobilenet_v2, inputs: {{images: fb}}, params: *m}}
  em: {{kind: features/mobilenet_v2, inputs: {{images: mn}}, params: *m}}
  kid_near: {{kind: metrics/kid, inputs: {{samples: eb, reference: ea}}, params: {{subsets: 10, subset_size: 100}}}}
  kid_far: {{kind: metrics/kid, inputs: {{samples: em, reference: ea}}, params: {{subsets: 10, subset_size: 100}}}}
  prdc_near: {{kind: metrics/prdc, inputs: {{samples: eb, reference: ea}}}}
  prdc_far: {{kind: metrics/prdc, inputs: {{samples: em, reference: ea}}}}
  fd_near: {{kind: metrics/fd, inputs: {{samples: eb, reference: ea}}, params: {{bootstrap: 10}}}}
  fd_far: {{kind: metrics/fd, inputs: {{samples: em, reference: ea}}, params: {{bootstrap: 10}}}}
",
        a = a.display()
    );
    d.write("exp.yaml", &yaml);
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (kn, kf) = (metrics(&d, "kid_near"), metrics(&d, "kid_far"));
    // The summary joins KID and PRDC to the distance of the same sample features: each FD row
    // shows its set's KID (×10³, with its interval) and precision / recall / density / coverage.
    let out = stdout(&o);
    let summary = out.split("\nSummary\n").nth(1).unwrap_or_default();
    let row = |label: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(label))
            .unwrap_or_else(|| panic!("no summary row {label}:\n{out}"))
            .to_string()
    };
    assert!(
        out.contains("KID ×10³") && out.contains("P / R / D / C"),
        "{out}"
    );
    let kid_text = format!("{:.2}", kn["kid"].as_f64().unwrap() * 1e3);
    assert!(
        row("fd_near ").contains(&kid_text),
        "{} lacks {kid_text}",
        row("fd_near ")
    );
    let pf = metrics(&d, "prdc_far");
    let prdc_text = format!(
        "{:.2} / {:.2}",
        pf["precision"].as_f64().unwrap(),
        pf["recall"].as_f64().unwrap()
    );
    assert!(
        row("fd_far ").contains(&prdc_text),
        "{} lacks {prdc_text}",
        row("fd_far ")
    );
    // …and `cedm exp show` has them as columns.
    let o = d.run(&["exp", "show", "exp.yaml", "--format", "csv"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let header = stdout(&o).lines().next().unwrap_or_default().to_string();
    for c in ["KID", "KID ±", "precision", "recall", "density", "coverage"] {
        assert!(header.split(',').any(|h| h == c), "{c} in {header}");
    }
    let (near, far) = (kn["kid"].as_f64().unwrap(), kf["kid"].as_f64().unwrap());
    assert!(near < far / 5.0, "KID near {near}, far {far}");
    assert_eq!(kn["subsets"], 10);
    assert_eq!(kn["encoder"], "features/mobilenet_v2");
    // Bootstrap intervals (100 resamples of the samples): each holds its estimate, and the far
    // set's lies clear above the near set's.
    for (name, m) in [("near", &kn), ("far", &kf)] {
        let (lo, hi, v) = (
            m["ci_low"].as_f64().unwrap(),
            m["ci_high"].as_f64().unwrap(),
            m["kid"].as_f64().unwrap(),
        );
        assert!(lo < v && v < hi, "{name}: {v} not in [{lo}, {hi}]");
        assert!(m["boot_std"].as_f64().unwrap() > 0.0, "{m}");
        assert_eq!(m["bootstrap"], 100);
    }
    assert!(
        kf["ci_low"].as_f64().unwrap() > kn["ci_high"].as_f64().unwrap(),
        "{kn} {kf}"
    );
    let (pn, pf) = (metrics(&d, "prdc_near"), metrics(&d, "prdc_far"));
    for f in ["precision", "recall", "density", "coverage"] {
        let (x, y) = (pn[f].as_f64().unwrap(), pf[f].as_f64().unwrap());
        assert!(x > y, "{f}: near {x}, far {y}");
    }
    assert_eq!(pn["precision_recall_k"], 3);
    assert_eq!(pn["density_coverage_k"], 5);
    // A metric added later reads the cached features: no encoder runs again.
    d.write(
        "exp.yaml",
        &format!("{yaml}  kid_more: {{kind: metrics/kid, inputs: {{samples: em, reference: eb}}, params: {{subsets: 5, subset_size: 50, bootstrap: 0}}}}\n"),
    );
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("1 ran"), "{}", stderr(&o));
    let more = metrics(&d, "kid_more");
    assert!(
        more["ci_low"].is_null() && more["boot_std"].is_null(),
        "{more}"
    );
    assert_eq!(more["bootstrap"], 0);
    d.write(
        "bad.yaml",
        &yaml.replace(
            "subset_size: 100}}\n  kid_far",
            "subset_size: 500}}\n  kid_far",
        ),
    );
    let o = d.run(&["run", "bad.yaml", "--only", "kid_near"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lower subset_size"), "{}", stderr(&o));
}

/// An `.npy` (v1.0, little-endian float32, C order) of `[n, d]`, as numpy's `save`.
fn write_npy(path: &std::path::Path, n: usize, d: usize, data: &[f32]) {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({n}, {d}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    data.iter()
        .for_each(|v| out.extend_from_slice(&v.to_le_bytes()));
    std::fs::write(path, out).unwrap();
}

fn output_path(d: &Dir, label: &str, file: &str) -> PathBuf {
    let show = stdout(&d.run(&["cache", "show", label, "exp.yaml"]));
    let line = show
        .lines()
        .find(|l| l.trim_start().starts_with(file))
        .unwrap_or_else(|| panic!("{file} in\n{show}"));
    PathBuf::from(line.split_whitespace().last().unwrap())
}

#[test]
fn fd_from_cached_features_has_interval_infinity_and_per_class_values_and_cedm_eval_agrees() {
    let a = assets();
    let d = Dir::new();
    let yaml = format!(
        "name: fd
nodes:
  fa:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 200}}
  fb:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/t10k-labels-idx1-ubyte.gz, limit: 200}}
  mn:
    kind: data/idx
    params: {{images: {a}/mnist/train-images-idx3-ubyte, labels: {a}/mnist/train-labels-idx1-ubyte, limit: 200}}
  ea: {{kind: features/mobilenet_v2, inputs: {{images: fa}}, params: &m {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  eb: {{kind: features/mobilenet_v2, inputs: {{images: fb}}, params: *m}}
  em: {{kind: features/mobilenet_v2, inputs: {{images: mn}}, params: *m}}
  fd_near: {{kind: metrics/fd, inputs: {{samples: eb, reference: ea, conditions: fb, labels: fa}}, params: &p {{bootstrap: 20, infinity_points: 4, min_cluster: 5}}}}
  fd_far: {{kind: metrics/fd, inputs: {{samples: em, reference: ea, conditions: mn, labels: fa}}, params: *p}}
",
        a = a.display()
    );
    d.write("exp.yaml", &yaml);
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let (near, far) = (metrics(&d, "fd_near"), metrics(&d, "fd_far"));
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    assert_eq!(near["metric"], "FD_MobileNetV2");
    assert!(f(&near, "fd") < f(&far, "fd"), "{near}\n{far}");
    assert!(
        f(&near, "ci_low") < f(&near, "fd") && f(&near, "fd") < f(&near, "ci_high"),
        "{near}"
    );
    assert!(
        f(&near, "boot_bias") > 0.0,
        "bootstrap replicates of an FD are biased up: {near}"
    );
    assert_eq!(near["infinity"].as_array().unwrap().len(), 4);
    assert!(
        f(&near, "fd_infinity") < f(&near, "fd"),
        "FD∞ below FD at N: {near}"
    );
    // Per class: ten classes, every test image counted once; fashion against fashion is
    // closer than digits against fashion class by class.
    let pc = near["per_cluster"].as_array().unwrap();
    assert_eq!(pc.len(), 10);
    let total: u64 = pc.iter().map(|c| c["samples"].as_u64().unwrap()).sum();
    assert_eq!(total, 200);
    assert!(f(&near, "fd_per_cluster") < f(&far, "fd_per_cluster"));
    // Every distance has its bootstrap interval: FD∞, each cluster's FD and their mean. An
    // interval holds its estimate, and the mean's is narrower than a single cluster's.
    let ci = |v: &serde_json::Value| {
        let a = v.as_array().unwrap_or_else(|| panic!("interval {v}"));
        (a[0].as_f64().unwrap(), a[1].as_f64().unwrap())
    };
    let (lo, hi) = ci(&near["fd_infinity_ci"]);
    assert!(lo < hi && hi - lo < 2.0 * f(&near, "fd"), "{near}");
    let (mlo, mhi) = ci(&near["fd_per_cluster_ci"]);
    assert!(
        mlo < f(&near, "fd_per_cluster") && f(&near, "fd_per_cluster") < mhi,
        "{near}"
    );
    for c in pc {
        let (clo, chi) = ci(&c["ci"]);
        let v = c["fd"].as_f64().unwrap();
        assert!(clo < v && v < chi, "{c}");
        assert!(
            chi - clo > mhi - mlo,
            "a cluster's interval {c} vs the mean's [{mlo}, {mhi}]"
        );
    }
    // The summary shows the interval.
    assert!(stdout(&o).contains("bootstrap CI"), "{}", stdout(&o));
    // …and reads it: fashion against fashion is lowest, digits clear of its interval.
    assert!(
        stdout(&o).contains("What it shows")
            && stdout(&o).contains("FD_MobileNetV2: lowest for fd_near")
            && stdout(&o).contains("clearly worse: fd_far."),
        "{}",
        stdout(&o)
    );

    // `cedm eval` on the cached features, on an .npy of them and on the raw IDX files gives
    // the node's numbers (the same functions, the same seeds).
    let fa = output_path(&d, "ea", "features.safetensors");
    let fb = output_path(&d, "eb", "features.safetensors");
    let eval_json = |args: &[&str]| -> serde_json::Value {
        let o = d.run(args);
        assert!(o.status.success(), "{}", stderr(&o));
        serde_json::from_str(&stdout(&o)).unwrap()
    };
    let common = ["--bootstrap", "20", "--json"];
    let by_name = |v: &serde_json::Value, m: &str| -> serde_json::Value {
        v["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["metric"] == m)
            .cloned()
            .unwrap_or_else(|| panic!("{m} in {v}"))
    };
    let (fas, fbs) = (fa.to_str().unwrap(), fb.to_str().unwrap());
    let mut args = vec![
        "eval",
        fbs,
        fas,
        "-m",
        "fd:mobilenet_v2,kid:mobilenet_v2,prdc:mobilenet_v2",
    ];
    args.extend(["--kid-subsets", "10", "--kid-subset-size", "100"]);
    args.extend(common);
    let v = eval_json(&args);
    let fd = by_name(&v, "FD_MobileNetV2");
    assert!((f(&fd, "value") - f(&near, "fd")).abs() < 1e-9 * f(&near, "fd"));
    assert!((f(&fd, "ci_low") - f(&near, "ci_low")).abs() < 1e-9 * f(&near, "fd"));
    assert!(f(&by_name(&v, "KID"), "value") > 0.0);
    for m in ["precision", "recall", "density", "coverage"] {
        let x = f(&by_name(&v, m), "value");
        assert!((0.0..=1.5).contains(&x), "{m} {x}");
    }
    let t = cedm_nodes::artifacts::features::Features::read_file(&fb).unwrap();
    let npy = d.path().join("b.npy");
    write_npy(&npy, t.n, t.d, &t.data);
    let v = eval_json(&[
        "eval",
        npy.to_str().unwrap(),
        fas,
        "-m",
        "fd:mobilenet_v2",
        "--bootstrap",
        "20",
        "--json",
    ]);
    assert!(
        (f(&by_name(&v, "FD_MobileNetV2"), "value") - f(&near, "fd")).abs() < 1e-9 * f(&near, "fd")
    );
    let idx_b = format!("{}/fashion-mnist/t10k-images-idx3-ubyte.gz", a.display());
    let idx_a = format!("{}/fashion-mnist/train-images-idx3-ubyte.gz", a.display());
    let w = format!(
        "mobilenet_v2={}/weights/mobilenet_v2-b0353104.pth",
        a.display()
    );
    let o = d.run(&[
        "eval",
        &idx_b,
        &idx_a,
        "-m",
        "fd:mobilenet_v2",
        "--limit",
        "200",
        "--resolution",
        "32",
        "--weights",
        &w,
        "--bootstrap",
        "20",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let line = stdout(&o);
    let text = line
        .lines()
        .find(|l| l.starts_with("FD_MobileNetV2"))
        .unwrap();
    let shown: f64 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
    assert!(
        (shown - f(&near, "fd")).abs() < 0.006,
        "{text} vs {}",
        f(&near, "fd")
    );
    // The same 200 test images as a folder of PNGs and as a zip of them (sorted by name, as
    // EDM's dataset tool writes them) embed to the same features; a statistics file of the
    // reference gives the node's distance.
    let set = cedm_nodes::artifacts::images::ImageSet::read_file(&output_path(
        &d,
        "fb",
        "images.safetensors",
    ))
    .unwrap();
    let folder = d.path().join("b_png");
    std::fs::create_dir_all(&folder).unwrap();
    let zip_path = d.path().join("b.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip_path).unwrap());
    for i in 0..set.n {
        let mut png = Vec::new();
        image::GrayImage::from_raw(set.w as u32, set.h as u32, set.image(i).to_vec())
            .unwrap()
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let name = format!("{i:05}.png");
        std::fs::write(folder.join(&name), &png).unwrap();
        z.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut z, &png).unwrap();
    }
    z.finish().unwrap();
    for input in [&folder, &zip_path] {
        let v = eval_json(&[
            "eval",
            input.to_str().unwrap(),
            fas,
            "-m",
            "fd:mobilenet_v2",
            "--resolution",
            "32",
            "--weights",
            &w,
            "--bootstrap",
            "0",
            "--json",
        ]);
        let got = f(&by_name(&v, "FD_MobileNetV2"), "value");
        assert!(
            (got - f(&near, "fd")).abs() < 1e-6 * f(&near, "fd"),
            "{}: {got} vs {}",
            input.display(),
            f(&near, "fd")
        );
    }
    let ta = cedm_nodes::artifacts::features::Features::read_file(&fa).unwrap();
    let stats = d.path().join("ref_stats.safetensors");
    cedm_nodes::artifacts::stats::Stats::from_features(&ta.data, ta.n, ta.d)
        .unwrap()
        .write(&stats, "fd_mobilenet_v2")
        .unwrap();
    let v = eval_json(&[
        "eval",
        fbs,
        stats.to_str().unwrap(),
        "-m",
        "fd:mobilenet_v2",
        "--bootstrap",
        "20",
        "--json",
    ]);
    let fd = by_name(&v, "FD_MobileNetV2");
    assert!(
        (f(&fd, "value") - f(&near, "fd")).abs() < 1e-9 * f(&near, "fd"),
        "{v}"
    );
    assert!(
        (f(&fd, "ci_low") - f(&near, "ci_low")).abs() < 1e-9 * f(&near, "fd"),
        "{v}"
    );
    // Statistics serve Fréchet distances only.
    let o = d.run(&[
        "eval",
        fbs,
        stats.to_str().unwrap(),
        "-m",
        "kid:mobilenet_v2",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("statistics file"), "{}", stderr(&o));
    // Usage errors say what is expected.
    let o = d.run(&["eval", fbs, fas, "-m", "fid,bleu"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown metric `bleu`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn probe_scores_real_images_as_its_test_accuracy() {
    let a = assets();
    let d = Dir::new();
    let yaml = format!(
        "name: probe
nodes:
  tr:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 600}}
  te:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/t10k-labels-idx1-ubyte.gz, limit: 200}}
  ftr: {{kind: features/mobilenet_v2, inputs: {{images: tr}}, params: &m {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  fte: {{kind: features/mobilenet_v2, inputs: {{images: te}}, params: *m}}
  probe: {{kind: metrics/probe, inputs: {{train: ftr, truth: tr, samples: fte, conditions: te, test: fte, test_truth: te}}}}
  lr: {{kind: metrics/probe, inputs: {{train: ftr, truth: tr, samples: fte, conditions: te, test: fte, test_truth: te}}, params: {{probe: logistic}}}}
  bad: {{kind: metrics/probe, inputs: {{train: ftr, truth: tr, samples: fte, conditions: te, test: fte}}}}
",
        a = a.display()
    );
    d.write("exp.yaml", &yaml);
    let o = d.run(&["run", "exp.yaml", "--only", "probe"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&d, "probe");
    let acc = m["accuracy"].as_f64().unwrap();
    // Real test images against their own labels: exactly the probe's test accuracy, well above
    // chance (10%).
    assert_eq!(m["test_accuracy"].as_f64().unwrap(), acc);
    assert!(acc > 50.0, "{m}");
    assert_eq!(m["samples"], 200);
    assert_eq!(m["target"], "condition");
    let per: u64 = m["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c[1].as_u64().unwrap())
        .sum();
    assert_eq!(per, 200);
    assert_eq!(m["probe"], "knn");
    // The logistic-regression probe: the same identity, also well above chance.
    let o = d.run(&["run", "exp.yaml", "--only", "lr"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&d, "lr");
    assert_eq!(m["probe"], "logistic");
    assert_eq!(m["c"], 1.0);
    assert_eq!(
        m["test_accuracy"].as_f64().unwrap(),
        m["accuracy"].as_f64().unwrap()
    );
    assert!(m["accuracy"].as_f64().unwrap() > 50.0, "{m}");
    // Half the inputs of the held-out check: a clear error.
    let o = d.run(&["run", "exp.yaml", "--only", "bad"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`test` and `test_truth`"),
        "{}",
        stderr(&o)
    );
}

/// `metrics/classifier` + `metrics/cnn_probe`: a CNN trained on 600 real 16 px images scores
/// real test images as its own test accuracy (well above chance); with `clusters` (the ground
/// truth as a clustering) and `truth`, the same images are checked against their cluster's
/// majority class — the same share; a retrain with the same key is byte-identical; samples of
/// another size and half the cluster inputs are clear errors.
#[test]
fn cnn_probe_scores_real_images_as_its_classifier_test_accuracy() {
    let a = assets();
    let d = Dir::new();
    let yaml = format!(
        "name: cnn
nodes:
  tr:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/train-labels-idx1-ubyte.gz, limit: 600, resolution: 16}}
  te:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/t10k-labels-idx1-ubyte.gz, limit: 200, resolution: 16}}
  te28:
    kind: data/idx
    params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, labels: {a}/fashion-mnist/t10k-labels-idx1-ubyte.gz, limit: 20}}
  cnn: {{kind: metrics/classifier, inputs: {{train: tr, test: te}}, params: {{epochs: 5, filters: 8, hidden: 32, lr: 0.004}}}}
  probe: {{kind: metrics/cnn_probe, inputs: {{classifier: cnn, samples: te}}}}
  by_cluster: {{kind: metrics/cnn_probe, inputs: {{classifier: cnn, samples: te, clusters: te, truth: te}}}}
  wrong_size: {{kind: metrics/cnn_probe, inputs: {{classifier: cnn, samples: te28}}}}
  half: {{kind: metrics/cnn_probe, inputs: {{classifier: cnn, samples: te, clusters: te}}}}
",
        a = a.display()
    );
    d.write("exp.yaml", &yaml);
    let o = d.run(&["run", "exp.yaml", "--only", "probe", "--only", "by_cluster"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let c = metrics(&d, "cnn");
    let test = c["test_accuracy"].as_f64().unwrap();
    assert!(test > 50.0, "{c}");
    assert_eq!(
        (c["classes"].as_u64(), c["train_items"].as_u64()),
        (Some(10), Some(600))
    );
    let losses: Vec<f64> = c["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(losses.len() == 5 && losses[4] < losses[0], "{c}");
    let m = metrics(&d, "probe");
    assert_eq!(m["probe"], "cnn");
    assert_eq!(m["accuracy"].as_f64().unwrap(), test, "{m}");
    assert_eq!(m["test_accuracy"].as_f64().unwrap(), test);
    assert_eq!(
        (m["samples"].as_u64(), m["target"].as_str()),
        (Some(200), Some("condition"))
    );
    let b = metrics(&d, "by_cluster");
    assert_eq!(b["target"], "cluster majority");
    assert_eq!(b["accuracy"].as_f64().unwrap(), test, "{b}");
    // Deterministic: the classifier trained again in a fresh cache writes the same bytes.
    let o = d.run(&["run", "exp.yaml", "--only", "cnn", "--cache", "again"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let show = stdout(&d.run(&["cache", "show", "cnn", "exp.yaml", "--cache", "again"]));
    let digest = |show: &str| {
        show.lines()
            .find(|l| l.trim_start().starts_with("network.safetensors"))
            .and_then(|l| l.split_whitespace().nth(3).map(str::to_string))
            .unwrap_or_else(|| panic!("network.safetensors in {show}"))
    };
    let first = stdout(&d.run(&["cache", "show", "cnn", "exp.yaml"]));
    assert_eq!(digest(&show), digest(&first));
    for (node, says) in [
        ("wrong_size", "trained on 1×16×16"),
        ("half", "give both `clusters` and `truth`"),
    ] {
        let o = d.run(&["run", "exp.yaml", "--only", node]);
        assert!(!o.status.success(), "{node}");
        assert!(stderr(&o).contains(says), "{node}: {}", stderr(&o));
    }
}

/// `metrics/paired` over a sweep of seeds: the gathered feature sets pair up by seed; Fashion-MNIST
/// test images against MNIST (both compared with Fashion-MNIST training images) is a clear
/// difference with an interval below 0, two Fashion-MNIST sets are not told apart, the same set
/// against itself differs by exactly 0; the run's summary and `cedm report --format markdown`
/// show the comparisons with their verdicts; unpaired inputs are a clear error.
#[test]
fn paired_comparison_over_seeds_decides_only_what_its_interval_shows() {
    let a = assets();
    let d = Dir::new();
    let yaml = format!(
        "name: paired
sweep: {{seed: [0, 1, 2]}}
nodes:
  ref: {{kind: data/idx, params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 300}}}}
  fa: {{kind: data/idx, params: {{images: {a}/fashion-mnist/t10k-images-idx3-ubyte.gz, limit: 100, subset_seed: \"${{seed}}\"}}}}
  fb: {{kind: data/idx, params: {{images: {a}/fashion-mnist/train-images-idx3-ubyte.gz, limit: 100, subset_seed: \"${{seed}}\"}}}}
  mn: {{kind: data/idx, params: {{images: {a}/mnist/train-images-idx3-ubyte, limit: 100, subset_seed: \"${{seed}}\"}}}}
  er: {{kind: features/mobilenet_v2, inputs: {{images: ref}}, params: &m {{weights: {a}/weights/mobilenet_v2-b0353104.pth, resolution: 32}}}}
  ea: {{kind: features/mobilenet_v2, inputs: {{images: fa}}, params: *m}}
  eb: {{kind: features/mobilenet_v2, inputs: {{images: fb}}, params: *m}}
  em: {{kind: features/mobilenet_v2, inputs: {{images: mn}}, params: *m}}
  far: {{kind: metrics/paired, inputs: {{a: ea, b: em, reference: er}}, params: {{name: fashion vs mnist, bootstrap: 50}}}}
  near: {{kind: metrics/paired, inputs: {{a: ea, b: eb, reference: er}}, params: {{bootstrap: 50}}}}
  same: {{kind: metrics/paired, inputs: {{a: ea, b: ea, reference: er}}, params: {{bootstrap: 20}}}}
",
        a = a.display()
    );
    d.write("exp.yaml", &yaml);
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let far = metrics(&d, "far");
    assert_eq!(far["seeds"], 3);
    assert_eq!(far["samples"], 100);
    assert_eq!(far["metric"], "FD_MobileNetV2");
    let diffs: Vec<f64> = far["diffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let delta = far["delta"].as_f64().unwrap();
    assert!(
        (delta - diffs.iter().sum::<f64>() / 3.0).abs() < 1e-9,
        "{far}"
    );
    // Each seed's difference is its own pair's: FD(A_s) − FD(B_s).
    for s in 0..3 {
        let (fa, fb) = (
            far["fd_a"][s].as_f64().unwrap(),
            far["fd_b"][s].as_f64().unwrap(),
        );
        assert!((fa - fb - diffs[s]).abs() < 1e-9 && fa < fb, "{far}");
    }
    let (lo, hi) = (
        far["ci_low"].as_f64().unwrap(),
        far["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < delta && delta < hi && hi < 0.0, "{far}");
    assert_eq!(far["verdict"], "A lower");
    let se = far["se"].as_f64().unwrap();
    let mde = far["min_detectable"].as_f64().unwrap();
    assert!((mde - 2.801_585_218_113 * se).abs() < 1e-6 * mde, "{far}");
    let near = metrics(&d, "near");
    let (lo, hi) = (
        near["ci_low"].as_f64().unwrap(),
        near["ci_high"].as_f64().unwrap(),
    );
    assert!(lo < 0.0 && 0.0 < hi, "{near}");
    assert_eq!(near["verdict"], "no difference detected");
    let same = metrics(&d, "same");
    assert_eq!(same["delta"].as_f64().unwrap(), 0.0, "{same}");
    assert_eq!(same["ci_low"].as_f64().unwrap(), 0.0, "{same}");
    // The summary and the markdown report name the models and the verdicts.
    let out = stdout(&o);
    assert!(out.contains("Paired comparisons"), "{out}");
    assert!(
        out.contains("fashion vs mnist") && out.contains("ea lower"),
        "{out}"
    );
    let md = stdout(&d.run(&["report", "exp.yaml", "--format", "markdown"]));
    assert!(md.contains("**Paired comparisons**"), "{md}");
    assert!(
        md.contains("| fashion vs mnist | ea | em | FD_MobileNetV2 | 3 |"),
        "{md}"
    );
    assert!(md.contains("ea − em: FD_MobileNetV2 differs by"), "{md}");
    // B unswept: one feature set against three is refused with what to do.
    d.write(
        "bad.yaml",
        &format!(
            "{yaml}  unpaired: {{kind: metrics/paired, inputs: {{a: ea, b: er, reference: er}}}}\n"
        ),
    );
    let o = d.run(&["run", "bad.yaml", "--only", "unpaired"]);
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("`a` has 3 feature sets and `b` 1"),
        "{}",
        stderr(&o)
    );
}

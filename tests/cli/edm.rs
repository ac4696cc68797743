//! EDM training and sampling through the CLI on real Fashion-MNIST images: a small network
//! overfits four images (loss falls ≥ 5×, samples land next to them), and a killed training
//! resumes from its checkpoint to the same result as an uninterrupted one; a longer training
//! resumes from a shorter one's cached result (snapshot-level caching) to the bytes of a fresh
//! run, and snapshots published on the way are cache hits.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{Dir, events, output_digests, stderr, stdout, with_event};

fn exp(duration: &str) -> String {
    exp_with(duration, "")
}

/// The experiment with extra `edm/train` params (`, key: value` pairs).
fn exp_with(duration: &str, extra: &str) -> String {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    assert!(
        a.join(".complete").exists(),
        "assets missing: run scripts/fetch_assets.sh"
    );
    format!(
        "name: overfit
nodes:
  data:
    kind: data/idx
    params: {{images: {a}/train-images-idx3-ubyte.gz, labels: {a}/train-labels-idx1-ubyte.gz, limit: 4, resolution: 16}}
  train:
    kind: edm/train
    inputs: {{images: data, labels: data}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.0, duration_kimg: {duration}, batch_size: 8, lr: 0.005, lr_rampup_kimg: 0.1,
             ema_halflife_kimg: 0.05, log_every_kimg: 0.2, checkpoint_every_kimg: 0.2{extra}}}
  sample:
    kind: edm/sample
    inputs: {{network: train}}
    params: {{count: 16, steps: 18, grid_rows: 3, grid_cols: 4}}
",
        a = a.display()
    )
}

fn read_u8(path: &std::path::Path, name: &str) -> (Vec<usize>, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let shape: Vec<usize> = header[name]["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let off = header[name]["data_offsets"].as_array().unwrap();
    (
        shape,
        bytes[8 + hlen + off[0].as_u64().unwrap() as usize
            ..8 + hlen + off[1].as_u64().unwrap() as usize]
            .to_vec(),
    )
}

/// Run `exp.yaml`, export its `train` node to `DIR/net`, and return that folder and the logged
/// loss curve.
fn train_and_export(d: &Dir) -> (PathBuf, Vec<f64>) {
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("net");
    let e = d.run(&[
        "cache",
        "export",
        "train",
        out.to_str().unwrap(),
        "--experiment",
        "exp.yaml",
    ]);
    assert!(e.status.success(), "{}", stderr(&e));
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("training.json")).unwrap()).unwrap();
    let losses = log["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["loss"].as_f64().unwrap())
        .collect();
    (out, losses)
}

#[test]
fn a_small_edm_overfits_four_images_and_samples_near_them() {
    let d = Dir::new();
    d.write("exp.yaml", &exp("4"));
    let (out, losses) = train_and_export(&d);
    let last = losses[losses.len() - 3..].iter().sum::<f64>() / 3.0;
    assert!(
        losses[0] / last >= 5.0,
        "loss fell only {:.2}× ({losses:?})",
        losses[0] / last
    );
    assert!(out.join("loss.png").exists());
    let smp = d.path().join("smp");
    let dat = d.path().join("dat");
    assert!(
        d.run(&[
            "cache",
            "export",
            "sample",
            smp.to_str().unwrap(),
            "--experiment",
            "exp.yaml"
        ])
        .status
        .success()
    );
    assert!(
        d.run(&[
            "cache",
            "export",
            "data",
            dat.to_str().unwrap(),
            "--experiment",
            "exp.yaml"
        ])
        .status
        .success()
    );
    assert!(smp.join("grid.png").exists());
    let (s_shape, s) = read_u8(&smp.join("images.safetensors"), "images");
    let (_, t) = read_u8(&dat.join("images.safetensors"), "images");
    assert_eq!(s_shape, [16, 1, 16, 16]);
    let rms = |a: &[u8], b: &[u8]| {
        (a.iter()
            .zip(b)
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
            .sum::<f64>()
            / a.len() as f64)
            .sqrt()
    };
    let (s_img, t_img): (Vec<&[u8]>, Vec<&[u8]>) =
        (s.chunks(256).collect(), t.chunks(256).collect());
    let mut pair = f64::INFINITY;
    for i in 0..4 {
        for j in i + 1..4 {
            pair = pair.min(rms(t_img[i], t_img[j]));
        }
    }
    for (k, si) in s_img.iter().enumerate() {
        let near = t_img
            .iter()
            .map(|ti| rms(si, ti))
            .fold(f64::INFINITY, f64::min);
        assert!(
            near < pair / 2.0,
            "sample {k} is {near:.1} grey levels from the nearest training image (closest pair {pair:.1})"
        );
    }
}

#[test]
fn a_killed_training_resumes_from_its_checkpoint_to_the_same_result() {
    let reference = Dir::new();
    reference.write("exp.yaml", &exp("1.6"));
    assert!(
        reference
            .run(&["run", "exp.yaml", "--only", "train"])
            .status
            .success()
    );
    let want = output_digests(&reference, "exp.yaml");

    let d = Dir::new();
    d.write("exp.yaml", &exp("1.6"));
    let mut child = d
        .cedm()
        .args(["run", "exp.yaml", "--only", "train"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait for the first checkpoint, then kill -9.
    let work = d.cache().join("work");
    let t0 = std::time::Instant::now();
    loop {
        let found = std::fs::read_dir(&work)
            .ok()
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.path().join("checkpoint.safetensors").exists());
        if found || t0.elapsed() > Duration::from_secs(120) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let o = d.run(&["run", "exp.yaml", "--only", "train", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = events(&o).iter().any(|e| {
        e["event"] == "log"
            && e["line"]
                .as_str()
                .is_some_and(|l| l.starts_with("resuming from the checkpoint at"))
    });
    assert!(resumed, "the re-run did not resume:\n{}", stdout(&o));
    assert_eq!(
        output_digests(&d, "exp.yaml"),
        want,
        "a resumed training must equal an uninterrupted one"
    );
}

/// Mixed precision (f32 master weights, f16 or bf16 forward/backward) on the CPU backend, which
/// supports both half types: the loss curve tracks full precision's within a few percent at every
/// logged point, is not bit-identical to it (the half path really ran), and f16 needed no skipped
/// steps at its initial loss scale.
#[test]
fn mixed_precision_training_tracks_full_precision() {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    let curve = |prec: &str| -> (Vec<f64>, String) {
        let d = Dir::new();
        d.write(
            "exp.yaml",
            &format!(
                "name: mp
nodes:
  data:
    kind: data/idx
    params: {{images: {a}/train-images-idx3-ubyte.gz, labels: {a}/train-labels-idx1-ubyte.gz, limit: 64, resolution: 16}}
  train:
    kind: edm/train
    inputs: {{images: data, labels: data}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.0, duration_kimg: 0.32, batch_size: 16, lr: 0.005, lr_rampup_kimg: 0.02, log_every_kimg: 0.032, precision: {prec}}}
",
                a = a.display()
            ),
        );
        let (_, losses) = train_and_export(&d);
        (
            losses,
            stdout(&d.run(&["cache", "show", "train", "exp.yaml"])),
        )
    };
    let (full, _) = curve("fp32");
    for (prec, tol) in [("fp16", 0.02), ("bf16", 0.03)] {
        let (mixed, show) = curve(prec);
        assert_eq!(full.len(), mixed.len());
        let worst = full
            .iter()
            .zip(&mixed)
            .map(|(a, b)| (a - b).abs() / a)
            .fold(0f64, f64::max);
        eprintln!(
            "{prec}: worst relative difference {worst:.4}\n  fp32 {full:?}\n  {prec} {mixed:?}"
        );
        assert!(
            worst <= tol,
            "{prec} loss curve departs from fp32 by {worst:.4}: {full:?} vs {mixed:?}"
        );
        assert!(
            worst > 1e-6,
            "{prec} curve equals fp32 exactly: the half path did not run"
        );
        assert!(show.contains("mixed precision"), "{show}");
        if prec == "fp16" {
            assert!(show.contains("skipped_steps = 0"), "{show}");
        }
    }
}

/// All float tensors of a safetensors file.
fn f32_tensors(path: &std::path::Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + hlen]).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for (name, t) in header.as_object().unwrap() {
        if t["dtype"] != "F32" {
            continue;
        }
        let off = t["data_offsets"].as_array().unwrap();
        let data = &bytes[8 + hlen + off[0].as_u64().unwrap() as usize
            ..8 + hlen + off[1].as_u64().unwrap() as usize];
        out.insert(
            name.clone(),
            data.chunks(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        );
    }
    out
}

/// Data-parallel training over three CPU "devices" (uneven shards of a batch of 16) gives the
/// same loss curve and weights as one device up to floating-point order, and `devices` is not
/// part of the key: the data-parallel experiment is already cached by the one-device run.
#[test]
fn data_parallel_training_equals_one_device() {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    let yaml = |devices: &str| {
        format!(
            "name: dp
nodes:
  data:
    kind: data/idx
    params: {{images: {a}/train-images-idx3-ubyte.gz, labels: {a}/train-labels-idx1-ubyte.gz, limit: 64, resolution: 16}}
  train:
    kind: edm/train
    inputs: {{images: data, labels: data}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [8], dropout: 0.0,
             augment_p: 0.1, duration_kimg: 0.32, batch_size: 16, lr: 0.005, lr_rampup_kimg: 0.02, log_every_kimg: 0.032{devices}}}
",
            a = a.display()
        )
    };
    let train = |d: &Dir| {
        let (out, losses) = train_and_export(d);
        (
            losses,
            f32_tensors(&out.join("network.safetensors")),
            stdout(&d.run(&["cache", "show", "train", "exp.yaml"])),
        )
    };
    let one = Dir::new();
    one.write("exp.yaml", &yaml(""));
    let (l1, w1, _) = train(&one);
    // The same cache sees the data-parallel variant as cached: devices are not in the key.
    one.write("exp.yaml", &yaml(", devices: [cpu, cpu, cpu]"));
    let st = stdout(&one.run(&["status", "exp.yaml"]));
    assert!(
        st.lines()
            .any(|l| l.starts_with("train") && l.contains("cached")),
        "{st}"
    );

    let dp = Dir::new();
    dp.write("exp.yaml", &yaml(", devices: [cpu, cpu, cpu]"));
    let (l3, w3, show) = train(&dp);
    assert!(show.contains("data parallel over cpu, cpu, cpu"), "{show}");
    for (a, b) in l1.iter().zip(&l3) {
        assert!(
            (a - b).abs() <= 1e-4 * a,
            "loss curves differ: {l1:?} vs {l3:?}"
        );
    }
    // Weights: every entry within float noise, except the attention's key biases. Their exact
    // gradient is zero (softmax ignores a per-query constant), so their float-noise gradients
    // depend on summation order, and Adam turns noise into full-size steps. EDM's qkv layout
    // interleaves per channel: entry 3i+1 is a key bias.
    assert_eq!(w1.len(), w3.len());
    let (mut worst, mut worst_key) = (0f32, 0f32);
    for (name, v1) in &w1 {
        let scale = v1.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-2);
        for (i, (x, y)) in v1.iter().zip(&w3[name]).enumerate() {
            let d = (x - y).abs() / scale;
            if name.ends_with("qkv.bias") && i % 3 == 1 {
                worst_key = worst_key.max(d);
            } else {
                worst = worst.max(d);
            }
        }
    }
    eprintln!(
        "data parallel vs one device: max relative weight difference {worst:.2e} (key biases: {worst_key:.2e})"
    );
    assert!(
        worst <= 1e-3,
        "weights differ by {worst} relative to their tensor's scale"
    );
}

/// Snapshot-level caching on a real EDM: a 4 kimg run after a 2 kimg run trains only the second
/// half and gives the bytes of a fresh 4 kimg run; a 4 kimg run with `snapshot_kimg: 2`
/// publishes the 2 kimg result, which is then a cache hit equal to the fresh 2 kimg run.
#[test]
fn a_4_kimg_training_resumes_from_a_cached_2_kimg_one_to_the_fresh_bytes() {
    let started = |o: &std::process::Output| with_event(&events(o), "started");
    let logged = |o: &std::process::Output, what: &str| {
        events(o)
            .iter()
            .any(|e| e["event"] == "log" && e["line"].as_str().is_some_and(|l| l.contains(what)))
    };
    // A: 2 kimg, then 4 kimg.
    let a = Dir::new();
    a.write("exp.yaml", &exp("2"));
    let o = a.run(&["run", "exp.yaml", "--only", "train", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let a2 = output_digests(&a, "exp.yaml")["train"].clone();
    a.write("exp.yaml", &exp("4"));
    let o = a.run(&["run", "exp.yaml", "--only", "train", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        logged(
            &o,
            "resuming the trajectory from its snapshot at duration_kimg = 2"
        ),
        "the 4 kimg run did not start from the 2 kimg one:\n{}",
        stdout(&o)
    );
    assert!(
        logged(&o, "resuming from the checkpoint at 2.0 kimg"),
        "{}",
        stdout(&o)
    );
    let a4 = output_digests(&a, "exp.yaml")["train"].clone();
    // B: 4 kimg fresh, snapshots every 2 kimg.
    let b = Dir::new();
    b.write("exp.yaml", &exp_with("4", ", snapshot_kimg: 2"));
    let o = b.run(&["run", "exp.yaml", "--only", "train", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!logged(&o, "resuming"), "{}", stdout(&o));
    assert!(
        logged(&o, "published the snapshot at duration_kimg = 2"),
        "{}",
        stdout(&o)
    );
    assert_eq!(
        output_digests(&b, "exp.yaml")["train"],
        a4,
        "4 kimg resumed from 2 kimg must equal 4 kimg fresh"
    );
    b.write("exp.yaml", &exp("2"));
    let o = b.run(&["run", "exp.yaml", "--only", "train", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        started(&o).is_empty(),
        "the snapshot at 2 kimg should be a cache hit: {:?}",
        started(&o)
    );
    assert_eq!(output_digests(&b, "exp.yaml")["train"], a2);
}

/// Successive halving on a tiny real EDM: two learning rates trained to 0.16 kimg and scored by
/// FDD (a tiny ViT), the better one continued to 0.32 kimg from its 0.16 kimg state; a rerun
/// makes the same choice from the cache and runs nothing.
#[test]
fn successive_halving_continues_the_better_edm_from_its_snapshot() {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets");
    let vit =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/parity/vit_dinov2_tiny.safetensors");
    let fm = a.join("fashion-mnist");
    let enc = format!(
        "model: custom, arch: {{patch: 7, dim: 32, depth: 2, heads: 4, grid: 6, layer_scale: true}}, weights: {}, resolution: 28",
        vit.display()
    );
    let d = Dir::new();
    d.write(
        "sh.yaml",
        &format!(
            "name: halving
sweep:
  R: [0.005, 0.0002]
  L: [0.16, 0.32]
search: {{over: R, budget: L, metric: fdd, keep: 0.5}}
nodes:
  data: {{kind: data/idx, params: {{images: {f}/train-images-idx3-ubyte.gz, labels: {f}/train-labels-idx1-ubyte.gz, limit: 16, resolution: 16}}}}
  train:
    kind: edm/train
    inputs: {{images: data}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [], dropout: 0.0,
             augment_p: 0.0, duration_kimg: \"${{L}}\", batch_size: 16, lr: \"${{R}}\", lr_rampup_kimg: 0.02,
             ema_halflife_kimg: 0.05, log_every_kimg: 0.08}}
  sample: {{kind: edm/sample, inputs: {{network: train}}, params: {{count: 8, steps: 4, grid_rows: 2, grid_cols: 4}}}}
  fdd_ref: {{kind: metrics/fdd_ref, inputs: {{images: data}}, params: {{{enc}}}}}
  fdd: {{kind: metrics/fdd, inputs: {{samples: sample, ref: fdd_ref}}, params: {{{enc}}}}}
",
            f = fm.display()
        ),
    );
    let o = d.run(&["run", "sh.yaml", "--json", "-v"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let ev = events(&o);
    let trains: Vec<String> = with_event(&ev, "started")
        .into_iter()
        .filter(|l| l.starts_with("train["))
        .collect();
    assert_eq!(trains.len(), 3, "two at 0.16 kimg, one at 0.32: {trains:?}");
    let resumed = ev.iter().any(|e| {
        e["event"] == "log"
            && e["line"].as_str().is_some_and(|l| {
                l.contains("resuming the trajectory from its snapshot at duration_kimg = 0.16")
            })
    });
    assert!(resumed, "the promoted EDM did not resume:\n{}", stdout(&o));
    let st = stdout(&d.run(&["status", "sh.yaml"]));
    assert!(
        st.contains("rung 1/2 (L = 0.16)") && st.contains("→ promoted R = "),
        "{st}"
    );
    assert!(
        st.contains("rung 2/2 (L = 0.32)") && st.contains("(last rung; best R = "),
        "{st}"
    );
    let again = d.run(&["run", "sh.yaml", "--json"]);
    assert!(again.status.success());
    assert!(with_event(&events(&again), "started").is_empty());
}

//! EDM training and sampling through the CLI on real Fashion-MNIST images: a small network
//! overfits four images (loss falls ≥ 5×, samples land next to them), and a killed training
//! resumes from its checkpoint to the same result as an uninterrupted one.

use std::path::PathBuf;
use std::time::Duration;

use crate::util::{Dir, events, output_digests, stderr, stdout};

fn exp(duration: &str) -> String {
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
             ema_halflife_kimg: 0.05, log_points: 20, checkpoint_every_kimg: 0.2}}
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

#[test]
fn a_small_edm_overfits_four_images_and_samples_near_them() {
    let d = Dir::new();
    d.write("exp.yaml", &exp("4"));
    let o = d.run(&["run", "exp.yaml"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = d.path().join("net");
    assert!(
        d.run(&[
            "cache",
            "export",
            "train",
            out.to_str().unwrap(),
            "--experiment",
            "exp.yaml"
        ])
        .status
        .success()
    );
    let log: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("training.json")).unwrap()).unwrap();
    let losses: Vec<f64> = log["loss"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["loss"].as_f64().unwrap())
        .collect();
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

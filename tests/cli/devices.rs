//! Device selection without GPU backends compiled in: asking for one is a clear error that says
//! which cargo feature to build with, never a panic. (With `--features wgpu`, tests/cli/wgpu.rs
//! runs the GPU path instead.)

use std::path::PathBuf;

use crate::util::{Dir, stderr};

#[test]
fn a_gpu_device_without_its_feature_is_a_clear_error() {
    let a = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/fashion-mnist");
    let d = Dir::new();
    d.write(
        "exp.yaml",
        &format!(
            "name: dev
nodes:
  data:
    kind: data/idx
    params: {{images: {a}/train-images-idx3-ubyte.gz, limit: 8, resolution: 16}}
  train:
    kind: edm/train
    inputs: {{images: data}}
    params: {{model: small, model_channels: 8, channel_mult: [1, 2], num_blocks: 1, attn_resolutions: [], augment_p: 0.0,
             duration_kimg: 0.008, batch_size: 8}}
",
            a = a.display()
        ),
    );
    for (device, feature) in [("wgpu", "wgpu"), ("cuda:1", "cuda")] {
        let o = d.run(&["run", "exp.yaml", "--device", device]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("needs cedm built with the `{feature}` feature")),
            "{err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
    // An unknown device is caught before anything runs.
    let o = d.run(&["run", "exp.yaml", "--device", "tpu"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

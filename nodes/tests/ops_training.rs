//! 50 training steps of the quickstart's EDM (experiments/quickstart.yaml: 16 px grey, 16
//! channels, [1, 2], one block, no attention, batch 64, lr 0.004 with its ramp-up) with the
//! custom CPU operations and with burn's own operations: the loss curves agree within 1e-4,
//! relative (EDM's loss sums over the image's 256 pixels, so it is ~50–250 here; f32 sums in
//! another order differ by ~1e-5 of it).
//!
//! A test binary of its own: it switches the custom operations off and on process-wide.

use burn::tensor::Device;
use cedm_nodes::kernels::rng::Rng;
use cedm_nodes::kinds::edm::train::step::{Batch, bench_step};
use cedm_nodes::models::edm::precond::loss_weight;
use cedm_nodes::models::edm::songunet::SongUNetConfig;
use cedm_nodes::models::params::{Adam, flat};
use cedm_nodes::ops;

const STEPS: usize = 50;
const BATCH: usize = 64;

fn curve() -> Vec<f32> {
    let cfg = SongUNetConfig {
        model_channels: 16,
        channel_mult: vec![1, 2],
        attn_resolutions: vec![],
        dropout: 0.0,
        ..SongUNetConfig::small(16, 1, 10)
    };
    let device = Device::flex().autodiff();
    let mut net = cfg.init(0, &device);
    let mut adam = Adam::new(&flat(&net), 0.9, 0.999, 1e-8);
    let il = 16 * 16;
    let mut rng = Rng::new(7);
    let mut losses = Vec::with_capacity(STEPS);
    for step in 0..STEPS {
        // Smooth "images" (a random gradient per image) so that the net has something to learn.
        let mut x = vec![0f32; BATCH * il];
        for img in x.chunks_mut(il) {
            let (a, b) = (rng.uniform() * 2.0 - 1.0, rng.uniform() * 2.0 - 1.0);
            for (j, v) in img.iter_mut().enumerate() {
                let (r, c) = ((j / 16) as f64 / 15.0, (j % 16) as f64 / 15.0);
                *v = (a * r + b * c).clamp(-1.0, 1.0) as f32;
            }
        }
        let sigma: Vec<f64> = (0..BATCH)
            .map(|_| (rng.normal() * 1.2 - 1.2).exp())
            .collect();
        let noise: Vec<f32> = (0..BATCH * il)
            .map(|j| (rng.normal() * sigma[j / il]) as f32)
            .collect();
        let mut labels = vec![0f32; BATCH * 10];
        for i in 0..BATCH {
            labels[i * 10 + (rng.uniform() * 10.0) as usize % 10] = 1.0;
        }
        let aug = vec![0f32; BATCH * 9];
        let weights: Vec<f32> = sigma.iter().map(|&s| loss_weight(s) as f32).collect();
        let bt = Batch {
            x: &x,
            noise: &noise,
            labels: &labels,
            aug: &aug,
            weights: &weights,
            sigma: &sigma,
            shape: [1, 16, 16],
            label_dim: 10,
            aug_dim: 9,
        };
        // The quickstart's schedule: lr 0.004, ramped up over 0.5 kimg.
        let lr = 0.004 * (((step + 1) * BATCH) as f64 / 500.0).min(1.0);
        let (n, loss) = bench_step(net, &device, &mut adam, None, &bt, lr).unwrap();
        net = n;
        losses.push(loss);
    }
    losses
}

#[test]
fn quickstart_training_curve_matches_burns_own_ops_over_50_steps() {
    ops::set_enabled(true);
    let custom = curve();
    ops::set_enabled(false);
    let burn = curve();
    ops::set_enabled(true);
    let d = custom
        .iter()
        .zip(&burn)
        .map(|(a, b)| (a - b).abs() / b.abs())
        .fold(0f32, f32::max);
    // The curve moves (the net learns), so agreement is not two constant lines.
    assert!(
        custom[STEPS - 1] < 0.8 * custom[0],
        "loss {} → {}",
        custom[0],
        custom[STEPS - 1]
    );
    assert!(
        d <= 1e-4,
        "max |Δ loss| / loss = {d} over {STEPS} steps\ncustom: {custom:?}\nburn: {burn:?}"
    );
}

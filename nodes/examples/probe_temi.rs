use burn::tensor::{Device, Tensor, TensorData};
use cedm_nodes::models::temi_heads::{HeadsConfig, StepConfig, TemiState};
fn main() {
    let h: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(4);
    let b: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(512);
    let dev = Device::default();
    let cfg = HeadsConfig { heads: h, input: 1280, hidden: 512, hidden_layers: 2, bottleneck: 256, clusters: 20 };
    let mut st = TemiState::new(cfg.init(0, &dev));
    let mut r = cedm_nodes::rng::Rng::new(1);
    let x: Vec<f32> = (0..b * 1280).map(|_| r.normal() as f32).collect();
    let sc = StepConfig { temperature: 0.1, gamma: 0.6, prior_momentum: 0.9, teacher_momentum: 0.996, lr: 2e-4, weight_decay: 1e-4, freeze_last: false };
    for i in 0..5 {
        let t = std::time::Instant::now();
        let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [b, 1280]), &dev);
        let out = st.step(xt.clone(), xt, &sc);
        println!("H={h} B={b} step {i}: {:.3}s loss {}", t.elapsed().as_secs_f64(), out.loss);
    }
}

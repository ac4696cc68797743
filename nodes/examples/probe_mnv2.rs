use cedm_nodes::models::mobilenet_v2::{MobileNetV2Config, MobileNetV2Cpu};
use cedm_nodes::models::weights::Weights;
use std::time::Instant;
fn main() {
    let w = Weights::load(std::path::Path::new("assets/weights/mobilenet_v2-b0353104.pth")).unwrap();
    let m = MobileNetV2Cpu::load(&MobileNetV2Config::imagenet(), &w).unwrap();
    let res: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(96);
    let b: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(64);
    let x = vec![0.1f32; b * 3 * res * res];
    for i in 0..6 {
        let t = Instant::now();
        let v = m.forward_features(&x, b, res, res);
        let s = t.elapsed().as_secs_f64();
        println!("iter {i}: {:.3}s {:.1} img/s {}", s, b as f64 / s, v[0]);
    }
}

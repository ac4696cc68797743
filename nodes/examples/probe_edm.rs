use burn::tensor::{Device, Tensor, Distribution};
use cedm_nodes::models::songunet::SongUNetConfig;
fn main() {
    let b: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(64);
    let mc: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(32);
    let dev = Device::flex();
    let ad = dev.clone().autodiff();
    let mut cfg = SongUNetConfig::small(32, 1, 10);
    cfg.model_channels = mc;
    let net = cfg.init(0, &ad);
    let x = Tensor::<4>::random([b, 1, 32, 32], Distribution::Normal(0.0, 1.0), &ad);
    let noise = Tensor::<1>::random([b], Distribution::Normal(0.0, 1.0), &ad);
    for i in 0..4 {
        let t = std::time::Instant::now();
        let y = net.forward(x.clone(), noise.clone(), None, None, true);
        let l = y.powf_scalar(2.0).mean();
        let tf = t.elapsed().as_secs_f64();
        let g = l.backward();
        let _ = g;
        println!("b={b} mc={mc} iter {i}: fwd {:.3}s total {:.3}s", tf, t.elapsed().as_secs_f64());
    }
    let net2 = cfg.init(0, &dev);
    let x2 = Tensor::<4>::random([b, 1, 32, 32], Distribution::Normal(0.0, 1.0), &dev);
    let n2 = Tensor::<1>::random([b], Distribution::Normal(0.0, 1.0), &dev);
    for i in 0..3 {
        let t = std::time::Instant::now();
        let y = net2.forward(x2.clone(), n2.clone(), None, None, false);
        let v: Vec<f32> = y.into_data().try_into_vec().unwrap();
        println!("inference iter {i}: {:.3}s {}", t.elapsed().as_secs_f64(), v[0]);
    }
}

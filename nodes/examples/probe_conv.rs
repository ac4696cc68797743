use burn::tensor::{Device, Tensor, Distribution};
use burn::nn::conv::Conv2dConfig;
use burn::nn::{PaddingConfig2d, GroupNormConfig};
fn main() {
    let dev = Device::flex();
    let b = 64;
    for (c, hw) in [(32usize, 32usize), (64, 16), (64, 8)] {
        let conv = Conv2dConfig::new([c, c], [3, 3]).with_padding(PaddingConfig2d::Explicit(1,1,1,1)).init(&dev);
        let gn = GroupNormConfig::new(8, c).init(&dev);
        let x = Tensor::<4>::random([b, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev);
        for _ in 0..2 { let _ = conv.forward(x.clone()).into_data(); }
        let t = std::time::Instant::now();
        for _ in 0..5 { let _: Vec<f32> = conv.forward(x.clone()).into_data().try_into_vec().unwrap(); }
        let tc = t.elapsed().as_secs_f64() / 5.0;
        let t = std::time::Instant::now();
        for _ in 0..5 { let _: Vec<f32> = gn.forward(x.clone()).into_data().try_into_vec().unwrap(); }
        let tg = t.elapsed().as_secs_f64() / 5.0;
        let t = std::time::Instant::now();
        for _ in 0..5 { let _: Vec<f32> = burn::tensor::activation::silu(x.clone()).into_data().try_into_vec().unwrap(); }
        let ts = t.elapsed().as_secs_f64() / 5.0;
        let gflop = (b * c * c * 9 * hw * hw * 2) as f64 / 1e9;
        println!("c={c} hw={hw}: conv {:.1} ms ({:.1} GFLOP/s), groupnorm {:.1} ms, silu {:.1} ms", tc * 1e3, gflop / tc, tg * 1e3, ts * 1e3);
    }
}

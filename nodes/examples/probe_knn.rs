use cedm_nodes::features::Features;
use cedm_nodes::rng::Rng;
fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(20000);
    let block: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(1024);
    let d = 1280;
    let mut r = Rng::new(0);
    let f = Features { n, d, data: (0..n * d).map(|_| r.normal() as f32).collect() };
    let t = std::time::Instant::now();
    let k = cedm_nodes::knn::knn(&f, 50, true, block, |_| true).unwrap();
    println!("n={n} block={block}: {:.2}s {}", t.elapsed().as_secs_f64(), k.indices[0]);
}

use cedm_nodes::features::Features;
fn main() {
    let path = std::env::args().nth(1).unwrap();
    let iters: usize = std::env::args().nth(2).map(|s| s.parse().unwrap()).unwrap_or(300);
    let f = Features::read_file(std::path::Path::new(&path)).unwrap();
    let t = std::time::Instant::now();
    let r = cedm_nodes::kmeans::kmeans(&f, 100, 1, iters, 1e-4, 0).unwrap();
    println!("total {:.2}s iters {} distances {}", t.elapsed().as_secs_f64(), r.iterations, r.recomputed.iter().sum::<usize>());
}

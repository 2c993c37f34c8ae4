//! libtorch's f32 `linear` beside `kernels::linear_blocked` (the CPU kernel over blocks of 8 rows) on
//! t5-base's encoder matrices, at the row counts a prompt has: the evidence for
//! `kernels::MAX_BLOCKED_ROWS`. Run: `source scripts/env.sh && cargo run --release --example linear_rows`.
use std::time::Instant;

use maestro::musicgen::kernels;
use tch::{Device, Kind, Tensor};

fn main() {
    tch::set_num_threads(2);
    let _guard = tch::no_grad_guard();
    let (d, f) = (768, 3072);
    let shapes = [[3 * d, d], [d, d], [f, d], [d, f]];
    let weights: Vec<Tensor> =
        (0..12).flat_map(|_| shapes.map(|s| Tensor::randn(s, (Kind::Float, Device::Cpu)))).collect();
    println!("| rows | blocked kernel ms | libtorch linear ms | ratio |");
    println!("|---:|---:|---:|---:|");
    for rows in [8, 12, 16, 24, 32, 48, 64] {
        let inputs: Vec<Tensor> = weights
            .iter()
            .map(|w| Tensor::randn([1, rows, w.size()[1]], (Kind::Float, Device::Cpu)))
            .collect();
        let best = |f: &dyn Fn(&Tensor, &Tensor) -> Tensor| {
            (0..5)
                .map(|_| {
                    let start = Instant::now();
                    weights.iter().zip(&inputs).for_each(|(w, x)| drop(f(x, w)));
                    start.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::INFINITY, f64::min)
        };
        let blocked = best(&|x, w| {
            let flat = x.view([rows, -1]);
            let parts: Vec<Tensor> = flat
                .split(8, 0)
                .iter()
                .map(|p| kernels::gemv(&p.contiguous(), w).expect("applies"))
                .collect();
            Tensor::cat(&parts, 0)
        });
        let torch = best(&|x, w| x.linear::<Tensor>(w, None));
        println!("| {rows} | {blocked:.1} | {torch:.1} | {:.2}x |", torch / blocked);
    }
}

//! GFLOP/s of the gemm crate (burn's CPU matmul) on the shapes of a
//! SmolLM2-135M training step at 4 x 512 (row-major f32), one thread and all.
//!
//! ```sh
//! cargo build --workspace --examples   # --workspace: burn's x86-v4 feature
//! $CARGO_TARGET_DIR/debug/examples/gemm_rate
//! ```
//!
//! This is how the dev profile's cost was found: with debug assertions and
//! overflow checks on in dependencies gemm ran at 69 GFLOP/s per core on
//! AVX-512 (Zen 5), without them at 175.

use gemm::{Parallelism, gemm};
use std::time::Instant;

fn run(m: usize, k: usize, n: usize, par: Parallelism, tb: bool) -> f64 {
    let a = vec![0.5f32; m * k];
    let b = vec![0.25f32; k * n];
    let mut c = vec![0f32; m * n];
    let (b_cs, b_rs) = if tb { (k as isize, 1) } else { (1, n as isize) };
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        // SAFETY: a, b and c hold m·k, k·n and m·n elements, which the
        // strides given stay inside.
        unsafe {
            gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                b_cs,
                b_rs,
                0.0,
                1.0,
                false,
                false,
                false,
                par,
            );
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best / 1e9
}

fn main() {
    let shapes = [
        (2048, 576, 1536),
        (2048, 1536, 576),
        (2048, 576, 576),
        (2048, 576, 192),
        (2048, 576, 49152),
        (2048, 49152, 576),
        (576, 2048, 1536),
    ];
    for (m, k, n) in shapes {
        let p1 = run(m, k, n, Parallelism::None, false);
        let p2 = run(m, k, n, Parallelism::Rayon(2), false);
        let p2t = run(m, k, n, Parallelism::Rayon(2), true);
        println!(
            "{m}x{k}x{n}: 1 thread {p1:.1}  2 threads {p2:.1}  2 threads B^T {p2t:.1} GFLOP/s"
        );
    }
}

//! Times the CPU products on the shapes of the default model (SmolLM2-135M) and a 1.5B
//! model: `cargo run --release -p penwright-kernels --example kernel_bench`.

use std::time::Instant;

use penwright_kernels::GgmlType;
use penwright_kernels::cpu::{Isa, PackedMatrix, matmul_with};

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect()
}

fn main() {
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q8_0,
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::F16,
    ];
    let shapes = [(1536, 576), (576, 1536), (49152, 576), (8960, 1536)];
    for ty in types {
        for &(rows, cols) in &shapes {
            let bytes_len = ty.row_bytes(cols).unwrap() * rows;
            let mut w = random_bytes(bytes_len, 1);
            // finite f16 scales: zero the top bits of every byte pair's high byte
            for b in w.iter_mut().skip(1).step_by(2) {
                *b &= 0x1f;
            }
            let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
            for m in [1usize, 64] {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                    .collect();
                let mut y = vec![0.0f32; m * rows];
                for isa in Isa::all_supported() {
                    if m > 1 && isa != Isa::detect() {
                        continue;
                    }
                    matmul_with(isa, &x, m, &pm, &mut y);
                    let reps = (2_000_000_000 / (m * rows * cols)).clamp(3, 2000);
                    let t = Instant::now();
                    for _ in 0..reps {
                        matmul_with(isa, &x, m, &pm, &mut y);
                    }
                    let s = t.elapsed().as_secs_f64() / reps as f64;
                    println!(
                        "{:5} {:5}x{:<5} m={:<3} {:12} {:8.1} us  {:6.1} GB/s  {:6.1} GMAC/s",
                        ty.name(),
                        rows,
                        cols,
                        m,
                        isa.name(),
                        s * 1e6,
                        bytes_len as f64 / s / 1e9,
                        (m * rows * cols) as f64 / s / 1e9
                    );
                }
            }
        }
    }
}

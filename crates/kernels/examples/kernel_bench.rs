//! Times the CPU kernels (a development aid; `penwright bench` measures the whole model):
//! dot products on the shapes of the default model and of 1.5B models, one thread and all,
//! cached attention (`attention`), and products on matrices far larger than the caches
//! (`dram`), a plain streaming read of DRAM (`bandwidth`); `dots Q4_K,Q6_K` times only those
//! types. Build with `cargo build --workspace --examples`, run
//! `$CARGO_TARGET_DIR/debug/examples/kernel_bench [attention|dram|bandwidth|dots TYPES]`.

use std::time::Instant;

use penwright_kernels::GgmlType;
use penwright_kernels::cpu::activation::QuantizedActivations;
use penwright_kernels::cpu::{Isa, PackedMatrix, activation_blocks, dot, matmul_with};

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

/// GB/s of a plain streaming read (a sum of 1 GiB of u64 across rayon's threads): the
/// ceiling for any product that reads its weights from DRAM once.
fn read_bandwidth() {
    use rayon::prelude::*;
    let words: Vec<u64> = (0..(1u64 << 27)).collect();
    let per = words.len().div_ceil(4 * rayon::current_num_threads());
    // eight independent sums a chunk, so the adds keep up with the loads
    let sum = || {
        words
            .par_chunks(per)
            .map(|c| {
                let lanes = c.chunks_exact(8).fold([0u64; 8], |mut a, w| {
                    for (a, w) in a.iter_mut().zip(w) {
                        *a = a.wrapping_add(*w);
                    }
                    a
                });
                lanes.iter().fold(0u64, |a, &w| a.wrapping_add(w))
            })
            .reduce(|| 0, u64::wrapping_add)
    };
    std::hint::black_box(sum());
    // as the products run: the pool kept awake; the best of five
    let s = penwright_kernels::cpu::on_warm_compute_threads(|| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(sum());
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    });
    println!(
        "read 1 GiB, {} threads: {:.1} GB/s",
        rayon::current_num_threads(),
        (words.len() * 8) as f64 / s / 1e9
    );
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("bandwidth") {
        return read_bandwidth();
    }
    if std::env::args().nth(1).as_deref() == Some("product") {
        // `kernel_bench product TYPE ROWS COLS M`: one product's speed, best of five
        let args: Vec<String> = std::env::args().skip(2).collect();
        let ty = GgmlType::QUANTIZED
            .into_iter()
            .find(|t| t.name() == args[0])
            .expect("a quantized type's name, such as Q4_K");
        let [rows, cols, m] = [1, 2, 3].map(|i| args[i].parse::<usize>().expect("a number"));
        let len = ty.row_bytes(cols).expect("whole blocks") * rows;
        let mut w = random_bytes(len, 3);
        for b in w.iter_mut().skip(1).step_by(2) {
            *b &= 0x1f;
        }
        let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
        let x: Vec<f32> = (0..m * cols)
            .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
            .collect();
        let mut y = vec![0.0f32; m * rows];
        let reps = (4_000_000_000 / (m * rows * cols)).clamp(1, 1000);
        let s = penwright_kernels::cpu::on_warm_compute_threads(|| {
            (0..5)
                .map(|_| {
                    let t = Instant::now();
                    for _ in 0..reps {
                        matmul_with(Isa::detect(), &x, m, &pm, &mut y);
                    }
                    t.elapsed().as_secs_f64() / reps as f64
                })
                .fold(f64::INFINITY, f64::min)
        });
        println!(
            "{} {rows}x{cols} m={m}: {:.1} us, {:.1} GMAC/s",
            ty.name(),
            s * 1e6,
            (m * rows * cols) as f64 / s / 1e9
        );
        return;
    }
    {
        use penwright_kernels::cpu::attention::{AttentionShape, attend};
        for len in [16usize, 256, 1500] {
            let shape = AttentionShape {
                heads: 9,
                kv_heads: 3,
                s: 1,
                head_dim: 64,
                capacity: 2048,
                start: len - 1,
            };
            let q = vec![0.01f32; 9 * 64];
            // the caches hold f16, as the model's do
            let k: Vec<half::f16> = (0..3 * 2048 * 64)
                .map(|i| half::f16::from_f32((i % 7) as f32 * 0.01))
                .collect();
            let v = k.clone();
            let mut out = vec![0.0f32; 9 * 64];
            let reps = 300;
            let t = Instant::now();
            for _ in 0..reps {
                attend(Isa::detect(), shape, &q, &k, &v, 0.125, &mut out);
            }
            println!(
                "attention len {len}: {:.1} us per layer",
                t.elapsed().as_secs_f64() / reps as f64 * 1e6
            );
        }
        if std::env::args().nth(1).as_deref() == Some("attention") {
            return;
        }
    }
    if std::env::args().nth(1).as_deref() == Some("dram") {
        // a matrix far larger than the caches: what decoding a whole model sees
        for ty in [
            GgmlType::Q4_1,
            GgmlType::Q4_0,
            GgmlType::Q8_0,
            GgmlType::Q4_K,
            GgmlType::Q6_K,
        ] {
            let (rows, cols) = (131072, 1536);
            let len = ty.row_bytes(cols).unwrap() * rows;
            let mut w = random_bytes(len, 2);
            for b in w.iter_mut().skip(1).step_by(2) {
                *b &= 0x1f;
            }
            let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
            let x: Vec<f32> = (0..cols).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
            let mut y = vec![0.0f32; rows];
            matmul_with(Isa::detect(), &x, 1, &pm, &mut y);
            // as a model's pass runs them: the pool kept awake; the best of five
            let s = penwright_kernels::cpu::on_warm_compute_threads(|| {
                (0..5)
                    .map(|_| {
                        let t = Instant::now();
                        matmul_with(Isa::detect(), &x, 1, &pm, &mut y);
                        t.elapsed().as_secs_f64()
                    })
                    .fold(f64::INFINITY, f64::min)
            });
            println!(
                "{:5} {} MB from DRAM: {:.2} ms, {:.1} GB/s",
                ty.name(),
                len >> 20,
                s * 1e3,
                len as f64 / s / 1e9
            );
        }
        return;
    }
    {}
    let types = [
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q8_0,
        GgmlType::Q2_K,
        GgmlType::Q3_K,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::F16,
        GgmlType::BF16,
    ];
    // `kernel_bench dots Q4_K,Q6_K`: only those types
    let only: Option<Vec<String>> = (std::env::args().nth(1).as_deref() == Some("dots"))
        .then(|| std::env::args().nth(2))
        .flatten()
        .map(|list| list.split(',').map(str::to_string).collect());
    for ty in types {
        if only
            .as_ref()
            .is_some_and(|o| !o.iter().any(|n| n == ty.name()))
        {
            continue;
        }
        // K-quant rows are whole 256-element super-blocks: the shapes of 1.7B models
        let shapes: &[(usize, usize)] = if ty.block_size() == 256 {
            &[(256, 2048), (2048, 2048), (8192, 2048), (2048, 8192)]
        } else {
            &[(1536, 576), (576, 1536), (49152, 576), (8960, 1536)]
        };
        for &(rows, cols) in shapes {
            let bytes_len = ty.row_bytes(cols).unwrap() * rows;
            let mut w = random_bytes(bytes_len, 1);
            // finite f16 scales: zero the top bits of every byte pair's high byte
            for b in w.iter_mut().skip(1).step_by(2) {
                *b &= 0x1f;
            }
            let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
            if let Some(blocks) = activation_blocks(ty) {
                // one thread, dot products only: the kernel's own speed
                let x: Vec<f32> = (0..cols).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect();
                let mut act = QuantizedActivations::new(blocks);
                act.quantize(&x, 1, cols);
                let isa = Isa::detect();
                let reps = (500_000_000 / (rows * cols)).clamp(3, 2000);
                // the best of five rounds: this machine's neighbours are noisy
                let mut sink = 0.0f32;
                let mut s = f64::INFINITY;
                for _ in 0..5 {
                    let t = Instant::now();
                    for _ in 0..reps.div_ceil(5) {
                        for r in 0..rows {
                            sink += dot(isa, ty, pm.row(r), act.row(0));
                        }
                    }
                    s = s.min(t.elapsed().as_secs_f64() / reps.div_ceil(5) as f64);
                }
                println!(
                    "{:5} {:5}x{:<5} 1 thread {:12} {:8.1} us  {:6.1} GMAC/s ({sink:.0})",
                    ty.name(),
                    rows,
                    cols,
                    isa.name(),
                    s * 1e6,
                    (rows * cols) as f64 / s / 1e9
                );
                let t = Instant::now();
                for _ in 0..reps {
                    act.quantize(&x, 1, cols);
                }
                println!(
                    "      quantize {cols}: {:.2} us",
                    t.elapsed().as_secs_f64() / reps as f64 * 1e6
                );
            }
            // a prompt's chunk too where only some types are timed
            let ms: &[usize] = if only.is_some() {
                &[1, 64, 512]
            } else {
                &[1, 64]
            };
            for &m in ms {
                let x: Vec<f32> = (0..m * cols)
                    .map(|i| ((i % 13) as f32 - 6.0) * 0.1)
                    .collect();
                let mut y = vec![0.0f32; m * rows];
                for isa in Isa::all_supported() {
                    if (m > 1 || only.is_some()) && isa == Isa::Scalar
                        || m > 1 && isa != Isa::detect()
                    {
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

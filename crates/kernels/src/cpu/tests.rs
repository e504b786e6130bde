//! The CPU kernels against the reference dequantizer, on llama.cpp's reference blocks and
//! on seeded random blocks, with every instruction set this CPU has.

use super::*;
use crate::dequant::dequantize_to_vec;
use crate::random::{Rng, random_matrix};
use crate::testing::cases;

const QUANTIZED: [GgmlType; 10] = GgmlType::QUANTIZED;
const FLOATS: [GgmlType; 3] = GgmlType::FLOATS;

fn activations(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.normal(1.0)).collect()
}

/// Σ w·x in f64 from the reference dequantization of `w`.
fn reference_dot(ty: GgmlType, w: &[u8], x: &[f32]) -> (f64, f64) {
    let wf = dequantize_to_vec(ty, w, x.len()).unwrap();
    let dot = wf.iter().zip(x).map(|(&a, &b)| a as f64 * b as f64).sum();
    let mag = wf
        .iter()
        .zip(x)
        .map(|(&a, &b)| (a as f64 * b as f64).abs())
        .sum();
    (dot, mag)
}

/// The activation as the kernels see it: quantized, then dequantized.
fn dequantized_activation(a: &QuantizedActivations, row: usize) -> Vec<f32> {
    let r = a.row(row);
    let bl = a.blocks.len();
    r.qs.iter()
        .enumerate()
        .map(|(i, &q)| q as f32 * r.d[i / bl])
        .collect()
}

#[test]
fn quantized_dots_equal_reference_dequantization_on_every_isa() {
    let mut blocks: Vec<(GgmlType, Vec<u8>, usize)> = cases()
        .into_iter()
        .filter(|c| QUANTIZED.contains(&c.dtype))
        .map(|c| (c.dtype, c.bytes, c.n))
        .collect();
    for (i, ty) in QUANTIZED.into_iter().enumerate() {
        for cols in [256, 768, 2304] {
            blocks.push((ty, random_matrix(ty, 1, cols, 7 + i as u64), cols));
        }
    }
    for (ty, bytes, n) in blocks {
        let x = activations(n, n as u64 + ty.id() as u64);
        let mut act = QuantizedActivations::new(activation_blocks(ty).unwrap());
        act.quantize(&x, 1, n);
        let xq = dequantized_activation(&act, 0);
        // exactly what the integer arithmetic computes, up to f32 summation order
        let (want, mag) = reference_dot(ty, &bytes, &xq);
        // and close to the product with the unquantized activation
        let (exact, _) = reference_dot(ty, &bytes, &x);
        for isa in Isa::all_supported() {
            let got = dot(isa, ty, &bytes, act.row(0)) as f64;
            let err = (got - want).abs();
            assert!(
                err <= 2e-5 * mag + 1e-6,
                "{ty} ({n} elements, {}): got {got}, reference {want} (err {err:e}, Σ|w·x| {mag})",
                isa.name()
            );
            assert!(
                (got - exact).abs() <= 0.02 * mag + 1e-4,
                "{ty}: quantizing the activation moved the product from {exact} to {got}"
            );
        }
    }
}

#[test]
fn float_dots_equal_reference_on_every_isa() {
    for ty in FLOATS {
        for n in [8, 100, 576, 1000] {
            let w = random_matrix(ty, 1, n, n as u64);
            let x = activations(n, 3);
            let (want, mag) = reference_dot(ty, &w, &x);
            for isa in Isa::all_supported() {
                let got = dot_float(isa, ty, &w, &x) as f64;
                assert!(
                    (got - want).abs() <= 1e-5 * mag + 1e-6,
                    "{ty} n={n} {}: {got} vs {want}",
                    isa.name()
                );
            }
        }
    }
}

/// `x · Wᵀ` from the reference dequantization, in f64.
fn reference_matmul(ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32]) -> Vec<f64> {
    let wf = dequantize_to_vec(ty, w, rows * cols).unwrap();
    let m = x.len() / cols;
    let mut out = vec![0.0f64; m * rows];
    for i in 0..m {
        for r in 0..rows {
            out[i * rows + r] = (0..cols)
                .map(|k| x[i * cols + k] as f64 * wf[r * cols + k] as f64)
                .sum();
        }
    }
    out
}

fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

#[test]
fn matmul_takes_the_dot_and_gemm_paths_to_the_same_result() {
    let (rows, cols) = (37, 512);
    for ty in QUANTIZED.into_iter().chain(FLOATS) {
        let w = random_matrix(ty, rows, cols, 11);
        let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
        for m in [1, 3, DOT_MAX_ROWS + 1, 20, 65] {
            let x = activations(m * cols, m as u64);
            let want = reference_matmul(ty, &w, rows, cols, &x);
            for isa in Isa::all_supported() {
                // the dot and batched paths quantize activations to 8 bits; GEMM is f32
                let eight_bit = match path_for(isa, ty, m) {
                    Path::Dot => activation_blocks(ty).is_some(),
                    Path::Batched => true,
                    Path::Gemm => false,
                };
                let tol = if eight_bit { 0.02 } else { 1e-4 };
                let mut y = vec![f32::NAN; m * rows];
                matmul_with(isa, &x, m, &pm, &mut y);
                assert_close(&format!("{ty} m={m} {}", isa.name()), &y, &want, tol);
            }
        }
    }
}

#[test]
fn several_matrices_over_one_input_equal_their_products_one_by_one() {
    // q/k/v of a Q4_K_M file: two K-quants and a Q6_K (one kind of activation block), then
    // a mix of 32- and 256-element blocks, a float matrix (not fused) and a prompt's rows
    let cols = 512;
    let sets: [&[(GgmlType, usize)]; 3] = [
        &[
            (GgmlType::Q4_K, 64),
            (GgmlType::Q4_K, 16),
            (GgmlType::Q6_K, 16),
        ],
        &[
            (GgmlType::Q8_0, 40),
            (GgmlType::Q5_K, 9),
            (GgmlType::Q4_1, 1),
        ],
        &[(GgmlType::Q4_0, 24), (GgmlType::F16, 8)],
    ];
    for set in sets {
        let bytes: Vec<Vec<u8>> = set
            .iter()
            .enumerate()
            .map(|(j, &(ty, rows))| random_matrix(ty, rows, cols, 5 + j as u64))
            .collect();
        let ws: Vec<PackedMatrix<'_>> = set
            .iter()
            .zip(&bytes)
            .map(|(&(ty, rows), b)| PackedMatrix::new(ty, rows, cols, b).unwrap())
            .collect();
        for m in [1, 2, DOT_MAX_ROWS, DOT_MAX_ROWS + 1] {
            let x = activations(m * cols, 40 + m as u64);
            for isa in Isa::all_supported() {
                let mut fused: Vec<Vec<f32>> =
                    ws.iter().map(|w| vec![f32::NAN; m * w.rows]).collect();
                let mut outs: Vec<&mut [f32]> =
                    fused.iter_mut().map(|y| y.as_mut_slice()).collect();
                matmul_many_with(isa, &x, m, &ws, &mut outs);
                for (w, got) in ws.iter().zip(&fused) {
                    let mut want = vec![f32::NAN; m * w.rows];
                    matmul_with(isa, &x, m, w, &mut want);
                    assert_eq!(got, &want, "{} m={m} {}", w.ty, isa.name());
                }
            }
        }
    }
}

#[test]
fn transposed_product_and_row_gathers_match_the_dequantized_matrix() {
    let (rows, cols) = (70, 256);
    for ty in QUANTIZED.into_iter().chain(FLOATS) {
        let w = random_matrix(ty, rows, cols, 5);
        let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
        let wf = dequantize_to_vec(ty, &w, rows * cols).unwrap();
        let m = 3;
        let g = activations(m * rows, 9);
        let mut y = vec![f32::NAN; m * cols];
        matmul_transposed(&g, m, &pm, &mut y);
        let want: Vec<f64> = (0..m * cols)
            .map(|e| {
                let (i, k) = (e / cols, e % cols);
                (0..rows)
                    .map(|r| g[i * rows + r] as f64 * wf[r * cols + k] as f64)
                    .sum()
            })
            .collect();
        assert_close(&format!("{ty} transposed"), &y, &want, 1e-4);

        let ids = [3usize, 0, 69, 3];
        let mut rows_out = vec![0.0f32; ids.len() * cols];
        gather_rows(&pm, &ids, &mut rows_out);
        for (j, &id) in ids.iter().enumerate() {
            assert_eq!(
                &rows_out[j * cols..(j + 1) * cols],
                &wf[id * cols..(id + 1) * cols],
                "{ty} row {id}"
            );
        }
        let mut all = vec![0.0f32; rows * cols];
        dequantize(&pm, &mut all);
        assert_eq!(all, wf, "{ty} dequantize");
    }
}

#[test]
fn packed_matrices_check_their_bytes() {
    let w = vec![0u8; 20 * 4];
    assert!(PackedMatrix::new(GgmlType::Q4_1, 2, 64, &w).is_ok());
    assert!(matches!(
        PackedMatrix::new(GgmlType::Q4_1, 3, 64, &w),
        Err(DequantError::WrongLength { .. })
    ));
    assert!(matches!(
        PackedMatrix::new(GgmlType::Q4_1, 1, 40, &w),
        Err(DequantError::NotBlockMultiple { .. })
    ));
    assert!(matches!(
        PackedMatrix::new(GgmlType::IQ2_XS, 1, 256, &w),
        Err(DequantError::Unsupported(GgmlType::IQ2_XS))
    ));
    assert!(PackedMatrix::new(GgmlType::Q4_1, usize::MAX, 64, &w).is_err());
}

/// The batched 8-bit path computes exactly what its integers say: against the f64 product
/// of the reference-dequantized weights with the 8-bit-dequantized activations.
#[test]
fn the_batched_path_is_exact_on_its_quantized_activations() {
    // 8192 columns: the activations take several chunks (see `BATCHED_BLOCK_BYTES`)
    for (cols, m) in [(256usize + 32 + 64, 10), (1024, 10), (8192, 100)] {
        let rows = 9;
        for ty in QUANTIZED {
            if !cols.is_multiple_of(ty.block_size()) {
                continue;
            }
            let w = random_matrix(ty, rows, cols, 17);
            let pm = PackedMatrix::new(ty, rows, cols, &w).unwrap();
            let x = activations(m * cols, 5);
            let mut act = QuantizedActivations::new(ActivationBlocks::B32);
            act.quantize(&x, m, cols);
            let xq: Vec<f32> = (0..m)
                .flat_map(|i| dequantized_activation(&act, i))
                .collect();
            let want = reference_matmul(ty, &w, rows, cols, &xq);
            let (_, mag) = reference_dot(ty, pm.row(0), &xq[..cols]);
            for isa in Isa::all_supported() {
                if !batched::supports(isa, ty) {
                    continue;
                }
                let mut y = vec![f32::NAN; m * rows];
                matmul_batched(isa, &x, m, &pm, &mut y);
                for (k, (&g, &w)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (g as f64 - w).abs() <= 1e-4 * mag + 1e-4,
                        "{ty} cols {cols} {}: output {k}: {g} vs {w}",
                        isa.name()
                    );
                }
            }
        }
    }
}

/// Passes kept warm from several caller threads at once, nested inside each other and
/// around parallel products, all finish with their own results (a spinner that waited
/// under its own pass, or for another caller's, would hang here).
#[test]
fn warm_passes_finish_from_many_callers_and_nested() {
    use rayon::prelude::*;
    let callers: Vec<_> = (0..4u64)
        .map(|c| {
            std::thread::spawn(move || {
                (0..20u64)
                    .map(|i| {
                        on_warm_compute_threads(|| {
                            let inner = on_warm_compute_threads(|| {
                                (0..10_000u64).into_par_iter().map(|v| v ^ c).sum::<u64>()
                            });
                            inner + (0..1000u64).into_par_iter().map(|v| v * i).sum::<u64>()
                        })
                    })
                    .sum::<u64>()
            })
        })
        .collect();
    for (c, caller) in callers.into_iter().enumerate() {
        let want: u64 = (0..20u64)
            .map(|i| {
                (0..10_000u64).map(|v| v ^ c as u64).sum::<u64>()
                    + (0..1000u64).map(|v| v * i).sum::<u64>()
            })
            .sum();
        assert_eq!(caller.join().unwrap(), want, "caller {c}");
    }
}

/// Every aarch64 CPU has NEON, so the tests above ran the NEON kernels beside the scalar
/// ones, and the `sdot` kernels too where the CPU has the dot-product instructions (qemu-user
/// has them: scripts/check-aarch64.sh).
#[cfg(target_arch = "aarch64")]
#[test]
fn aarch64_tests_run_the_neon_kernels() {
    let isas = Isa::all_supported();
    assert!(isas.contains(&Isa::Neon), "{isas:?}");
    assert_eq!(
        isas.contains(&Isa::NeonDotprod),
        std::arch::is_aarch64_feature_detected!("dotprod")
    );
}

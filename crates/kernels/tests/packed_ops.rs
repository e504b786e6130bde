//! The burn operations on packed weights, on the CPU (flex), through autodiff, and on
//! wgpu (lavapipe here; any GPU where there is one): each against the reference
//! dequantizer followed by a plain f32 matmul.

use burn::tensor::{DType, Device, Int, Tensor, TensorCreationOptions, TensorData};
use penwright_kernels::GgmlType;
use penwright_kernels::dequant::dequantize_to_vec;
use penwright_kernels::ops::{PackedLayout, packed_dequantize, packed_linear, packed_rows};

fn types() -> impl Iterator<Item = GgmlType> {
    GgmlType::FLOATS.into_iter().chain(GgmlType::QUANTIZED)
}

/// Seeded bytes for `rows × cols` elements of `ty` with finite, realistic scales.
fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    penwright_kernels::random::random_matrix(ty, rows, cols, seed)
}

fn upload(bytes: &[u8], device: &Device) -> Tensor<1, Int> {
    let mut b = bytes.to_vec();
    b.resize(b.len().div_ceil(4) * 4, 0);
    let words = b.len() / 4;
    let data = TensorData::from_bytes_vec(b, [words], DType::U32);
    Tensor::from_data(
        data,
        TensorCreationOptions::new(device.clone()).with_dtype(DType::U32),
    )
}

fn floats(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn host(t: Tensor<2>) -> Vec<f32> {
    match t.try_into_data() {
        Ok(d) => d.convert::<f32>().try_to_vec::<f32>().unwrap(),
        Err(e) => panic!("reading back: {e:#?}"),
    }
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}: element {i}: got {g}, want {w} (scale {scale})"
        );
    }
}

/// Every op on `device` against the dequantized reference, for each type.
fn check_device(device: &Device, name: &str) {
    let (rows, cols) = (40, 512);
    for ty in types() {
        let bytes = random_matrix(ty, rows, cols, 3);
        let layout = PackedLayout { ty, rows, cols };
        let blocks = upload(&bytes, device);
        let w = dequantize_to_vec(ty, &bytes, rows * cols).unwrap();
        let w_t = Tensor::<2>::from_data(TensorData::new(w.clone(), [rows, cols]), device);

        let deq = host(packed_dequantize(&blocks, layout));
        assert_close(&format!("{name} {ty} dequantize"), &deq, &w, 1e-6);

        // few rows (the dot-product kernels) and many (the GEMM/matmul path)
        for m in [1usize, 3, 9] {
            let x = Tensor::<2>::from_data(
                TensorData::new(floats(m * cols, m as u64), [m, cols]),
                device,
            );
            let want = host(x.clone().matmul(w_t.clone().transpose()));
            let got = host(packed_linear(x, &blocks, layout));
            // the CPU's dot products quantize activations to 8 bits
            let tol = if ty.block_size() > 1 { 0.03 } else { 1e-3 };
            assert_close(&format!("{name} {ty} linear m={m}"), &got, &want, tol);
        }

        let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![7i64, 0, 39, 7], [4]), device);
        let got = host(packed_rows(ids, &blocks, layout));
        let want: Vec<f32> = [7usize, 0, 39, 7]
            .iter()
            .flat_map(|&r| w[r * cols..(r + 1) * cols].to_vec())
            .collect();
        assert_close(&format!("{name} {ty} rows"), &got, &want, 1e-6);
    }
}

#[test]
fn packed_ops_on_the_cpu_match_the_reference() {
    check_device(&Device::flex(), "flex");
}

/// The wgpu device, set up once for every test of this file (a second setup of the same
/// device fails).
fn wgpu() -> Device {
    static DEVICE: std::sync::OnceLock<Device> = std::sync::OnceLock::new();
    DEVICE
        .get_or_init(|| {
            let attempt = std::panic::catch_unwind(|| Device::wgpu_options().init_with_setup());
            let Ok(Ok((device, _))) = attempt else {
                panic!("no wgpu adapter: install Mesa's lavapipe (mesa-vulkan-drivers)");
            };
            device
        })
        .clone()
}

#[test]
fn packed_ops_on_wgpu_match_the_reference() {
    check_device(&wgpu(), "wgpu");
}

/// The input gradient of `x · Wᵀ` is `dy · W`, computed from the same blocks.
#[test]
fn packed_linear_backward_gives_the_input_gradient() {
    let device = Device::flex().autodiff();
    let (rows, cols, m) = (24, 256, 5);
    for ty in [GgmlType::Q4_1, GgmlType::Q6_K, GgmlType::F16] {
        let bytes = random_matrix(ty, rows, cols, 9);
        let layout = PackedLayout { ty, rows, cols };
        let blocks = upload(&bytes, &device);
        let w = dequantize_to_vec(ty, &bytes, rows * cols).unwrap();
        let x = Tensor::<2>::from_data(TensorData::new(floats(m * cols, 1), [m, cols]), &device)
            .require_grad();
        let g = floats(m * rows, 2);
        let g_t = Tensor::<2>::from_data(TensorData::new(g.clone(), [m, rows]), &device);
        let y = packed_linear(x.clone(), &blocks, layout);
        let grads = (y * g_t).sum().backward();
        let dx: Vec<f32> = x
            .grad(&grads)
            .unwrap()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        let want: Vec<f32> = (0..m * cols)
            .map(|e| {
                let (i, k) = (e / cols, e % cols);
                (0..rows).map(|r| g[i * rows + r] * w[r * cols + k]).sum()
            })
            .collect();
        assert_close(&format!("{ty} dx"), &dx, &want, 1e-4);
    }
}

/// The fused cross-entropy and its gradient against log-softmax + gather through burn's
/// own autodiff, on `device` (an autodiff device).
fn check_cross_entropy(device: &Device, name: &str) {
    use burn::tensor::activation::log_softmax;
    let (n, v) = (6, 777);
    let logits: Vec<f32> = floats(n * v, 3).iter().map(|x| x * 8.0).collect();
    let targets: Vec<i64> = (0..n as i64).map(|i| (i * 131) % v as i64).collect();
    let ids = Tensor::<1, Int>::from_data(TensorData::new(targets.clone(), [n]), device);
    let upstream = 0.7f32;
    let run = |fused: bool| {
        let z =
            Tensor::<2>::from_data(TensorData::new(logits.clone(), [n, v]), device).require_grad();
        let loss = if fused {
            penwright_kernels::ops::cross_entropy(z.clone(), ids.clone())
        } else {
            log_softmax(z.clone(), 1)
                .gather(1, ids.clone().reshape([n, 1]))
                .mean()
                .neg()
        };
        let value = loss
            .clone()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()[0];
        let grads = (loss * upstream).backward();
        (value, host(z.grad(&grads).unwrap()))
    };
    let (loss, grad) = run(true);
    let (want_loss, want_grad) = run(false);
    assert!(
        (loss - want_loss).abs() < 1e-5 * want_loss.abs(),
        "{name}: loss {loss} vs {want_loss}"
    );
    assert_close(&format!("{name} d logits"), &grad, &want_grad, 1e-5);
}

#[test]
fn fused_cross_entropy_matches_log_softmax_on_the_cpu_and_wgpu() {
    check_cross_entropy(&Device::flex().autodiff(), "flex");
    check_cross_entropy(&wgpu().autodiff(), "wgpu");
}

/// The fused SwiGLU and its gradients against `silu(gate) · up` through burn's own
/// autodiff, on `device` (an autodiff device).
fn check_swiglu(device: &Device, name: &str) {
    use burn::tensor::activation::silu;
    let shape = [2, 3, 500];
    let n = shape.iter().product::<usize>();
    let gate: Vec<f32> = floats(n, 4).iter().map(|x| x * 6.0).collect();
    let up = floats(n, 5);
    let upstream = Tensor::<3>::from_data(TensorData::new(floats(n, 6), shape), device);
    let run = |fused: bool| {
        let g = Tensor::<3>::from_data(TensorData::new(gate.clone(), shape), device).require_grad();
        let u = Tensor::<3>::from_data(TensorData::new(up.clone(), shape), device).require_grad();
        let out = if fused {
            penwright_kernels::ops::swiglu(g.clone(), u.clone())
        } else {
            silu(g.clone()) * u.clone()
        };
        let grads = (out.clone() * upstream.clone()).sum().backward();
        let flat = |t: Tensor<3>| host(t.reshape([1, n]));
        (
            flat(out),
            flat(g.grad(&grads).unwrap()),
            flat(u.grad(&grads).unwrap()),
        )
    };
    let (out, dg, du) = run(true);
    let (want_out, want_dg, want_du) = run(false);
    assert_close(&format!("{name} swiglu"), &out, &want_out, 1e-5);
    assert_close(&format!("{name} d gate"), &dg, &want_dg, 1e-5);
    assert_close(&format!("{name} d up"), &du, &want_du, 1e-5);
}

#[test]
fn fused_swiglu_matches_silu_times_up_on_the_cpu_and_wgpu() {
    check_swiglu(&Device::flex().autodiff(), "flex");
    check_swiglu(&wgpu().autodiff(), "wgpu");
}

/// RMSNorm and RoPE (one pass a row on flex; the backend's own ops on wgpu and under
/// autodiff) against their definitions in burn's tensor ops, on `device`.
fn check_norm_and_rope(device: &Device, name: &str) {
    let (b, h, s, d) = (1, 3, 5, 64);
    let n = b * h * s * d;
    let x = Tensor::<4>::from_data(TensorData::new(floats(n, 7), [b, h, s, d]), device) * 3.0;
    let weight = Tensor::<1>::from_data(TensorData::new(floats(d, 8), [d]), device);
    let eps = 1e-5;
    let normed = penwright_kernels::ops::rms_norm(x.clone(), weight.clone(), eps);
    let rms = (x.clone().square().mean_dim(3) + eps).sqrt();
    let want = (x.clone() / rms) * weight.unsqueeze::<4>();
    let flat = |t: Tensor<4>| host(t.reshape([1, n]));
    assert_close(
        &format!("{name} rms_norm"),
        &flat(normed),
        &flat(want),
        1e-5,
    );

    let angles: Vec<f32> = (0..s * d)
        .map(|k| (k / d) as f32 * 0.3 / (1 + k % (d / 2)) as f32)
        .collect();
    let table = |f: fn(f32) -> f32| {
        let v: Vec<f32> = angles.iter().map(|&a| f(a)).collect();
        Tensor::<4>::from_data(TensorData::new(v, [1, 1, s, d]), device)
    };
    let (cos, sin) = (table(f32::cos), table(f32::sin));
    // the rotation of a strided view (heads split out of [b, s, heads · d]), as a model does
    let split = x
        .clone()
        .swap_dims(1, 2)
        .reshape([b, s, h * d])
        .reshape([b, s, h, d])
        .swap_dims(1, 2);
    let rotated = penwright_kernels::ops::rope(split.clone(), cos.clone(), sin.clone());
    let x1 = split.clone().narrow(3, 0, d / 2);
    let x2 = split.clone().narrow(3, d / 2, d / 2);
    let want = split * cos + Tensor::cat(vec![x2.neg(), x1], 3) * sin;
    assert_close(&format!("{name} rope"), &flat(rotated), &flat(want), 1e-5);
}

#[test]
fn fused_rms_norm_and_rope_match_their_definitions_on_the_cpu_and_wgpu() {
    check_norm_and_rope(&Device::flex(), "flex");
    check_norm_and_rope(&Device::flex().autodiff(), "flex autodiff");
    check_norm_and_rope(&wgpu(), "wgpu");
}

//! Quantizing f32 rows to GGUF blocks, for checkpoints that come unquantized
//! (`--quantize q8_0|q4_0|q4_k` at load): Q8_0 and Q4_0 as llama.cpp's reference
//! quantizers (`quantize_row_q8_0_ref`, `quantize_row_q4_0_ref`), Q4_K with a min/max fit
//! per 32-element sub-block (llama.cpp searches its scales further; the blocks decode the
//! same way). The result decodes with [`crate::dequant`] like any file's blocks.

use half::f16;

use crate::format::GgmlType;

/// The types [`quantize_row`] writes.
pub const TARGETS: [GgmlType; 3] = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q4_K];

/// Appends the blocks of `x` (a whole number of `ty`'s blocks) to `out`.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut Vec<u8>) {
    assert!(TARGETS.contains(&ty), "{ty} is not a quantization target");
    assert!(
        x.len().is_multiple_of(ty.block_size()),
        "{} values in {ty} blocks",
        x.len()
    );
    match ty {
        GgmlType::Q8_0 => x.chunks_exact(32).for_each(|b| q8_0(b, out)),
        GgmlType::Q4_0 => x.chunks_exact(32).for_each(|b| q4_0(b, out)),
        _ => x.chunks_exact(256).for_each(|b| q4_k(b, out)),
    }
}

fn put_f16(out: &mut Vec<u8>, v: f32) {
    out.extend(f16::from_f32(v).to_le_bytes());
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    out.extend(x.iter().map(|v| (v * id).round() as i8 as u8));
}

fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    // the value of largest magnitude, with its sign, maps to -8
    let max = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    put_f16(out, d);
    let q = |v: f32| ((v * id + 8.5) as i32).clamp(0, 15) as u8;
    for j in 0..16 {
        out.push(q(x[j]) | (q(x[j + 16]) << 4));
    }
}

fn q4_k(x: &[f32], out: &mut Vec<u8>) {
    // per 32-element sub-block: values ≈ scale · q − min, q in 0..16, min ≥ 0
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let lo = sub.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
        let hi = sub.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        scales[j] = (hi - lo) / 15.0;
        mins[j] = -lo;
    }
    let max_scale = scales.iter().fold(0.0f32, |m, &v| m.max(v));
    let max_min = mins.iter().fold(0.0f32, |m, &v| m.max(v));
    let d = max_scale / 63.0;
    let dmin = max_min / 63.0;
    // the f16-rounded super-block scales are what decoding uses
    let (d, dmin) = (f16::from_f32(d).to_f32(), f16::from_f32(dmin).to_f32());
    let six = |v: f32, unit: f32| {
        if unit > 0.0 {
            (v / unit).round().clamp(0.0, 63.0) as u8
        } else {
            0
        }
    };
    let sc: [u8; 8] = std::array::from_fn(|j| six(scales[j], d));
    let m: [u8; 8] = std::array::from_fn(|j| six(mins[j], dmin));
    put_f16(out, d);
    put_f16(out, dmin);
    // the inverse of `get_scale_min_k4`
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4);
    }
    out.extend(packed);
    let q: Vec<u8> = x
        .chunks_exact(32)
        .enumerate()
        .flat_map(|(j, sub)| {
            let step = d * sc[j] as f32;
            let offset = dmin * m[j] as f32;
            sub.iter().map(move |&v| {
                if step > 0.0 {
                    ((v + offset) / step).round().clamp(0.0, 15.0) as u8
                } else {
                    0
                }
            })
        })
        .collect();
    for g in 0..4 {
        for l in 0..32 {
            out.push(q[64 * g + l] | (q[64 * g + 32 + l] << 4));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::dequantize_to_vec;
    use crate::random::Rng;

    #[test]
    fn quantized_rows_decode_close_to_the_input() {
        let mut rng = Rng::new(12);
        let mut x: Vec<f32> = (0..4096).map(|_| rng.normal(0.05)).collect();
        x[..32].fill(0.0); // an all-zero block
        x[40] = 0.9; // an outlier
        for (ty, max_rel) in [
            (GgmlType::Q8_0, 0.01),
            (GgmlType::Q4_0, 0.12),
            (GgmlType::Q4_K, 0.10),
        ] {
            let mut bytes = Vec::new();
            quantize_row(ty, &x, &mut bytes);
            assert_eq!(bytes.len(), ty.row_bytes(x.len()).unwrap(), "{ty}");
            let y = dequantize_to_vec(ty, &bytes, x.len()).unwrap();
            let err: f64 = x
                .iter()
                .zip(&y)
                .map(|(a, b)| ((a - b) as f64).powi(2))
                .sum();
            let norm: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
            let rel = (err / norm).sqrt();
            eprintln!("{ty}: relative RMS error {rel:.4}");
            assert!(rel < max_rel, "{ty}: relative RMS error {rel}");
            assert!(y[..32].iter().all(|&v| v == 0.0), "{ty}: zeros stay zeros");
        }
    }
}

//! Portable dot products of one weight row with one activation row: the fallback on CPUs
//! without the SIMD paths, and the definition the SIMD kernels are tested against.
//!
//! Each weight element is written as an unsigned integer `u` with an integer or float
//! scale and an offset per sub-block (the element orders are those of
//! [`crate::dequant`]). The products `Σ u·q` are exact integers; the offsets are applied
//! through the activation's block sums.

use half::{bf16, f16};

use super::activation::ActivationRow;
use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::format::GgmlType;

#[inline(always)]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

/// `Σ u[i]·q[i]` of 32 (or 16) unsigned values against activation bytes.
#[inline(always)]
fn idot(u: impl Iterator<Item = i32>, q: &[i8]) -> i32 {
    u.zip(q).map(|(u, &q)| u * q as i32).sum()
}

/// One quantized weight row (`a.qs.len()` elements of `ty`) times one activation row.
pub fn dot(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    match ty {
        GgmlType::Q4_0 => blocks32::<18>(w, a, |b, q| {
            let u = (0..32).map(|i| nibble(&b[2..], i));
            (f16_at(b, 0), idot(u, q), -8.0 * f16_at(b, 0))
        }),
        GgmlType::Q4_1 => blocks32::<20>(w, a, |b, q| {
            let u = (0..32).map(|i| nibble(&b[4..], i));
            (f16_at(b, 0), idot(u, q), f16_at(b, 2))
        }),
        GgmlType::Q5_0 => blocks32::<22>(w, a, |b, q| {
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            let u = (0..32).map(|i| nibble(&b[6..], i) | (((qh >> i) & 1) << 4) as i32);
            (f16_at(b, 0), idot(u, q), -16.0 * f16_at(b, 0))
        }),
        GgmlType::Q5_1 => blocks32::<24>(w, a, |b, q| {
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            let u = (0..32).map(|i| nibble(&b[8..], i) | (((qh >> i) & 1) << 4) as i32);
            (f16_at(b, 0), idot(u, q), f16_at(b, 2))
        }),
        GgmlType::Q8_0 => blocks32::<34>(w, a, |b, q| {
            let u = (0..32).map(|i| b[2 + i] as i8 as i32);
            (f16_at(b, 0), idot(u, q), 0.0)
        }),
        GgmlType::Q2_K => super_blocks::<84>(w, a, q2_k),
        GgmlType::Q3_K => super_blocks::<110>(w, a, q3_k),
        GgmlType::Q4_K => super_blocks::<144>(w, a, q4_k),
        GgmlType::Q5_K => super_blocks::<176>(w, a, q5_k),
        GgmlType::Q6_K => super_blocks::<210>(w, a, q6_k),
        other => panic!("{other} has no quantized dot product"),
    }
}

/// The low nibbles hold elements 0..16 of a 32-block, the high nibbles 16..32.
#[inline(always)]
fn nibble(qs: &[u8], i: usize) -> i32 {
    if i < 16 {
        (qs[i] & 0xF) as i32
    } else {
        (qs[i - 16] >> 4) as i32
    }
}

/// Sums 32-element blocks: `block(bytes, q) = (scale, Σ u·q, offset)` where an element is
/// `scale · u + offset`.
#[inline(always)]
fn blocks32<const TS: usize>(
    w: &[u8],
    a: ActivationRow<'_>,
    block: impl Fn(&[u8], &[i8]) -> (f32, i32, f32),
) -> f32 {
    let mut sum = 0.0f32;
    for (b, ((q, &d), &s)) in w
        .chunks_exact(TS)
        .zip(a.qs.chunks_exact(32).zip(a.d).zip(a.sums))
    {
        let (scale, dot, offset) = block(b, q);
        sum += d * (scale * dot as f32 + offset * s as f32);
    }
    sum
}

/// Sums 256-element super-blocks: `block(bytes, q, sums16) = (d·Σ, dmin·Σ)` already in
/// weight units, multiplied here by the activation scale.
#[inline(always)]
fn super_blocks<const TS: usize>(
    w: &[u8],
    a: ActivationRow<'_>,
    block: fn(&[u8], &[i8], &[i32]) -> f32,
) -> f32 {
    let mut sum = 0.0f32;
    for (b, ((q, &d), sums)) in w
        .chunks_exact(TS)
        .zip(a.qs.chunks_exact(256).zip(a.d).zip(a.sums.chunks_exact(16)))
    {
        sum += d * block(b, q, sums);
    }
    sum
}

// block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }
fn q2_k(b: &[u8], q: &[i8], sums: &[i32]) -> f32 {
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    let (mut isum, mut msum) = (0i32, 0i32);
    for k in 0..16 {
        let (n, j, half) = (k / 8, (k % 8) / 2, k % 2);
        let qs = &b[16 + 32 * n + 16 * half..];
        let u = (0..16).map(|l| ((qs[l] >> (2 * j)) & 3) as i32);
        isum += (b[k] & 0xF) as i32 * idot(u, &q[16 * k..16 * k + 16]);
        msum += (b[k] >> 4) as i32 * sums[k];
    }
    d * isum as f32 - dmin * msum as f32
}

// block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }
fn q3_k(b: &[u8], q: &[i8], sums: &[i32]) -> f32 {
    let scales = q3_k_scales(&b[96..108]);
    let mut isum = 0i32;
    for (k, &sc) in scales.iter().enumerate() {
        let (n, j, half) = (k / 8, (k % 8) / 2, k % 2);
        let qs = &b[32 + 32 * n + 16 * half..];
        let hm = &b[16 * half..];
        let bit = 1u8 << (4 * n + j);
        let u = (0..16)
            .map(|l| (((qs[l] >> (2 * j)) & 3) + if hm[l] & bit != 0 { 4 } else { 0 }) as i32);
        let dot = idot(u, &q[16 * k..16 * k + 16]) - 4 * sums[k];
        isum += (sc as i32 - 32) * dot;
    }
    f16_at(b, 108) * isum as f32
}

// block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }
fn q4_k(b: &[u8], q: &[i8], sums: &[i32]) -> f32 {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        let qs = &b[16 + 32 * (j / 2)..];
        let shift = 4 * (j % 2);
        let u = (0..32).map(|l| ((qs[l] >> shift) & 0xF) as i32);
        isum += sc as i32 * idot(u, &q[32 * j..32 * j + 32]);
        msum += m as i32 * (sums[2 * j] + sums[2 * j + 1]);
    }
    d * isum as f32 - dmin * msum as f32
}

// block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }
fn q5_k(b: &[u8], q: &[i8], sums: &[i32]) -> f32 {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let qh = &b[16..48];
    let (mut isum, mut msum) = (0i32, 0i32);
    for j in 0..8 {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        let qs = &b[48 + 32 * (j / 2)..];
        let shift = 4 * (j % 2);
        let u = (0..32).map(|l| (((qs[l] >> shift) & 0xF) | (((qh[l] >> j) & 1) << 4)) as i32);
        isum += sc as i32 * idot(u, &q[32 * j..32 * j + 32]);
        msum += m as i32 * (sums[2 * j] + sums[2 * j + 1]);
    }
    d * isum as f32 - dmin * msum as f32
}

// block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }
fn q6_k(b: &[u8], q: &[i8], sums: &[i32]) -> f32 {
    let mut isum = 0i32;
    for k in 0..16 {
        // group k: 16 elements at 16k, in half n, quarter p (0..4) of that half
        let (n, p, part) = (k / 8, (k % 8) / 2, k % 2);
        let ql = &b[64 * n + 32 * (p % 2) + 16 * part..];
        let qh = &b[128 + 32 * n + 16 * part..];
        let (lshift, hshift) = (4 * (p / 2), 2 * p);
        let u =
            (0..16).map(|l| (((ql[l] >> lshift) & 0xF) | (((qh[l] >> hshift) & 3) << 4)) as i32);
        let dot = idot(u, &q[16 * k..16 * k + 16]) - 32 * sums[k];
        isum += (b[192 + k] as i8) as i32 * dot;
    }
    f16_at(b, 208) * isum as f32
}

/// One unquantized weight row (f32, f16 or bf16 little-endian) times an f32 row.
pub fn dot_float(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    match ty {
        GgmlType::F32 => w
            .chunks_exact(4)
            .zip(x)
            .map(|(b, &x)| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * x)
            .sum(),
        GgmlType::F16 => w
            .chunks_exact(2)
            .zip(x)
            .map(|(b, &x)| f16::from_le_bytes([b[0], b[1]]).to_f32() * x)
            .sum(),
        GgmlType::BF16 => w
            .chunks_exact(2)
            .zip(x)
            .map(|(b, &x)| bf16::from_le_bytes([b[0], b[1]]).to_f32() * x)
            .sum(),
        other => panic!("{other} is not a float type"),
    }
}

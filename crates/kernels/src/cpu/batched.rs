//! Many activation rows (prefill, perplexity) against one packed matrix in 8-bit integers.
//!
//! Each weight row is unpacked once per product to unsigned bytes with one f32 scale and
//! one f32 offset per block of `L` elements (`w ≈ scale · u + offset`; `L` is 32, or 16 for
//! the K-quants whose sub-blocks are 16 wide), and every 8 blocks are *interleaved* four bytes
//! at a time: byte `t` of chunk `j` of block `k` sits at `(8j + k)·4 + t`. The activations get
//! the same interleave. One 32-byte load then feeds a byte dot product (`vpdpbusd`, or AVX2's
//! two-step equivalent) whose eight 32-bit lanes are eight *different blocks*: after `L/4`
//! such steps the lanes hold the eight blocks' dot products, scaled by eight scales at once,
//! with no horizontal sums. Four weight rows share each activation load. A row whose block
//! count is not a multiple of eight is padded to whole groups with zero blocks (zero values,
//! scales and offsets on both sides), so every block takes the SIMD loop: rows 960 or 576
//! wide (SmolLM2-360M, -135M) would otherwise leave a fifth of their blocks to scalar code.
//!
//! Every quantized type takes this path. Q8_0's values span the whole byte range, which
//! AVX2's saturating pair sums cannot hold as `q + 128`: on AVX2 its row keeps the signed
//! bytes (offset zero) and the kernel moves each weight's sign onto the activation byte
//! (see [`signed_values`]). Float weights use the f32 GEMM path.

use super::activation::QuantizedActivations;
use super::scalar::f16_at;
use super::{Isa, PackedMatrix};
use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::format::GgmlType;

/// Whether [`unpack_row`] handles `ty` on `isa`.
pub fn supports(isa: Isa, ty: GgmlType) -> bool {
    use GgmlType::*;
    match ty {
        Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => isa.is_x86(),
        _ => false,
    }
}

/// Whether the unpacked row of `ty` on `isa` holds signed bytes (`w = scale · q`, offset
/// zero) rather than unsigned ones: Q8_0 on AVX2, whose `vpmaddubsw` multiplies `|w|` by the
/// activation byte carrying `w`'s sign (`vpsignb`), pair sums at most 2 · 128 · 127, exact.
/// As `w + 128` the pair sums (up to 2 · 255 · 127) would saturate.
pub fn signed_values(isa: Isa, ty: GgmlType) -> bool {
    ty == GgmlType::Q8_0 && isa == Isa::Avx2
}

/// Elements per scale of `ty` in the unpacked form.
pub fn block_len(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q6_K => 16,
        _ => 32,
    }
}

/// Blocks of a row of `n_blocks` in the interleaved form: whole groups of eight, the last
/// one padded with zero blocks.
#[inline(always)]
pub fn padded_blocks(n_blocks: usize) -> usize {
    n_blocks.div_ceil(8) * 8
}

/// Position of element `e` (of a row of blocks of `len`) in the interleaved order.
#[inline(always)]
pub fn interleaved_index(e: usize, len: usize) -> usize {
    let (block, within) = (e / len, e % len);
    let (group, k) = (block / 8, block % 8);
    let (j, t) = (within / 4, within % 4);
    group * 8 * len + (8 * j + k) * 4 + t
}

/// Writes the values of block `b` to their interleaved places.
#[inline(always)]
pub fn place_block(row: &mut [u8], b: usize, values: &[u8]) {
    let len = values.len();
    let (group, k) = (b / 8, b % 8);
    for j in 0..len / 4 {
        let at = group * 8 * len + (8 * j + k) * 4;
        row[at..at + 4].copy_from_slice(&values[4 * j..4 * j + 4]);
    }
}

/// A weight row as the batched kernel reads it.
#[derive(Debug, Default, Clone)]
pub struct UnpackedRow {
    /// The values, interleaved: unsigned, or two's-complement signed where `signed`.
    pub u: Vec<u8>,
    /// See [`signed_values`].
    pub signed: bool,
    /// Per block: `w = scale · u + offset`.
    pub scale: Vec<f32>,
    pub offset: Vec<f32>,
}

/// Unpacks row `r` of `w` (a type [`supports`] accepts) into `out`; the values of Q4_K,
/// Q5_K and Q6_K in SIMD where `isa` has it (the portable code is their reference).
pub fn unpack_row(isa: Isa, w: &PackedMatrix<'_>, r: usize, out: &mut UnpackedRow) {
    // the values of the K-quants that have an AVX2 unpacker come from it
    #[cfg(target_arch = "x86_64")]
    let simd = isa.is_x86() && matches!(w.ty, GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K);
    #[cfg(not(target_arch = "x86_64"))]
    let simd = {
        let _ = isa;
        false
    };
    let cols = w.cols;
    let signed = signed_values(isa, w.ty);
    out.signed = signed;
    let len = block_len(w.ty);
    let nb = cols / len;
    let padded = padded_blocks(nb);
    out.u.resize(padded * len, 0);
    out.scale.resize(padded, 0.0);
    out.offset.resize(padded, 0.0);
    if padded > nb {
        // the padding blocks: zero values (their places interleave with the last real ones)
        out.u[(padded - 8) * len..].fill(0);
        out.scale[nb..].fill(0.0);
        out.offset[nb..].fill(0.0);
    }
    let row = w.row(r);
    let u = &mut out.u;
    let nibble = |qs: &[u8], i: usize| if i < 16 { qs[i] & 0xF } else { qs[i - 16] >> 4 };
    let mut values = [0u8; 32];
    let ts = w.ty.type_size();
    match w.ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
            for (b, blk) in row.chunks_exact(ts).enumerate() {
                let d = f16_at(blk, 0);
                let (scale, offset) = match w.ty {
                    GgmlType::Q4_0 => (d, -8.0 * d),
                    GgmlType::Q5_0 => (d, -16.0 * d),
                    GgmlType::Q8_0 if signed => (d, 0.0),
                    GgmlType::Q8_0 => (d, -128.0 * d),
                    _ => (d, f16_at(blk, 2)),
                };
                out.scale[b] = scale;
                out.offset[b] = offset;
                match w.ty {
                    GgmlType::Q4_0 | GgmlType::Q4_1 => {
                        let qs = &blk[if w.ty == GgmlType::Q4_0 { 2 } else { 4 }..];
                        for (i, v) in values.iter_mut().enumerate() {
                            *v = nibble(qs, i);
                        }
                    }
                    GgmlType::Q5_0 | GgmlType::Q5_1 => {
                        let at = if w.ty == GgmlType::Q5_0 { 2 } else { 4 };
                        let qh =
                            u32::from_le_bytes([blk[at], blk[at + 1], blk[at + 2], blk[at + 3]]);
                        for (i, v) in values.iter_mut().enumerate() {
                            *v = nibble(&blk[at + 4..], i) | ((((qh >> i) & 1) as u8) << 4);
                        }
                    }
                    _ => {
                        let flip = if signed { 0 } else { 0x80 }; // i8, or i8 + 128
                        for (v, &q) in values.iter_mut().zip(&blk[2..34]) {
                            *v = q ^ flip;
                        }
                    }
                }
                place_block(u, b, &values);
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let five = w.ty == GgmlType::Q5_K;
            for (sb, blk) in row.chunks_exact(ts).enumerate() {
                let (d, dmin) = (f16_at(blk, 0), f16_at(blk, 2));
                for j in 0..8 {
                    let (sc, m) = scale_min_k4(j, &blk[4..16]);
                    out.scale[8 * sb + j] = d * sc as f32;
                    out.offset[8 * sb + j] = -dmin * m as f32;
                }
                if simd {
                    #[cfg(target_arch = "x86_64")]
                    {
                        let dst = u[256 * sb..256 * (sb + 1)].as_mut_ptr();
                        // SAFETY: non-scalar `Isa`s have AVX2; the block and `dst` are whole.
                        unsafe {
                            if five {
                                super::x86::unpack_q45_k_avx2::<true>(blk.as_ptr(), dst)
                            } else {
                                super::x86::unpack_q45_k_avx2::<false>(blk.as_ptr(), dst)
                            }
                        }
                    }
                    continue;
                }
                for j in 0..8 {
                    let qs = &blk[if five { 48 } else { 16 } + 32 * (j / 2)..];
                    let shift = 4 * (j % 2);
                    for (l, v) in values.iter_mut().enumerate() {
                        *v = (qs[l] >> shift) & 0xF;
                        if five {
                            *v |= ((blk[16 + l] >> j) & 1) << 4;
                        }
                    }
                    place_block(u, 8 * sb + j, &values);
                }
            }
        }
        // 16-element sub-blocks: group k holds elements 16k..16k+16 of the super-block
        GgmlType::Q2_K | GgmlType::Q3_K | GgmlType::Q6_K => {
            let values = &mut values[..16];
            for (sb, blk) in row.chunks_exact(ts).enumerate() {
                #[cfg(target_arch = "x86_64")]
                if simd {
                    let dst = u[256 * sb..256 * (sb + 1)].as_mut_ptr();
                    // SAFETY: as for Q4_K.
                    unsafe { super::x86::unpack_q6_k_avx2(blk.as_ptr(), dst) };
                }
                let q3 = (w.ty == GgmlType::Q3_K).then(|| q3_k_scales(&blk[96..108]));
                for k in 0..16 {
                    let (n, p, part) = (k / 8, (k % 8) / 2, k % 2);
                    let (scale, offset) = match w.ty {
                        GgmlType::Q2_K => {
                            let (d, dmin) = (f16_at(blk, 80), f16_at(blk, 82));
                            let sc = blk[k];
                            for (l, v) in values.iter_mut().enumerate() {
                                *v = (blk[16 + 32 * n + 16 * part + l] >> (2 * p)) & 3;
                            }
                            (d * (sc & 0xF) as f32, -dmin * (sc >> 4) as f32)
                        }
                        GgmlType::Q3_K => {
                            let scale =
                                f16_at(blk, 108) * (q3.expect("Q3_K")[k] as i32 - 32) as f32;
                            let bit = 1u8 << (4 * n + p);
                            for (l, v) in values.iter_mut().enumerate() {
                                let lo = (blk[32 + 32 * n + 16 * part + l] >> (2 * p)) & 3;
                                let hi = if blk[16 * part + l] & bit != 0 { 4 } else { 0 };
                                *v = lo | hi;
                            }
                            (scale, -4.0 * scale)
                        }
                        _ => {
                            let scale = f16_at(blk, 208) * (blk[192 + k] as i8) as f32;
                            if !simd {
                                let ql = &blk[64 * n + 32 * (p % 2) + 16 * part..];
                                let qh = &blk[128 + 32 * n + 16 * part..];
                                for (l, v) in values.iter_mut().enumerate() {
                                    *v = ((ql[l] >> (4 * (p / 2))) & 0xF)
                                        | (((qh[l] >> (2 * p)) & 3) << 4);
                                }
                            }
                            (scale, -32.0 * scale)
                        }
                    };
                    out.scale[16 * sb + k] = scale;
                    out.offset[16 * sb + k] = offset;
                    if !simd {
                        place_block(u, 16 * sb + k, values);
                    }
                }
            }
        }
        other => panic!("{other} has no batched 8-bit path"),
    }
}

/// The interleaved activation of `a` for blocks of `len`, with the per-block sums the
/// weight offsets multiply (`d · Σq`, each block at its 32-element activation block's
/// scale); rows padded to whole groups as the weights are (zero bytes, scales and sums).
#[derive(Debug, Default)]
pub struct InterleavedActivations {
    pub len: usize,
    pub rows: usize,
    pub cols: usize,
    /// `rows × padded · len` interleaved bytes.
    pub q: Vec<i8>,
    /// The activation scale of each weight block (`rows × padded`).
    pub d: Vec<f32>,
    /// `d · Σq` of each weight block.
    pub dsum: Vec<f32>,
}

impl InterleavedActivations {
    pub fn build(a: &QuantizedActivations, len: usize) -> Self {
        assert_eq!(a.blocks.len(), 32, "32-element activation blocks");
        let (rows, cols) = (a.rows, a.cols);
        let nb = cols / len;
        let padded = padded_blocks(nb);
        let mut q = vec![0i8; rows * padded * len];
        let mut d = Vec::with_capacity(rows * padded);
        let mut dsum = Vec::with_capacity(rows * padded);
        let bytes: &[u8] = bytemuck::cast_slice(&a.qs);
        let out: &mut [u8] = bytemuck::cast_slice_mut(&mut q);
        for (i, (src, dst)) in bytes
            .chunks_exact(cols)
            .zip(out.chunks_exact_mut(padded * len))
            .enumerate()
        {
            for (b, block) in src.chunks_exact(len).enumerate() {
                place_block(dst, b, block);
                let scale = a.d[i * cols / 32 + b * len / 32];
                let sum: i32 = block.iter().map(|&v| v as i8 as i32).sum();
                d.push(scale);
                dsum.push(scale * sum as f32);
            }
            d.resize(d.len() + padded - nb, 0.0);
            dsum.resize(dsum.len() + padded - nb, 0.0);
        }
        InterleavedActivations {
            len,
            rows,
            cols,
            q,
            d,
            dsum,
        }
    }

    #[inline]
    pub fn row(&self, i: usize) -> (&[i8], &[f32], &[f32]) {
        let padded = padded_blocks(self.cols / self.len);
        let bytes = padded * self.len;
        (
            &self.q[i * bytes..(i + 1) * bytes],
            &self.d[i * padded..(i + 1) * padded],
            &self.dsum[i * padded..(i + 1) * padded],
        )
    }
}

/// Value `at` (an interleaved position) of `row`.
#[inline(always)]
pub fn value(row: &UnpackedRow, at: usize) -> i32 {
    if row.signed {
        row.u[at] as i8 as i32
    } else {
        row.u[at] as i32
    }
}

/// Four weight rows times activation row `i` on the portable path (the definition the
/// SIMD kernels are tested against).
pub fn rows4_scalar(w: [&UnpackedRow; 4], a: &InterleavedActivations, i: usize) -> [f32; 4] {
    let (q, d, ds) = a.row(i);
    let (len, nb) = (a.len, a.cols / a.len);
    w.map(|row| {
        let mut sum = 0.0f32;
        for b in 0..nb {
            let dot: i32 = (0..len)
                .map(|t| {
                    let at = interleaved_index(len * b + t, len);
                    value(row, at) * q[at] as i32
                })
                .sum();
            sum += row.scale[b] * d[b] * dot as f32 + row.offset[b] * ds[b];
        }
        sum
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dequant::dequantize_to_vec;
    use crate::random::random_matrix;

    const TYPES: [GgmlType; 10] = GgmlType::QUANTIZED;

    #[test]
    fn unpacked_rows_decode_as_the_reference() {
        for ty in TYPES {
            let (rows, cols) = (3, 768);
            let bytes = random_matrix(ty, rows, cols, 21);
            let w = PackedMatrix::new(ty, rows, cols, &bytes).unwrap();
            let want = dequantize_to_vec(ty, &bytes, rows * cols).unwrap();
            let len = block_len(ty);
            let mut row = UnpackedRow::default();
            for (isa, r) in Isa::all_supported()
                .into_iter()
                .flat_map(|isa| (0..rows).map(move |r| (isa, r)))
            {
                unpack_row(isa, &w, r, &mut row);
                for e in 0..cols {
                    let b = e / len;
                    let u = value(&row, interleaved_index(e, len)) as f32;
                    let v = row.scale[b] * u + row.offset[b];
                    let x = want[r * cols + e];
                    assert!(
                        (v - x).abs() <= 1e-5 * x.abs().max(1e-2),
                        "{ty} {} row {r} element {e}: {v} vs {x}",
                        isa.name()
                    );
                }
            }
        }
    }

    #[test]
    fn the_interleave_is_a_permutation() {
        for len in [16, 32] {
            for nb in [1, 8, 18, 24, 30] {
                let size = padded_blocks(nb) * len;
                let mut seen = vec![false; size];
                for e in 0..len * nb {
                    let at = interleaved_index(e, len);
                    assert!(at < size && !seen[at], "len {len} nb {nb}: {e} collides");
                    seen[at] = true;
                }
            }
        }
    }
}

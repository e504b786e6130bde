//! The reference dequantizer: ggml blocks to f32.
//!
//! The block layouts and the arithmetic follow ggml's `dequantize_row_*` in
//! `ggml-quants.c` operation for operation, so the f32 values are bit-identical to
//! llama.cpp's. The unit tests check them against llama.cpp's gguf-py
//! (`tests/fixtures/quant_ref.json`). Every faster kernel in this crate is tested against
//! this module.

use std::fmt;
use std::sync::OnceLock;

use half::{bf16, f16};

use crate::format::GgmlType;

/// Why [`dequantize`] refused its input. Callers that know the file and tensor turn it
/// into an [`crate::EngineError`] naming them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DequantError {
    /// No decoder for this type (see [`GgmlType::is_supported`]).
    Unsupported(GgmlType),
    /// `n_elems` is not a whole number of the type's blocks.
    NotBlockMultiple {
        dtype: GgmlType,
        n_elems: usize,
        block_size: usize,
    },
    /// The byte slice does not hold exactly `n_elems` elements of the type.
    WrongLength {
        dtype: GgmlType,
        n_elems: usize,
        expected: usize,
        actual: usize,
    },
}

impl fmt::Display for DequantError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DequantError::Unsupported(t) => write!(f, "cannot dequantize ggml type {t}"),
            DequantError::NotBlockMultiple {
                dtype,
                n_elems,
                block_size,
            } => write!(
                f,
                "{n_elems} elements of {dtype} are not a whole number of {block_size}-element blocks"
            ),
            DequantError::WrongLength {
                dtype,
                n_elems,
                expected,
                actual,
            } => write!(
                f,
                "{n_elems} elements of {dtype} take {expected} bytes, got {actual}"
            ),
        }
    }
}

impl std::error::Error for DequantError {}

/// Dequantizes `n_elems` elements of `dtype` stored in `bytes` (exactly
/// `dtype.row_bytes(n_elems)` bytes) into `out`, replacing its contents. Large inputs
/// are split across threads.
pub fn dequantize(
    dtype: GgmlType,
    bytes: &[u8],
    n_elems: usize,
    out: &mut Vec<f32>,
) -> Result<(), DequantError> {
    check(dtype, bytes, n_elems)?;
    out.clear();
    out.resize(n_elems, 0.0);
    dequantize_into(dtype, bytes, out)
}

/// Dequantizes `bytes` into `out`, whose length is the number of elements.
pub fn dequantize_into(dtype: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), DequantError> {
    check(dtype, bytes, out.len())?;
    let bs = dtype.block_size();
    let ts = dtype.type_size();
    let n_blocks = out.len() / bs;
    let threads = thread_count(out.len());
    if threads <= 1 {
        run_kernel(dtype, bytes, out);
        return Ok(());
    }
    let blocks_per = n_blocks.div_ceil(threads);
    std::thread::scope(|s| {
        let mut src_chunks = bytes.chunks(blocks_per * ts);
        let mut dst_chunks = out.chunks_mut(blocks_per * bs);
        // The calling thread does the first chunk itself.
        let first = src_chunks.next().zip(dst_chunks.next());
        for (src, dst) in src_chunks.zip(dst_chunks) {
            s.spawn(move || run_kernel(dtype, src, dst));
        }
        if let Some((src, dst)) = first {
            run_kernel(dtype, src, dst);
        }
    });
    Ok(())
}

/// Dequantizes into a fresh vector.
pub fn dequantize_to_vec(
    dtype: GgmlType,
    bytes: &[u8],
    n_elems: usize,
) -> Result<Vec<f32>, DequantError> {
    check(dtype, bytes, n_elems)?;
    // `vec![0.0; n]` gets zeroed pages from the allocator without touching them.
    let mut out = vec![0.0f32; n_elems];
    dequantize_into(dtype, bytes, &mut out)?;
    Ok(out)
}

fn check(dtype: GgmlType, bytes: &[u8], n_elems: usize) -> Result<(), DequantError> {
    if !dtype.is_supported() {
        return Err(DequantError::Unsupported(dtype));
    }
    let expected = dtype
        .row_bytes(n_elems)
        .ok_or(DequantError::NotBlockMultiple {
            dtype,
            n_elems,
            block_size: dtype.block_size(),
        })?;
    if bytes.len() != expected {
        return Err(DequantError::WrongLength {
            dtype,
            n_elems,
            expected,
            actual: bytes.len(),
        });
    }
    Ok(())
}

/// Below this many elements per thread, spawning costs more than it saves.
const MIN_ELEMS_PER_THREAD: usize = 1 << 18;

fn thread_count(n_elems: usize) -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    let cores = *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .min(8)
    });
    (n_elems / MIN_ELEMS_PER_THREAD).clamp(1, cores)
}

/// Dequantizes whole blocks on the calling thread (the building block of the tiled
/// kernels): `src` must hold exactly the blocks of `dst.len()` elements.
pub fn dequantize_on_thread(
    dtype: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), DequantError> {
    check(dtype, src, dst.len())?;
    run_kernel(dtype, src, dst);
    Ok(())
}

/// `src` holds whole blocks and `dst` exactly their elements (checked by the callers).
fn run_kernel(dtype: GgmlType, src: &[u8], dst: &mut [f32]) {
    match dtype {
        GgmlType::F32 => deq_f32(src, dst),
        GgmlType::F16 => deq_f16(src, dst),
        GgmlType::BF16 => deq_bf16(src, dst),
        GgmlType::Q4_0 => blocks::<18, 32>(src, dst, deq_q4_0),
        GgmlType::Q4_1 => blocks::<20, 32>(src, dst, deq_q4_1),
        GgmlType::Q5_0 => blocks::<22, 32>(src, dst, deq_q5_0),
        GgmlType::Q5_1 => blocks::<24, 32>(src, dst, deq_q5_1),
        GgmlType::Q8_0 => blocks::<34, 32>(src, dst, deq_q8_0),
        GgmlType::Q2_K => blocks::<84, 256>(src, dst, deq_q2_k),
        GgmlType::Q3_K => blocks::<110, 256>(src, dst, deq_q3_k),
        GgmlType::Q4_K => blocks::<144, 256>(src, dst, deq_q4_k),
        GgmlType::Q5_K => blocks::<176, 256>(src, dst, deq_q5_k),
        GgmlType::Q6_K => blocks::<210, 256>(src, dst, deq_q6_k),
        // `check` rejected everything else.
        _ => {}
    }
}

/// Runs a per-block kernel over whole blocks, handing it fixed-size arrays so that the
/// compiler can drop the bounds checks inside.
#[inline(always)]
fn blocks<const TS: usize, const BS: usize>(
    src: &[u8],
    dst: &mut [f32],
    kernel: impl Fn(&[u8; TS], &mut [f32; BS]),
) {
    for (b, y) in src.chunks_exact(TS).zip(dst.chunks_exact_mut(BS)) {
        if let (Ok(b), Ok(y)) = (<&[u8; TS]>::try_from(b), <&mut [f32; BS]>::try_from(y)) {
            kernel(b, y);
        }
    }
}

#[inline(always)]
fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[i], b[i + 1]])).to_f32()
}

fn deq_f32(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *y = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
    }
}

fn deq_f16(src: &[u8], dst: &mut [f32]) {
    // Chunks of 8 let `half` use its vectorised F16C path where the CPU has one.
    let mut bits = [0u16; 64];
    for (x, y) in src.chunks(128).zip(dst.chunks_mut(64)) {
        let n = y.len();
        for (h, p) in bits.iter_mut().zip(x.chunks_exact(2)) {
            *h = u16::from_le_bytes([p[0], p[1]]);
        }
        let halves: &[f16] = half::slice::HalfBitsSliceExt::reinterpret_cast(&bits[..n]);
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(halves, y);
    }
}

fn deq_bf16(src: &[u8], dst: &mut [f32]) {
    for (x, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = bf16::from_bits(u16::from_le_bytes([x[0], x[1]])).to_f32();
    }
}

// block_q4_0 { ggml_half d; uint8_t qs[16]; }
fn deq_q4_0(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        let x0 = (q & 0x0F) as i32 - 8;
        let x1 = (q >> 4) as i32 - 8;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

// block_q4_1 { ggml_half d; ggml_half m; uint8_t qs[16]; }
fn deq_q4_1(b: &[u8; 20], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    for j in 0..16 {
        let q = b[4 + j];
        let x0 = (q & 0x0F) as f32;
        let x1 = (q >> 4) as f32;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

// block_q5_0 { ggml_half d; uint8_t qh[4]; uint8_t qs[16]; }
fn deq_q5_0(b: &[u8; 22], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j] as u32;
        let xh_0 = ((qh >> j) << 4) & 0x10;
        let xh_1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((q & 0x0F) | xh_0) as i32 - 16;
        let x1 = ((q >> 4) | xh_1) as i32 - 16;
        y[j] = x0 as f32 * d;
        y[j + 16] = x1 as f32 * d;
    }
}

// block_q5_1 { ggml_half d; ggml_half m; uint8_t qh[4]; uint8_t qs[16]; }
fn deq_q5_1(b: &[u8; 24], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j] as u32;
        let xh_0 = ((qh >> j) << 4) & 0x10;
        let xh_1 = (qh >> (j + 12)) & 0x10;
        let x0 = ((q & 0x0F) | xh_0) as f32;
        let x1 = ((q >> 4) | xh_1) as f32;
        y[j] = x0 * d + m;
        y[j + 16] = x1 * d + m;
    }
}

// block_q8_0 { ggml_half d; int8_t qs[32]; }
fn deq_q8_0(b: &[u8; 34], y: &mut [f32; 32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        y[j] = (b[2 + j] as i8) as f32 * d;
    }
}

// block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }
fn deq_q2_k(b: &[u8; 84], y: &mut [f32; 256]) {
    let scales = &b[0..16];
    let d = f16_at(b, 80);
    let min = f16_at(b, 82);
    let mut out = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &b[16 + 32 * n..16 + 32 * n + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0xF) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    y[out] = dl * ((q[16 * half + l] >> shift) & 3) as f32 - ml;
                    out += 1;
                }
            }
            shift += 2;
        }
    }
}

// block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }
/// The sixteen 6-bit scales of a Q3_K block (bytes 96..108), before ggml's `- 32`.
pub(crate) fn q3_k_scales(s: &[u8]) -> [i8; 16] {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let mut aux = [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
        0,
    ];
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    let mut scales = [0i8; 16];
    for (i, a) in aux.iter().enumerate() {
        for (k, byte) in a.to_le_bytes().iter().enumerate() {
            scales[4 * i + k] = *byte as i8;
        }
    }
    scales
}

fn deq_q3_k(b: &[u8; 110], y: &mut [f32; 256]) {
    let hm = &b[0..32];
    let d_all = f16_at(b, 108);
    let scales = q3_k_scales(&b[96..108]);
    let mut out = 0;
    let mut is = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + 32 * n..32 + 32 * n + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let i = 16 * half + l;
                    let v = ((q[i] >> shift) & 3) as i32 - if hm[i] & m != 0 { 0 } else { 4 };
                    y[out] = dl * v as f32;
                    out += 1;
                }
            }
            shift += 2;
            m = m.wrapping_shl(1);
        }
    }
}

/// `get_scale_min_k4`: the 6-bit scale and min of sub-block `j` of a Q4_K/Q5_K block.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

// block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }
fn deq_q4_k(b: &[u8; 144], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    for g in 0..4 {
        let q = &b[16 + 32 * g..16 + 32 * g + 32];
        let (sc, m) = scale_min_k4(2 * g, scales);
        let d1 = d * sc as f32;
        let m1 = min * m as f32;
        let (sc, m) = scale_min_k4(2 * g + 1, scales);
        let d2 = d * sc as f32;
        let m2 = min * m as f32;
        let y = &mut y[64 * g..64 * g + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0xF) as f32 - m1;
        }
        for l in 0..32 {
            y[32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

// block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }
fn deq_q5_k(b: &[u8; 176], y: &mut [f32; 256]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let mut u1: u8 = 1;
    let mut u2: u8 = 2;
    for g in 0..4 {
        let ql = &b[48 + 32 * g..48 + 32 * g + 32];
        let (sc, m) = scale_min_k4(2 * g, scales);
        let d1 = d * sc as f32;
        let m1 = min * m as f32;
        let (sc, m) = scale_min_k4(2 * g + 1, scales);
        let d2 = d * sc as f32;
        let m2 = min * m as f32;
        let y = &mut y[64 * g..64 * g + 64];
        for l in 0..32 {
            let h = if qh[l] & u1 != 0 { 16 } else { 0 };
            y[l] = d1 * ((ql[l] & 0xF) + h) as f32 - m1;
        }
        for l in 0..32 {
            let h = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[32 + l] = d2 * ((ql[l] >> 4) + h) as f32 - m2;
        }
        u1 = u1.wrapping_shl(2);
        u2 = u2.wrapping_shl(2);
    }
}

// block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }
fn deq_q6_k(b: &[u8; 210], y: &mut [f32; 256]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            y[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            y[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            y[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            y[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::cases;

    fn assert_bits_eq(dtype: GgmlType, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{dtype}: length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            let same = g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan());
            assert!(same, "{dtype}: element {i}: got {g:e}, gguf-py says {w:e}");
        }
    }

    #[test]
    fn quant_matches_gguf_py_dequantize() {
        let cases = cases();
        let mut seen = Vec::new();
        for c in &cases {
            let mut out = vec![123.0];
            dequantize(c.dtype, &c.bytes, c.n, &mut out).unwrap();
            assert_bits_eq(c.dtype, &out, &c.expected);
            seen.push(c.dtype);
        }
        // Every supported type has a reference case.
        for ty in GgmlType::ALL.into_iter().filter(|t| t.is_supported()) {
            assert!(seen.contains(&ty), "no reference data for {ty}");
        }
    }

    #[test]
    fn quant_threaded_matches_single_block_runs() {
        // Repeat each reference row until the input is split across threads, and check
        // every copy against the reference.
        for c in cases() {
            let reps = (4 * MIN_ELEMS_PER_THREAD).div_ceil(c.n) + 1;
            let bytes: Vec<u8> = c
                .bytes
                .iter()
                .copied()
                .cycle()
                .take(c.bytes.len() * reps)
                .collect();
            let out = dequantize_to_vec(c.dtype, &bytes, c.n * reps).unwrap();
            for (r, chunk) in out.chunks(c.n).enumerate() {
                assert_eq!(chunk.len(), c.n, "{}: rep {r}", c.dtype);
                assert_bits_eq(c.dtype, chunk, &c.expected);
            }
        }
    }

    #[test]
    fn quant_errors_not_panics() {
        let mut out = Vec::new();
        for ty in GgmlType::ALL.into_iter().filter(|t| !t.is_supported()) {
            let bytes = vec![0u8; ty.type_size()];
            assert_eq!(
                dequantize(ty, &bytes, ty.block_size(), &mut out),
                Err(DequantError::Unsupported(ty))
            );
        }
        assert!(matches!(
            dequantize(GgmlType::Q4_0, &[0; 18], 31, &mut out),
            Err(DequantError::NotBlockMultiple { .. })
        ));
        assert!(matches!(
            dequantize(GgmlType::Q4_0, &[0; 17], 32, &mut out),
            Err(DequantError::WrongLength {
                expected: 18,
                actual: 17,
                ..
            })
        ));
        assert!(matches!(
            dequantize(GgmlType::F32, &[0; 7], 2, &mut out),
            Err(DequantError::WrongLength { .. })
        ));
        dequantize(GgmlType::Q6_K, &[], 0, &mut out).unwrap();
        assert!(out.is_empty());
        assert_eq!(GgmlType::Q4_K.row_bytes(512), Some(288));
        assert_eq!(GgmlType::Q4_K.row_bytes(100), None);
        assert_eq!(GgmlType::F32.row_bytes(usize::MAX), None);
    }

    #[test]
    fn quant_hand_checked_blocks() {
        // Q8_0 with d = 0.5: values are q / 2.
        let mut b = vec![0x00, 0x38];
        b.extend((0..32).map(|i: i32| (i - 16) as i8 as u8));
        let out = dequantize_to_vec(GgmlType::Q8_0, &b, 32).unwrap();
        let want: Vec<f32> = (0..32).map(|i| (i - 16) as f32 * 0.5).collect();
        assert_eq!(out, want);
        // Q4_0 with d = 1: low nibbles give the first 16 values, high nibbles the rest.
        let mut b = vec![0x00, 0x3c];
        b.extend((0..16u8).map(|i| i | ((15 - i) << 4)));
        let out = dequantize_to_vec(GgmlType::Q4_0, &b, 32).unwrap();
        let want: Vec<f32> = (0..16)
            .map(|i| (i - 8) as f32)
            .chain((0..16).map(|i| (7 - i) as f32))
            .collect();
        assert_eq!(out, want);
        // BF16 and F16 of 1.5.
        assert_eq!(
            dequantize_to_vec(GgmlType::BF16, &[0xc0, 0x3f], 1).unwrap(),
            [1.5]
        );
        assert_eq!(
            dequantize_to_vec(GgmlType::F16, &[0x00, 0x3e], 1).unwrap(),
            [1.5]
        );
    }
}

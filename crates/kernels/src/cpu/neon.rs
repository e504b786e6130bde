//! NEON kernels for aarch64 (Apple silicon, Graviton, Ampere, Raspberry Pi 4/5): one
//! quantized weight row times one 8-bit activation row (the decode path of every product),
//! unquantized rows in float, the activations' 8-bit quantization, and attention over the
//! f16 KV cache. Prompts take the f32 GEMM path (the `gemm` crate's NEON kernels).
//!
//! The same arithmetic as [`super::scalar`], whose element orders and offsets these follow:
//! weights are turned into signed bytes (a Q4_0 nibble minus 8, a Q6_K value minus 32, …),
//! multiplied with the activation bytes sixteen at a time into four i32 lanes, and scaled
//! once per block or sub-block. Sixteen byte pairs are summed either by the Armv8.2
//! dot-product instruction (`sdot`, [`Dotprod`]: Apple M1 and later, Graviton 2 and later)
//! or, on CPUs without it, by widening multiplies and pairwise adds ([`Widening`]); both are
//! exact, so the two give the same bits.
//!
//! Callers pick the functions through [`super::Isa`], which only names an instruction set
//! the CPU has, and pass rows of whole blocks.

use core::arch::aarch64::*;
use core::arch::asm;

use super::activation::ActivationRow;
use super::scalar::f16_at;
use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::format::GgmlType;

/// How sixteen signed byte pairs are multiplied and added into four i32 lanes.
trait BytePairs {
    /// `acc[i] + Σ_{k<4} w[4i+k]·q[4i+k]` (or any grouping of the sixteen pairs into the
    /// four lanes: only the lanes' total is read).
    unsafe fn dot(acc: int32x4_t, w: int8x16_t, q: int8x16_t) -> int32x4_t;
}

/// Baseline NEON: eight products widened to i16 plus the other eight (at most
/// 2 · 128 · 127 = 32512, exact in i16), then added pairwise into the i32 lanes.
struct Widening;
impl BytePairs for Widening {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, w: int8x16_t, q: int8x16_t) -> int32x4_t {
        unsafe {
            let lo = vmull_s8(vget_low_s8(w), vget_low_s8(q));
            vpadalq_s16(acc, vmlal_high_s8(lo, w, q))
        }
    }
}

/// Armv8.2's `sdot` (the intrinsic is not stable in Rust yet; the instruction is one line
/// of assembly, used only inside functions compiled with the `dotprod` feature).
struct Dotprod;
impl BytePairs for Dotprod {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, w: int8x16_t, q: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: a register-only instruction; callers run where the CPU has `dotprod`.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {q:v}.16b",
                acc = inout(vreg) acc,
                w = in(vreg) w,
                q = in(vreg) q,
                options(pure, nomem, nostack, preserves_flags),
            );
        }
        acc
    }
}

#[inline(always)]
unsafe fn load_q(p: *const i8) -> int8x16_t {
    unsafe { vld1q_s8(p) }
}

#[inline(always)]
unsafe fn load(p: *const u8) -> uint8x16_t {
    unsafe { vld1q_u8(p) }
}

/// Low and high nibbles of sixteen bytes.
#[inline(always)]
unsafe fn nibbles(v: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
    unsafe { (vandq_u8(v, vdupq_n_u8(0xF)), vshrq_n_u8::<4>(v)) }
}

/// `(v >> shift) & mask`, a byte at a time.
#[inline(always)]
unsafe fn bits(v: uint8x16_t, shift: i8, mask: u8) -> uint8x16_t {
    unsafe { vandq_u8(vshlq_u8(v, vdupq_n_s8(-shift)), vdupq_n_u8(mask)) }
}

/// `value` where byte `i` of `mask_source` has any bit of `bit` set, else zero.
#[inline(always)]
unsafe fn where_set(mask_source: uint8x16_t, bit: u8, value: u8) -> uint8x16_t {
    unsafe { vandq_u8(vtstq_u8(mask_source, vdupq_n_u8(bit)), vdupq_n_u8(value)) }
}

/// Bit `i` of `qh` as `0x10` in byte `i`, for elements 0..16 and 16..32 of a Q5 block.
#[inline(always)]
unsafe fn fifth_bits(qh: u32) -> (uint8x16_t, uint8x16_t) {
    const LOW: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const HIGH: [u8; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];
    const BIT: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    unsafe {
        let bytes = vreinterpretq_u8_u32(vdupq_n_u32(qh));
        let bit = vld1q_u8(BIT.as_ptr());
        let spread = |idx: &[u8; 16]| {
            let b = vqtbl1q_u8(bytes, vld1q_u8(idx.as_ptr()));
            vandq_u8(vtstq_u8(b, bit), vdupq_n_u8(0x10))
        };
        (spread(&LOW), spread(&HIGH))
    }
}

#[inline(always)]
unsafe fn signed(v: uint8x16_t) -> int8x16_t {
    unsafe { vreinterpretq_s8_u8(v) }
}

/// `v - k` as signed bytes (`v` ≤ 63, so no wrap-around).
#[inline(always)]
unsafe fn minus(v: uint8x16_t, k: i8) -> int8x16_t {
    unsafe { vsubq_s8(vreinterpretq_s8_u8(v), vdupq_n_s8(k)) }
}

/// The 32-element block types: their signed values `(elements 0..16, 16..32)`, the block's
/// scale, and its minimum (`None` where the offset is folded into the signed values).
trait Block32 {
    const BYTES: usize;
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t);
    unsafe fn min(b: *const u8) -> Option<f32>;
}

struct Q4_0;
impl Block32 for Q4_0 {
    const BYTES: usize = 18;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t) {
        unsafe {
            let (lo, hi) = nibbles(load(b.add(2)));
            (minus(lo, 8), minus(hi, 8))
        }
    }
    #[inline(always)]
    unsafe fn min(_: *const u8) -> Option<f32> {
        None
    }
}

struct Q4_1;
impl Block32 for Q4_1 {
    const BYTES: usize = 20;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t) {
        unsafe {
            let (lo, hi) = nibbles(load(b.add(4)));
            (signed(lo), signed(hi))
        }
    }
    #[inline(always)]
    unsafe fn min(b: *const u8) -> Option<f32> {
        Some(unsafe { f16_at_ptr(b.add(2)) })
    }
}

struct Q5_0;
impl Block32 for Q5_0 {
    const BYTES: usize = 22;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t) {
        unsafe {
            let (lo, hi) = nibbles(load(b.add(6)));
            let (h0, h1) = fifth_bits(u32::from_le_bytes(*(b.add(2) as *const [u8; 4])));
            (minus(vorrq_u8(lo, h0), 16), minus(vorrq_u8(hi, h1), 16))
        }
    }
    #[inline(always)]
    unsafe fn min(_: *const u8) -> Option<f32> {
        None
    }
}

struct Q5_1;
impl Block32 for Q5_1 {
    const BYTES: usize = 24;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t) {
        unsafe {
            let (lo, hi) = nibbles(load(b.add(8)));
            let (h0, h1) = fifth_bits(u32::from_le_bytes(*(b.add(4) as *const [u8; 4])));
            (signed(vorrq_u8(lo, h0)), signed(vorrq_u8(hi, h1)))
        }
    }
    #[inline(always)]
    unsafe fn min(b: *const u8) -> Option<f32> {
        Some(unsafe { f16_at_ptr(b.add(2)) })
    }
}

struct Q8_0;
impl Block32 for Q8_0 {
    const BYTES: usize = 34;
    #[inline(always)]
    unsafe fn values(b: *const u8) -> (int8x16_t, int8x16_t) {
        unsafe {
            let p = b.add(2) as *const i8;
            (load_q(p), load_q(p.add(16)))
        }
    }
    #[inline(always)]
    unsafe fn min(_: *const u8) -> Option<f32> {
        None
    }
}

#[inline(always)]
unsafe fn f16_at_ptr(p: *const u8) -> f32 {
    f16_at(unsafe { &*(p as *const [u8; 2]) }, 0)
}

/// A row of 32-element blocks: `Σ d_a · (d_w · Σ w·q + m_w · Σq)`, the integer sums of two
/// blocks at a time in independent registers.
#[inline(always)]
unsafe fn blocks32<P: BytePairs, T: Block32>(w: &[u8], a: ActivationRow<'_>) -> f32 {
    let nb = a.d.len();
    debug_assert!(w.len() >= nb * T::BYTES && a.qs.len() >= 32 * nb && a.factors.len() >= nb);
    unsafe {
        let (wp, qp) = (w.as_ptr(), a.qs.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 2];
        let mut offsets = 0.0f32;
        for i in 0..nb {
            let b = wp.add(i * T::BYTES);
            let q = qp.add(32 * i);
            let (w0, w1) = T::values(b);
            let d = P::dot(P::dot(vdupq_n_s32(0), w0, load_q(q)), w1, load_q(q.add(16)));
            let [da, das] = *a.factors.get_unchecked(i);
            let acc = &mut acc[i % 2];
            *acc = vfmaq_n_f32(*acc, vcvtq_f32_s32(d), f16_at_ptr(b) * da);
            if let Some(m) = T::min(b) {
                offsets += m * das;
            }
        }
        vaddvq_f32(vaddq_f32(acc[0], acc[1])) + offsets
    }
}

/// Sixteen activation bytes `16k..16k + 16` of a super-block.
#[inline(always)]
unsafe fn q16(q: *const i8, k: usize) -> int8x16_t {
    unsafe { load_q(q.add(16 * k)) }
}

/// A row of 256-element super-blocks: `block(bytes, q, sums16)` is already in weight units.
#[inline(always)]
unsafe fn super_blocks<const TS: usize>(
    w: &[u8],
    a: ActivationRow<'_>,
    block: impl Fn(*const u8, *const i8, &[i32]) -> f32,
) -> f32 {
    let nb = a.d.len();
    debug_assert!(w.len() >= nb * TS && a.qs.len() >= 256 * nb && a.sums.len() >= 16 * nb);
    let mut sum = 0.0f32;
    for i in 0..nb {
        // SAFETY: block `i` of each side is inside the row (checked above in debug builds;
        // the callers pass rows of whole blocks).
        let v = unsafe {
            block(
                w.as_ptr().add(i * TS),
                a.qs.as_ptr().add(256 * i),
                a.sums.get_unchecked(16 * i..16 * i + 16),
            )
        };
        sum += a.d[i] * v;
    }
    sum
}

// block_q2_K { uint8_t scales[16]; uint8_t qs[64]; ggml_half d; ggml_half dmin; }
#[inline(always)]
unsafe fn q2_k<P: BytePairs>(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let sc = &*(b as *const [u8; 16]);
        let mut isum = vdupq_n_s32(0);
        for n in 0..2 {
            let qs = [load(b.add(16 + 32 * n)), load(b.add(32 + 32 * n))];
            for j in 0..4 {
                for (half, &v) in qs.iter().enumerate() {
                    let k = 8 * n + 2 * j + half;
                    let u = signed(bits(v, 2 * j as i8, 3));
                    let d = P::dot(vdupq_n_s32(0), u, q16(q, k));
                    isum = vmlaq_n_s32(isum, d, (sc[k] & 0xF) as i32);
                }
            }
        }
        let msum: i32 = (0..16).map(|k| (sc[k] >> 4) as i32 * sums[k]).sum();
        f16_at_ptr(b.add(80)) * vaddvq_s32(isum) as f32 - f16_at_ptr(b.add(82)) * msum as f32
    }
}

// block_q3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; ggml_half d; }
#[inline(always)]
unsafe fn q3_k<P: BytePairs>(b: *const u8, q: *const i8) -> f32 {
    unsafe {
        let scales = q3_k_scales(&*(b.add(96) as *const [u8; 12]));
        let hm = [load(b), load(b.add(16))];
        let mut isum = vdupq_n_s32(0);
        for n in 0..2 {
            let qs = [load(b.add(32 + 32 * n)), load(b.add(48 + 32 * n))];
            for j in 0..4 {
                for half in 0..2 {
                    let k = 8 * n + 2 * j + half;
                    let u = vorrq_u8(
                        bits(qs[half], 2 * j as i8, 3),
                        where_set(hm[half], 1 << (4 * n + j), 4),
                    );
                    let d = P::dot(vdupq_n_s32(0), minus(u, 4), q16(q, k));
                    isum = vmlaq_n_s32(isum, d, scales[k] as i32 - 32);
                }
            }
        }
        f16_at_ptr(b.add(108)) * vaddvq_s32(isum) as f32
    }
}

/// Q4_K and Q5_K (`FIVE`): eight sub-blocks of 32 with 6-bit scales and minimums.
// block_q4_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qs[128]; }
// block_q5_K { ggml_half d; ggml_half dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; }
#[inline(always)]
unsafe fn q45_k<P: BytePairs, const FIVE: bool>(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let raw = &*(b.add(4) as *const [u8; 12]);
        let qs_at = if FIVE { 48 } else { 16 };
        let qh = [load(b.add(16)), load(b.add(32))];
        let mut isum = vdupq_n_s32(0);
        let mut msum = 0i32;
        for g in 0..4 {
            let qs = [
                load(b.add(qs_at + 32 * g)),
                load(b.add(qs_at + 16 + 32 * g)),
            ];
            for (shift, j) in [(0, 2 * g), (4, 2 * g + 1)] {
                let (sc, m) = scale_min_k4(j, raw);
                let mut d = vdupq_n_s32(0);
                for half in 0..2 {
                    let mut u = bits(qs[half], shift, 0xF);
                    if FIVE {
                        u = vorrq_u8(u, where_set(qh[half], 1 << j, 0x10));
                    }
                    d = P::dot(d, signed(u), q16(q, 2 * j + half));
                }
                isum = vmlaq_n_s32(isum, d, sc as i32);
                msum += m as i32 * (sums[2 * j] + sums[2 * j + 1]);
            }
        }
        f16_at_ptr(b) * vaddvq_s32(isum) as f32 - f16_at_ptr(b.add(2)) * msum as f32
    }
}

// block_q6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; ggml_half d; }
#[inline(always)]
unsafe fn q6_k<P: BytePairs>(b: *const u8, q: *const i8) -> f32 {
    unsafe {
        let scales = &*(b.add(192) as *const [i8; 16]);
        let mut isum = vdupq_n_s32(0);
        for n in 0..2 {
            let ql: [uint8x16_t; 4] = std::array::from_fn(|i| load(b.add(64 * n + 16 * i)));
            let qh = [load(b.add(128 + 32 * n)), load(b.add(144 + 32 * n))];
            for p in 0..4 {
                for part in 0..2 {
                    // group k: 16 elements at 16k, in half n, quarter p of that half
                    let k = 8 * n + 2 * p + part;
                    let low = bits(ql[2 * (p % 2) + part], 4 * (p / 2) as i8, 0xF);
                    let high = vshlq_n_u8::<4>(bits(qh[part], 2 * p as i8, 3));
                    let d = P::dot(vdupq_n_s32(0), minus(vorrq_u8(low, high), 32), q16(q, k));
                    isum = vmlaq_n_s32(isum, d, scales[k] as i32);
                }
            }
        }
        f16_at_ptr(b.add(208)) * vaddvq_s32(isum) as f32
    }
}

#[inline(always)]
unsafe fn dot_impl<P: BytePairs>(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        match ty {
            GgmlType::Q4_0 => blocks32::<P, Q4_0>(w, a),
            GgmlType::Q4_1 => blocks32::<P, Q4_1>(w, a),
            GgmlType::Q5_0 => blocks32::<P, Q5_0>(w, a),
            GgmlType::Q5_1 => blocks32::<P, Q5_1>(w, a),
            GgmlType::Q8_0 => blocks32::<P, Q8_0>(w, a),
            GgmlType::Q2_K => super_blocks::<84>(w, a, |b, q, s| q2_k::<P>(b, q, s)),
            GgmlType::Q3_K => super_blocks::<110>(w, a, |b, q, _| q3_k::<P>(b, q)),
            GgmlType::Q4_K => super_blocks::<144>(w, a, |b, q, s| q45_k::<P, false>(b, q, s)),
            GgmlType::Q5_K => super_blocks::<176>(w, a, |b, q, s| q45_k::<P, true>(b, q, s)),
            GgmlType::Q6_K => super_blocks::<210>(w, a, |b, q, _| q6_k::<P>(b, q)),
            other => panic!("{other} has no quantized dot product"),
        }
    }
}

/// One quantized weight row times one activation row, with baseline NEON.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_neon(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe { dot_impl::<Widening>(ty, w, a) }
}

/// One quantized weight row times one activation row, with `sdot`.
#[target_feature(enable = "neon,dotprod")]
pub(super) unsafe fn dot_dotprod(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe { dot_impl::<Dotprod>(ty, w, a) }
}

/// Four weights of an unquantized row from element `i`, widened to f32.
#[inline(always)]
unsafe fn floats4(ty: GgmlType, wp: *const u8, i: usize) -> float32x4_t {
    unsafe {
        match ty {
            GgmlType::F32 => vld1q_f32(wp.add(4 * i) as *const f32),
            GgmlType::F16 => {
                vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(wp.add(2 * i) as *const u16)))
            }
            // bf16 is the top half of an f32
            _ => vreinterpretq_f32_u32(vshll_n_u16::<16>(vld1_u16(wp.add(2 * i) as *const u16))),
        }
    }
}

/// One unquantized weight row (f32, f16 or bf16 little-endian) times an f32 row.
#[target_feature(enable = "neon")]
pub(super) unsafe fn dot_float_neon(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    let n = x.len();
    debug_assert!(w.len() >= n * ty.type_size());
    let main = n / 16 * 16;
    unsafe {
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [vdupq_n_f32(0.0); 4];
        for i in (0..main).step_by(16) {
            for (k, acc) in acc.iter_mut().enumerate() {
                let j = i + 4 * k;
                *acc = vfmaq_f32(*acc, floats4(ty, wp, j), vld1q_f32(xp.add(j)));
            }
        }
        let sum = vaddvq_f32(vaddq_f32(
            vaddq_f32(acc[0], acc[1]),
            vaddq_f32(acc[2], acc[3]),
        ));
        let size = ty.type_size();
        sum + super::scalar::dot_float(ty, &w[main * size..n * size], &x[main..])
    }
}

/// Quantizes `x` in blocks of `block` values to `[-127, 127]` as
/// [`super::activation`]'s portable code does (scale `amax / 127`, round to nearest, ties
/// to even; a block holding a NaN or an infinity gets a NaN scale and zeros), with the sums
/// of each `group` (32 or 16) values.
#[target_feature(enable = "neon")]
pub(super) unsafe fn quantize_blocks_neon(
    x: &[f32],
    block: usize,
    group: usize,
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
) {
    unsafe {
        for (b, src) in x.chunks_exact(block).enumerate() {
            let sp = src.as_ptr();
            let mut amax = vdupq_n_f32(0.0);
            let mut nan = vdupq_n_u32(0);
            for i in (0..block).step_by(4) {
                let v = vld1q_f32(sp.add(i));
                amax = vmaxq_f32(amax, vabsq_f32(v));
                nan = vorrq_u32(nan, vmvnq_u32(vceqq_f32(v, v)));
            }
            let m = vmaxvq_f32(amax);
            let has_nan = vmaxvq_u32(nan) != 0;
            let qb = &mut qs[b * block..(b + 1) * block];
            let groups = &mut sums[b * block / group..(b + 1) * block / group];
            if m == 0.0 || !m.is_finite() || has_nan {
                qb.fill(0);
                groups.fill(0);
                d[b] = if m == 0.0 && !has_nan { 0.0 } else { f32::NAN };
                continue;
            }
            d[b] = m / 127.0;
            let id = vdupq_n_f32(1.0 / (m / 127.0));
            groups.fill(0);
            for (c, out) in qb.chunks_exact_mut(16).enumerate() {
                let q: [int32x4_t; 4] = core::array::from_fn(|k| {
                    vcvtnq_s32_f32(vmulq_f32(vld1q_f32(sp.add(16 * c + 4 * k)), id))
                });
                let h0 = vqmovn_high_s32(vqmovn_s32(q[0]), q[1]);
                let h1 = vqmovn_high_s32(vqmovn_s32(q[2]), q[3]);
                vst1q_s8(out.as_mut_ptr(), vqmovn_high_s16(vqmovn_s16(h0), h1));
                let s = vaddvq_s32(vaddq_s32(vaddq_s32(q[0], q[1]), vaddq_s32(q[2], q[3])));
                groups[16 * c / group] += s;
            }
        }
    }
}

/// Eight f16 values from `p`, widened to f32.
#[inline(always)]
unsafe fn halves8(p: *const u16) -> (float32x4_t, float32x4_t) {
    unsafe {
        let h = vld1q_u16(p);
        (
            vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h))),
            vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h))),
        )
    }
}

/// One query of one head over `len` cached positions: softmax(q·Kᵀ · scale) · V, the keys
/// and values widened from f16 as they are read (the portable
/// `attention::head_impl` in NEON, two keys a step). `d` is a multiple of 8.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "neon")]
pub(super) unsafe fn attend_head_neon(
    query: &[f32],
    keys: &[half::f16],
    values: &[half::f16],
    len: usize,
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    debug_assert!(d.is_multiple_of(8) && query.len() >= d && out.len() >= d);
    debug_assert!(keys.len() >= len * d && values.len() >= len * d);
    scores.clear();
    scores.resize(len, 0.0);
    unsafe {
        let (qp, kp, vp) = (
            query.as_ptr(),
            keys.as_ptr() as *const u16,
            values.as_ptr() as *const u16,
        );
        let score = |key: *const u16| {
            let mut acc = [vdupq_n_f32(0.0); 2];
            for c in (0..d).step_by(8) {
                let (k0, k1) = halves8(key.add(c));
                acc[0] = vfmaq_f32(acc[0], vld1q_f32(qp.add(c)), k0);
                acc[1] = vfmaq_f32(acc[1], vld1q_f32(qp.add(c + 4)), k1);
            }
            vaddvq_f32(vaddq_f32(acc[0], acc[1])) * scale
        };
        for (j, s) in scores.iter_mut().enumerate() {
            *s = score(kp.add(j * d));
        }
        let max = scores.iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s));
        let mut sum = 0.0f32;
        for s in scores.iter_mut() {
            *s = super::attention::exp(*s - max);
            sum += *s;
        }
        let inv = 1.0 / sum;
        out[..d].fill(0.0);
        let op = out.as_mut_ptr();
        for (j, &p) in scores.iter().enumerate() {
            let (p, v) = (p * inv, vp.add(j * d));
            for c in (0..d).step_by(8) {
                let (v0, v1) = halves8(v.add(c));
                vst1q_f32(op.add(c), vfmaq_n_f32(vld1q_f32(op.add(c)), v0, p));
                vst1q_f32(op.add(c + 4), vfmaq_n_f32(vld1q_f32(op.add(c + 4)), v1, p));
            }
        }
    }
}

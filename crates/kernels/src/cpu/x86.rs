//! x86-64 dot products: AVX2 + FMA + F16C, and the same kernels with AVX-512 VNNI's
//! `vpdpbusd` for the unsigned-by-signed byte products where the CPU has it (256-bit in the
//! dot products, 512-bit in the batched kernel). The arithmetic is that of [`super::scalar`]: the same integers, summed in another
//! order, so results agree to float rounding.
//!
//! Every function here is `unsafe`: the caller checks the CPU features first
//! ([`super::Isa::detect`]) and passes rows of whole blocks.

use core::arch::x86_64::*;

use super::activation::ActivationRow;
use crate::format::GgmlType;

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    unsafe {
        let bits = core::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
    }
}

/// The sums of four vectors' lanes, as one vector: three horizontal adds in place of four
/// [`hsum_ps`].
#[inline(always)]
unsafe fn hsum4_ps(v: [__m256; 4]) -> __m128 {
    unsafe {
        let s = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
        _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1))
    }
}

#[inline(always)]
unsafe fn hsum_ps(v: __m256) -> f32 {
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

#[inline(always)]
unsafe fn load(p: *const u8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

#[inline(always)]
unsafe fn load_q(p: *const i8) -> __m256i {
    unsafe { _mm256_loadu_si256(p as *const __m256i) }
}

/// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0..16), then the high ones
/// (the bytes loaded into both 128-bit lanes, the high lane shifted right by four).
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    unsafe {
        let t = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
        let hi = _mm256_srlv_epi32(t, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
        _mm256_and_si256(hi, _mm256_set1_epi8(0x0F))
    }
}

/// Byte `i` is `0x10` where bit `i` of `bits` is set (the fifth bit of Q5 elements).
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> __m256i {
    unsafe {
        let shuf = _mm256_setr_epi64x(
            0x0000_0000_0000_0000,
            0x0101_0101_0101_0101,
            0x0202_0202_0202_0202,
            0x0303_0303_0303_0303,
        );
        let bytes = _mm256_shuffle_epi8(_mm256_set1_epi32(bits as i32), shuf);
        let mask = _mm256_set1_epi64x(0x7fbf_dfef_f7fb_fdfe_u64 as i64);
        let set = _mm256_cmpeq_epi8(_mm256_or_si256(bytes, mask), _mm256_set1_epi64x(-1));
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// How the unsigned × signed byte products of 32-element blocks are summed to 8 × i32.
pub(super) trait BytePairs {
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i;
    /// `acc` plus each lane's four products.
    unsafe fn dot_acc(acc: __m256i, u: __m256i, q: __m256i) -> __m256i;
    /// `acc` plus the `maddubs` pair sums of `u · q` times 16-bit `scales`, summed in pairs
    /// (where VNNI is enabled the compiler fuses the `madd` and the add into `vpdpwssd`).
    #[inline(always)]
    unsafe fn scaled_acc(acc: __m256i, u: __m256i, q: *const i8, scales: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, scaled(u, q, scales)) }
    }
}

/// AVX2: `vpmaddubsw` then `vpmaddwd` with ones.
pub(super) struct Avx2;
impl BytePairs for Avx2 {
    #[inline(always)]
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1)) }
    }
    #[inline(always)]
    unsafe fn dot_acc(acc: __m256i, u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_add_epi32(acc, Self::dot(u, q)) }
    }
}

/// AVX-512 VNNI: one `vpdpbusd`.
pub(super) struct Vnni;
impl BytePairs for Vnni {
    #[inline(always)]
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, q) }
    }
    #[inline(always)]
    unsafe fn dot_acc(acc: __m256i, u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(acc, u, q) }
    }
}

/// A 32-element block type: where its f16 scale (and minimum) sit, and the integer dot
/// product of one block with 32 activation bytes. A trait of functions, not closures: a
/// closure does not get its caller's target features, and the intrinsics in one that is
/// not inlined become calls (a Q5_0 row took ten times as long that way).
trait Block32 {
    /// Bytes per block.
    const SIZE: usize;
    /// The block has an f16 minimum right after its f16 scale (Q4_1, Q5_1).
    const HAS_MIN: bool;
    /// The constant offset of the unsigned values in scale units (−8 for Q4_0, −16 for
    /// Q5_0, 0 otherwise).
    const OFFSET: f32;
    /// The eight lane sums of the block's (unsigned) values times the activation bytes `q`.
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i;
}

#[allow(non_camel_case_types)]
struct Q4_0;
impl Block32 for Q4_0 {
    const SIZE: usize = 18;
    const HAS_MIN: bool = false;
    const OFFSET: f32 = -8.0;
    #[inline(always)]
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i {
        unsafe { P::dot(nibbles32(blk.add(2)), q) }
    }
}

#[allow(non_camel_case_types)]
struct Q4_1;
impl Block32 for Q4_1 {
    const SIZE: usize = 20;
    const HAS_MIN: bool = true;
    const OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i {
        unsafe { P::dot(nibbles32(blk.add(4)), q) }
    }
}

#[allow(non_camel_case_types)]
struct Q5_0;
impl Block32 for Q5_0 {
    const SIZE: usize = 22;
    const HAS_MIN: bool = false;
    const OFFSET: f32 = -16.0;
    #[inline(always)]
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i {
        unsafe {
            let qh = core::ptr::read_unaligned(blk.add(2) as *const u32);
            P::dot(_mm256_or_si256(nibbles32(blk.add(6)), fifth_bits(qh)), q)
        }
    }
}

#[allow(non_camel_case_types)]
struct Q5_1;
impl Block32 for Q5_1 {
    const SIZE: usize = 24;
    const HAS_MIN: bool = true;
    const OFFSET: f32 = 0.0;
    #[inline(always)]
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i {
        unsafe {
            let qh = core::ptr::read_unaligned(blk.add(4) as *const u32);
            P::dot(_mm256_or_si256(nibbles32(blk.add(8)), fifth_bits(qh)), q)
        }
    }
}

#[allow(non_camel_case_types)]
struct Q8_0;
impl Block32 for Q8_0 {
    const SIZE: usize = 34;
    const HAS_MIN: bool = false;
    const OFFSET: f32 = 0.0;
    /// Signed weights: `|w| · (q · sign w)`.
    #[inline(always)]
    unsafe fn dot<P: BytePairs>(blk: *const u8, q: __m256i) -> __m256i {
        unsafe {
            let x = load(blk.add(2));
            P::dot(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x))
        }
    }
}

/// Σ over 32-element blocks of `scale · Σu·q + offset · Σq` (times each block's activation
/// scale). Per block: the eight lane sums converted to f32 and fused-multiply-added, times
/// `d · da` in every lane, into a vector accumulator (no horizontal sum per block, as
/// llama.cpp's `ggml_vec_dot_q4_1_q8_1` does it); the block's two f16 numbers (scale and
/// minimum, or the scale twice) converted by one `vcvtph2ps` and multiplied by the
/// activation's `(da, da · Σq)` pair in one `vmulps`, whose second lane is the minimum
/// (or offset) term, summed in a vector too. Two blocks an iteration, two sets of chains.
#[inline(always)]
unsafe fn blocks32<P: BytePairs, T: Block32>(w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        let n = a.d.len();
        debug_assert!(w.len() >= n * T::SIZE && a.qs.len() >= 32 * n && a.factors.len() >= n);
        let (wp, qp, fp) = (w.as_ptr(), a.qs.as_ptr(), a.factors.as_ptr());
        let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let (mut min0, mut min1) = (_mm_setzero_ps(), _mm_setzero_ps());
        let mut b = 0;
        while b + 2 <= n {
            (acc0, min0) = block32_term::<P, T>(wp, qp, fp, b, acc0, min0);
            (acc1, min1) = block32_term::<P, T>(wp, qp, fp, b + 1, acc1, min1);
            b += 2;
        }
        if b < n {
            (acc0, min0) = block32_term::<P, T>(wp, qp, fp, b, acc0, min0);
        }
        let sum = hsum_ps(_mm256_add_ps(acc0, acc1));
        if !T::HAS_MIN && T::OFFSET == 0.0 {
            return sum;
        }
        // lane 1: Σ m · da · Σq (or Σ d · da · Σq, times the offset: a power of two, exact)
        let mins = _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(min0, min1)));
        sum + if T::HAS_MIN { mins } else { T::OFFSET * mins }
    }
}

/// Block `b` added to the accumulators: its lane sums times `d · da` into `acc`, its
/// minimum (or scale) times `da · Σq` into lane 1 of `mins`.
#[inline(always)]
unsafe fn block32_term<P: BytePairs, T: Block32>(
    wp: *const u8,
    qp: *const i8,
    fp: *const [f32; 2],
    b: usize,
    acc: __m256,
    mins: __m128,
) -> (__m256, __m128) {
    unsafe {
        let blk = wp.add(b * T::SIZE);
        let p = _mm256_cvtepi32_ps(T::dot::<P>(blk, load_q(qp.add(32 * b))));
        // [d, m] (or [d, d]) as f16 in the low 32 bits
        let halves = if T::HAS_MIN {
            _mm_cvtsi32_si128(core::ptr::read_unaligned(blk as *const i32))
        } else {
            _mm_set1_epi16(core::ptr::read_unaligned(blk as *const i16))
        };
        let factors = _mm_castsi128_ps(_mm_loadl_epi64(fp.add(b) as *const __m128i));
        let s = _mm_mul_ps(_mm_cvtph_ps(halves), factors);
        (
            _mm256_fmadd_ps(p, _mm256_broadcastss_ps(s), acc),
            _mm_add_ps(mins, s),
        )
    }
}

/// `maddubs(u, q)` pairs times two 16-element scales, summed to 8 × i32.
#[inline(always)]
unsafe fn scaled(u: __m256i, q: *const i8, scales: __m256i) -> __m256i {
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, load_q(q)), scales) }
}

/// `v`, through an empty `asm!`: the compiler cannot see through it, so it cannot fold the
/// accumulators of a sum back into one dependency chain (it fuses `madd` + `add` into
/// `vpdpwssd` where VNNI is enabled and chains them all on one register).
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn opaque(mut v: __m256i) -> __m256i {
    unsafe {
        core::arch::asm!("/* {0} */", inout(ymm_reg) v, options(pure, nomem, nostack, preserves_flags));
    }
    v
}

#[inline(always)]
unsafe fn hsum_epi32(v: __m256i) -> i32 {
    unsafe {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        let s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01));
        _mm_cvtsi128_si32(s)
    }
}

#[inline(always)]
unsafe fn srl16(v: __m256i, n: u32) -> __m256i {
    unsafe { _mm256_srl_epi16(v, _mm_cvtsi32_si128(n as i32)) }
}

/// The eight 6-bit scales and eight 6-bit minimums of a Q4_K/Q5_K block from its 12 packed
/// bytes, one byte each (scale `j` in byte `j`), with four 32-bit word operations (what
/// `get_scale_min_k4` gives one at a time).
#[inline(always)]
unsafe fn k4_scales(raw: *const u8) -> (u64, u64) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const TOP2: u32 = 0x0303_0303;
    unsafe {
        let w = |i: usize| core::ptr::read_unaligned(raw.add(4 * i) as *const u32);
        let (a, b, c) = (w(0), w(1), w(2));
        let sc_lo = a & LOW6;
        let sc_hi = (c & LOW4) | (((a >> 6) & TOP2) << 4);
        let m_lo = b & LOW6;
        let m_hi = ((c >> 4) & LOW4) | (((b >> 6) & TOP2) << 4);
        let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
        (join(sc_lo, sc_hi), join(m_lo, m_hi))
    }
}

/// The sixteen per-16 activation sums of a super-block as i16, in the order
/// `[s0..4, s8..12 | s4..8, s12..16]` (`packs` works within 128-bit lanes); exact, since a
/// sum of sixteen values in `[-127, 127]` fits in an i16.
#[inline(always)]
unsafe fn sums16(sums: *const i32) -> __m256i {
    unsafe {
        let s0 = _mm256_loadu_si256(sums as *const __m256i);
        let s1 = _mm256_loadu_si256(sums.add(8) as *const __m256i);
        _mm256_packs_epi32(s0, s1)
    }
}

/// The bits `mask` of each byte of `v >> shift`, moved up to bit 4: the high bits of a Q5_K
/// or Q6_K value, to be or-ed onto its low nibble. A function, not a closure: a closure does
/// not get its caller's target features (see `rows4_interleaved`).
#[inline(always)]
unsafe fn high_bits(v: __m256i, shift: u32, mask: __m256i) -> __m256i {
    unsafe { _mm256_slli_epi16(_mm256_and_si256(srl16(v, shift), mask), 4) }
}

/// The values of 32-element sub-blocks `2g` and `2g + 1` of a Q4_K/Q5_K super-block as
/// bytes in element order: the low and high nibbles of `qs[32g..32g + 32]`, with Q5_K's
/// fifth bits (bits `2g`, `2g + 1` of each byte of `qh`; zero for Q4_K).
#[inline(always)]
unsafe fn q45_k_values<const FIVE: bool>(
    qs: *const u8,
    qh: __m256i,
    g: usize,
) -> (__m256i, __m256i) {
    unsafe {
        let (low, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(1));
        let bits = load(qs.add(32 * g));
        let mut u0 = _mm256_and_si256(bits, low);
        let mut u1 = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low);
        if FIVE {
            u0 = _mm256_or_si256(u0, high_bits(qh, 2 * g as u32, one));
            u1 = _mm256_or_si256(u1, high_bits(qh, 2 * g as u32 + 1, one));
        }
        (u0, u1)
    }
}

/// Half `n` (0 or 1) of a Q6_K super-block's values as four 32-byte quarters in element
/// order: quarter `p` holds 16-element sub-blocks `8n + 2p` (low 128-bit lane) and
/// `8n + 2p + 1` (high lane), values 0..64.
#[inline(always)]
unsafe fn q6_k_quarters(blk: *const u8, n: usize) -> [__m256i; 4] {
    unsafe {
        let (low, three) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
        let ql0 = load(blk.add(64 * n));
        let ql1 = load(blk.add(64 * n + 32));
        let qh = load(blk.add(128 + 32 * n));
        [
            _mm256_or_si256(_mm256_and_si256(ql0, low), high_bits(qh, 0, three)),
            _mm256_or_si256(_mm256_and_si256(ql1, low), high_bits(qh, 2, three)),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), low),
                high_bits(qh, 4, three),
            ),
            _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), low),
                high_bits(qh, 6, three),
            ),
        ]
    }
}

/// The total of four accumulators, each passed through [`opaque`] so the compiler keeps
/// their four dependency chains apart.
#[inline(always)]
unsafe fn sum4(acc: [__m256i; 4]) -> __m256i {
    unsafe {
        let (a, b, c, d) = (
            opaque(acc[0]),
            opaque(acc[1]),
            opaque(acc[2]),
            opaque(acc[3]),
        );
        _mm256_add_epi32(_mm256_add_epi32(a, b), _mm256_add_epi32(c, d))
    }
}

/// A super-block's f16 weight scale (at `p`) times its activation scale, in every lane.
#[inline(always)]
unsafe fn scale_times(p: *const u8, da: f32) -> __m256 {
    unsafe { _mm256_set1_ps(f16_at(p) * da) }
}

/// A Q4_K/Q5_K row (`FIVE`: a fifth bit per value from `qh`, the nibbles 32 bytes later).
/// Per super-block: eight 32-element sub-blocks, each `maddubs` pair sum multiplied by its
/// 6-bit scale (a shuffle of the broadcast scales), the minimums against the activation
/// sums in one `madd`; both sums stay in vectors across super-blocks, summed once at the end.
#[inline(always)]
unsafe fn q45_k_row<const FIVE: bool, P: BytePairs>(w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        let ts = if FIVE { 176 } else { 144 };
        let n = a.d.len();
        debug_assert!(w.len() >= n * ts && a.qs.len() >= 256 * n && a.sums.len() >= 16 * n);
        let (wp, qp, sp) = (w.as_ptr(), a.qs.as_ptr(), a.sums.as_ptr());
        // scale j of the eight (16-bit lanes) in every lane
        let pick = |j: i16| _mm256_set1_epi16((2 * j) | ((2 * j + 1) << 8));
        let picks = [
            pick(0),
            pick(1),
            pick(2),
            pick(3),
            pick(4),
            pick(5),
            pick(6),
            pick(7),
        ];
        // the minimums matched to `sums16`'s pairs: [m0 m0 m1 m1 m4 m4 m5 m5 | m2 m2 m3 m3 m6 m6 m7 m7]
        let min_pairs = _mm256_setr_epi8(
            0, 1, 0, 1, 2, 3, 2, 3, 8, 9, 8, 9, 10, 11, 10, 11, 4, 5, 4, 5, 6, 7, 6, 7, 12, 13, 12,
            13, 14, 15, 14, 15,
        );
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        for b in 0..n {
            let blk = wp.add(b * ts);
            let q = qp.add(256 * b);
            let da = *a.d.get_unchecked(b);
            let (sc, m) = k4_scales(blk.add(4));
            let scales =
                _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
            let mins = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(m as i64)));
            let qs = blk.add(if FIVE { 48 } else { 16 });
            let qh = if FIVE {
                load(blk.add(16))
            } else {
                _mm256_setzero_si256()
            };
            // four accumulators, kept apart (see `sum4`): short dependency chains
            let mut sum = [_mm256_setzero_si256(); 4];
            for g in 0..4 {
                let (u0, u1) = q45_k_values::<FIVE>(qs, qh, g);
                let s0 = _mm256_shuffle_epi8(scales, picks[2 * g]);
                let s1 = _mm256_shuffle_epi8(scales, picks[2 * g + 1]);
                let (a0, a1) = (2 * (g % 2), 2 * (g % 2) + 1);
                sum[a0] = P::scaled_acc(sum[a0], u0, q.add(64 * g), s0);
                sum[a1] = P::scaled_acc(sum[a1], u1, q.add(64 * g + 32), s1);
            }
            let sum = sum4(sum);
            let min_sum =
                _mm256_madd_epi16(sums16(sp.add(16 * b)), _mm256_shuffle_epi8(mins, min_pairs));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale_times(blk, da), acc);
            acc_min = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(min_sum),
                scale_times(blk.add(2), da),
                acc_min,
            );
        }
        hsum_ps(_mm256_sub_ps(acc, acc_min))
    }
}

/// Byte shuffles of a 256-bit vector holding the same eight 16-bit scales in both 128-bit
/// lanes: pick `p` puts scale `2p` in every 16-bit lane of the low half and scale `2p + 1`
/// in the high half (the scales of the two 16-element sub-blocks whose values one 32-byte
/// vector holds, in Q2_K, Q3_K and Q6_K).
#[inline(always)]
unsafe fn scale_pair_picks() -> [__m256i; 4] {
    // bytes 4p, 4p + 1 (scale 2p) and 4p + 2, 4p + 3 (scale 2p + 1), four times in 64 bits
    let rep = |first: i64| {
        let v = first | ((first + 1) << 8);
        v | (v << 16) | (v << 32) | (v << 48)
    };
    let mut out = [0i64; 8];
    for p in 0..4 {
        out[2 * p] = rep(4 * p as i64);
        out[2 * p + 1] = rep(4 * p as i64 + 2);
    }
    unsafe {
        [
            _mm256_setr_epi64x(out[0], out[0], out[1], out[1]),
            _mm256_setr_epi64x(out[2], out[2], out[3], out[3]),
            _mm256_setr_epi64x(out[4], out[4], out[5], out[5]),
            _mm256_setr_epi64x(out[6], out[6], out[7], out[7]),
        ]
    }
}

/// Sixteen signed byte scales as i16 in [`sums16`]'s order, to `madd` against the sums.
#[inline(always)]
unsafe fn sums_order_i8(raw: __m128i) -> __m256i {
    unsafe {
        let order = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
        _mm256_cvtepi8_epi16(_mm_shuffle_epi8(raw, order))
    }
}

/// The sixteen 16-bit scales of a super-block from 16 signed bytes: both halves, each in
/// both 128-bit lanes (for [`scale_pair_picks`]).
#[inline(always)]
unsafe fn scale_halves(raw: __m128i) -> [__m256i; 2] {
    unsafe {
        let sc = _mm256_cvtepi8_epi16(raw);
        [
            _mm256_permute2x128_si256(sc, sc, 0x00),
            _mm256_permute2x128_si256(sc, sc, 0x11),
        ]
    }
}

/// A Q3_K block's sixteen 6-bit scales minus 32, as signed bytes (the packing
/// `dequant::q3_k_scales` undoes, in four 32-bit words straight into a vector).
#[inline(always)]
unsafe fn q3_k_scales_vec(p: *const u8) -> __m128i {
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    unsafe {
        let word = |i: usize| core::ptr::read_unaligned(p.add(4 * i) as *const u32);
        let (a0, a1, hi) = (word(0), word(1), word(2));
        let s0 = (a0 & LOW4) | ((hi & LOW2) << 4);
        let s1 = (a1 & LOW4) | (((hi >> 2) & LOW2) << 4);
        let s2 = ((a0 >> 4) & LOW4) | (((hi >> 4) & LOW2) << 4);
        let s3 = ((a1 >> 4) & LOW4) | (((hi >> 6) & LOW2) << 4);
        let v = _mm_setr_epi32(s0 as i32, s1 as i32, s2 as i32, s3 as i32);
        _mm_sub_epi8(v, _mm_set1_epi8(32))
    }
}

/// A Q2_K row: sixteen 16-element sub-blocks of 2-bit values with 4-bit scales and 4-bit
/// minimums (the low and high nibbles of 16 bytes), scales shuffled out in pairs as in
/// Q6_K, the minimums against the activation sums in one `madd`; sums in vectors across
/// super-blocks.
#[inline(always)]
unsafe fn q2_k_row<P: BytePairs>(w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        const TS: usize = 84;
        let n = a.d.len();
        debug_assert!(w.len() >= n * TS && a.qs.len() >= 256 * n && a.sums.len() >= 16 * n);
        let (wp, qp, sp) = (w.as_ptr(), a.qs.as_ptr(), a.sums.as_ptr());
        let pairs = scale_pair_picks();
        let (three, low) = (_mm256_set1_epi8(3), _mm_set1_epi8(0x0F));
        let mut acc = _mm256_setzero_ps();
        let mut acc_min = _mm256_setzero_ps();
        for b in 0..n {
            let blk = wp.add(b * TS);
            let q = qp.add(256 * b);
            let raw = _mm_loadu_si128(blk as *const __m128i);
            let halves = scale_halves(_mm_and_si128(raw, low));
            let mins = _mm_and_si128(_mm_srli_epi16(raw, 4), low);
            let mut sum = [_mm256_setzero_si256(); 4];
            for (nn, half) in halves.into_iter().enumerate() {
                let bits = load(blk.add(16 + 32 * nn));
                for (j, pick) in pairs.iter().enumerate() {
                    let u = _mm256_and_si256(srl16(bits, 2 * j as u32), three);
                    let s = _mm256_shuffle_epi8(half, *pick);
                    sum[j] = P::scaled_acc(sum[j], u, q.add(16 * (8 * nn + 2 * j)), s);
                }
            }
            let sum = sum4(sum);
            let min_sum = _mm256_madd_epi16(sums16(sp.add(16 * b)), sums_order_i8(mins));
            let da = *a.d.get_unchecked(b);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), scale_times(blk.add(80), da), acc);
            acc_min = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(min_sum),
                scale_times(blk.add(82), da),
                acc_min,
            );
        }
        hsum_ps(_mm256_sub_ps(acc, acc_min))
    }
}

/// A super-block type of sixteen 16-element sub-blocks with signed 8-bit scales, whose
/// unsigned values carry a constant offset (Q3_K: value + 4, Q6_K: value + 32).
trait SignedScales16 {
    /// Bytes per super-block.
    const SIZE: usize;
    /// Where the f16 super-block scale sits.
    const D_AT: usize;
    /// The offset as a power of two (2 for Q3_K's 4, 5 for Q6_K's 32).
    const OFFSET_SHIFT: i32;
    /// The sixteen scales as signed bytes.
    unsafe fn scales(blk: *const u8) -> __m128i;
    /// Half `n` (0 or 1) of the values as four 32-byte quarters: quarter `p` holds
    /// sub-blocks `8n + 2p` (low 128-bit lane) and `8n + 2p + 1` (high lane).
    unsafe fn quarters(blk: *const u8, n: usize) -> [__m256i; 4];
}

struct Q3K;
impl SignedScales16 for Q3K {
    const SIZE: usize = 110;
    const D_AT: usize = 108;
    const OFFSET_SHIFT: i32 = 2;
    #[inline(always)]
    unsafe fn scales(blk: *const u8) -> __m128i {
        unsafe { q3_k_scales_vec(blk.add(96)) }
    }
    /// Two low bits from `qs`, the high bit from the 32-byte mask.
    #[inline(always)]
    unsafe fn quarters(blk: *const u8, n: usize) -> [__m256i; 4] {
        unsafe {
            let (three, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
            let (hm, bits) = (load(blk), load(blk.add(32 + 32 * n)));
            let mut out = [_mm256_setzero_si256(); 4];
            for (j, u) in out.iter_mut().enumerate() {
                let lo = _mm256_and_si256(srl16(bits, 2 * j as u32), three);
                let hbit = _mm256_and_si256(srl16(hm, (4 * n + j) as u32), one);
                *u = _mm256_or_si256(lo, _mm256_slli_epi16(hbit, 2));
            }
            out
        }
    }
}

struct Q6K;
impl SignedScales16 for Q6K {
    const SIZE: usize = 210;
    const D_AT: usize = 208;
    const OFFSET_SHIFT: i32 = 5;
    #[inline(always)]
    unsafe fn scales(blk: *const u8) -> __m128i {
        unsafe { _mm_loadu_si128(blk.add(192) as *const __m128i) }
    }
    #[inline(always)]
    unsafe fn quarters(blk: *const u8, n: usize) -> [__m256i; 4] {
        unsafe { q6_k_quarters(blk, n) }
    }
}

/// A Q3_K or Q6_K row: each sub-block's `maddubs` pair sums times its scale (shuffled out
/// of the broadcast scales in pairs), the constant offset against the activation sums in
/// one `madd`; sums in vectors across super-blocks.
#[inline(always)]
unsafe fn signed_scales_row<P: BytePairs, T: SignedScales16>(
    w: &[u8],
    a: ActivationRow<'_>,
) -> f32 {
    unsafe {
        let n = a.d.len();
        debug_assert!(w.len() >= n * T::SIZE && a.qs.len() >= 256 * n && a.sums.len() >= 16 * n);
        let (wp, qp, sp) = (w.as_ptr(), a.qs.as_ptr(), a.sums.as_ptr());
        let pairs = scale_pair_picks();
        let shift = _mm_cvtsi32_si128(T::OFFSET_SHIFT);
        let mut acc = _mm256_setzero_ps();
        for b in 0..n {
            let blk = wp.add(b * T::SIZE);
            let q = qp.add(256 * b);
            let raw = T::scales(blk);
            let halves = scale_halves(raw);
            let mut sum = [_mm256_setzero_si256(); 4];
            for (nn, half) in halves.into_iter().enumerate() {
                for (p, u) in T::quarters(blk, nn).into_iter().enumerate() {
                    let s = _mm256_shuffle_epi8(half, pairs[p]);
                    sum[p] = P::scaled_acc(sum[p], u, q.add(16 * (8 * nn + 2 * p)), s);
                }
            }
            let sum = sum4(sum);
            let offset = _mm256_madd_epi16(sums16(sp.add(16 * b)), sums_order_i8(raw));
            let total = _mm256_sub_epi32(sum, _mm256_sll_epi32(offset, shift));
            acc = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(total),
                scale_times(blk.add(T::D_AT), *a.d.get_unchecked(b)),
                acc,
            );
        }
        hsum_ps(acc)
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
            GgmlType::Q2_K => q2_k_row::<P>(w, a),
            GgmlType::Q3_K => signed_scales_row::<P, Q3K>(w, a),
            GgmlType::Q4_K => q45_k_row::<false, P>(w, a),
            GgmlType::Q5_K => q45_k_row::<true, P>(w, a),
            GgmlType::Q6_K => signed_scales_row::<P, Q6K>(w, a),
            other => panic!("{other} has no quantized dot product"),
        }
    }
}

/// # Safety
/// The CPU has AVX2, FMA and F16C; `w` holds the row's whole blocks.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_avx2(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe { dot_impl::<Avx2>(ty, w, a) }
}

/// # Safety
/// As [`dot_avx2`], and the CPU has AVX-512 VNNI and VL.
#[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
pub(super) unsafe fn dot_vnni(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe { dot_impl::<Vnni>(ty, w, a) }
}

/// Eight unquantized weights from element `i` of the row at `wp`, as f32. A function, not
/// a closure: a closure does not get its caller's target features (see [`Block32`]).
#[inline(always)]
unsafe fn floats8(ty: GgmlType, wp: *const u8, i: usize) -> __m256 {
    unsafe {
        match ty {
            GgmlType::F32 => _mm256_loadu_ps(wp.add(4 * i) as *const f32),
            GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
            _ => {
                let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i) as *const __m128i));
                _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
            }
        }
    }
}

/// An unquantized weight row times an f32 row (lengths checked by the caller).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_float_avx2(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    unsafe {
        let n = x.len();
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *a = _mm256_fmadd_ps(floats8(ty, wp, j), _mm256_loadu_ps(xp.add(j)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(floats8(ty, wp, i), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let tail = super::scalar::dot_float(ty, &w[i * ty.type_size()..], &x[i..]);
        hsum_ps(v) + tail
    }
}

/// Eight f16 values at `p` as f32 (`vcvtph2ps`).
#[inline(always)]
unsafe fn halves8(p: *const u16) -> __m256 {
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
}

/// One attention query over `len` cached positions (see [`super::attention`]): `d` a
/// multiple of 8 up to 128, the query and output rows held in registers, the f16 keys and
/// values widened as they are read. `PREFETCH`: software prefetches for the keys and values
/// (decoding, whose caches come from DRAM; a prompt's are in cache after its first query).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; `keys`/`values` hold `len` rows of `d`, `query`/`out` one.
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn attend_head_avx2<const PREFETCH: bool>(
    query: &[f32],
    keys: &[half::f16],
    values: &[half::f16],
    len: usize,
    d: usize,
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [f32],
) {
    unsafe {
        let chunks = d / 8;
        debug_assert!(d.is_multiple_of(8) && chunks <= 16);
        debug_assert!(keys.len() >= len * d && values.len() >= len * d);
        let mut q = [_mm256_setzero_ps(); 16];
        for (c, qc) in q.iter_mut().enumerate().take(chunks) {
            *qc = _mm256_loadu_ps(query.as_ptr().add(8 * c));
        }
        scores.clear();
        scores.resize(len.div_ceil(8) * 8, f32::NEG_INFINITY);
        let kp = keys.as_ptr() as *const u16;
        let sp = scores.as_mut_ptr();
        // scores, eight keys at a time: eight independent accumulator chains
        let vp = values.as_ptr() as *const u16;
        let mut j = 0;
        while j + 8 <= len {
            if PREFETCH {
                // a decode step's keys and values come from DRAM, one short stream per
                // head: ask for the keys 16 positions ahead, and for these positions'
                // values (read after the softmax) now (1.7B shape, 32 heads at 32-160
                // positions: 61 → 39 µs a layer)
                for line in (0..8 * d * 2).step_by(64) {
                    let ahead = ((j + 16) * d * 2 + line).min(len * d * 2 - 1);
                    _mm_prefetch((kp as *const i8).add(ahead), _MM_HINT_T0);
                    _mm_prefetch((vp as *const i8).add(j * d * 2 + line), _MM_HINT_T0);
                }
            }
            let mut acc = [_mm256_setzero_ps(); 8];
            for (c, qc) in q.iter().enumerate().take(chunks) {
                for (t, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(*qc, halves8(kp.add((j + t) * d + 8 * c)), *a);
                }
            }
            // (a0 … a7) → their eight sums, in order
            let h01 = _mm256_hadd_ps(acc[0], acc[1]);
            let h23 = _mm256_hadd_ps(acc[2], acc[3]);
            let h45 = _mm256_hadd_ps(acc[4], acc[5]);
            let h67 = _mm256_hadd_ps(acc[6], acc[7]);
            let h0123 = _mm256_hadd_ps(h01, h23);
            let h4567 = _mm256_hadd_ps(h45, h67);
            let lo = _mm256_permute2f128_ps(h0123, h4567, 0x20);
            let hi = _mm256_permute2f128_ps(h0123, h4567, 0x31);
            let sums = _mm256_add_ps(lo, hi);
            _mm256_storeu_ps(sp.add(j), _mm256_mul_ps(sums, _mm256_set1_ps(scale)));
            j += 8;
        }
        while j < len {
            let key = kp.add(j * d);
            let mut a = _mm256_setzero_ps();
            for (c, qc) in q.iter().enumerate().take(chunks) {
                a = _mm256_fmadd_ps(*qc, halves8(key.add(8 * c)), a);
            }
            *sp.add(j) = hsum_ps(a) * scale;
            j += 1;
        }
        // softmax: max, then e^(s - max) eight at a time
        let mut m = _mm256_set1_ps(f32::NEG_INFINITY);
        for i in (0..len.div_ceil(8) * 8).step_by(8) {
            m = _mm256_max_ps(m, _mm256_loadu_ps(sp.add(i)));
        }
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_movehdup_ps(m));
        let max = _mm256_set1_ps(_mm_cvtss_f32(m));
        let mut total = _mm256_setzero_ps();
        for i in (0..len.div_ceil(8) * 8).step_by(8) {
            let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(sp.add(i)), max));
            _mm256_storeu_ps(sp.add(i), e);
            total = _mm256_add_ps(total, e);
        }
        let inv = _mm256_set1_ps(1.0 / hsum_ps(total));
        // the weighted sum of values, the output row in registers
        let mut o = [_mm256_setzero_ps(); 16];
        for jj in 0..len {
            let p = _mm256_set1_ps(*sp.add(jj));
            let value = vp.add(jj * d);
            for (c, oc) in o.iter_mut().enumerate().take(chunks) {
                *oc = _mm256_fmadd_ps(p, halves8(value.add(8 * c)), *oc);
            }
        }
        for (c, oc) in o.iter().enumerate().take(chunks) {
            _mm256_storeu_ps(out.as_mut_ptr().add(8 * c), _mm256_mul_ps(*oc, inv));
        }
    }
}

/// `out = silu(gate) · up` eight at a time: [`super::gated::swiglu`]'s arithmetic, the same
/// operations in the same order (so the same bits: a model's logits do not move).
///
/// # Safety
/// The CPU has AVX2 and FMA; the three slices have one length.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn swiglu_avx2(gate: &[f32], up: &[f32], out: &mut [f32]) {
    unsafe {
        debug_assert!(gate.len() == up.len() && up.len() == out.len());
        let n = out.len() / 8 * 8;
        let (zero, one) = (_mm256_setzero_ps(), _mm256_set1_ps(1.0));
        let magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        for i in (0..n).step_by(8) {
            let g = _mm256_loadu_ps(gate.as_ptr().add(i));
            let u = _mm256_loadu_ps(up.as_ptr().add(i));
            let e = exp_ps_unfused(_mm256_sub_ps(zero, _mm256_and_ps(g, magnitude)));
            let one_plus = _mm256_add_ps(one, e);
            // 1 / (1 + e^-x) for x ≥ 0, e^x / (1 + e^x) below
            let s = _mm256_blendv_ps(
                _mm256_div_ps(e, one_plus),
                _mm256_div_ps(one, one_plus),
                _mm256_cmp_ps(g, zero, _CMP_GE_OQ),
            );
            _mm256_storeu_ps(
                out.as_mut_ptr().add(i),
                _mm256_mul_ps(_mm256_mul_ps(g, s), u),
            );
        }
        for i in n..out.len() {
            out[i] = super::gated::silu_times(gate[i], up[i]);
        }
    }
}

/// `Σ e^(x − max)` over `row` (every `x ≤ max`).
///
/// # Safety
/// The CPU has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn sum_exp_avx2(row: &[f32], max: f32) -> f32 {
    unsafe {
        let m = _mm256_set1_ps(max);
        let mut total = _mm256_setzero_ps();
        let chunks = row.chunks_exact(8);
        let tail: f32 = chunks
            .remainder()
            .iter()
            .map(|&x| super::attention::exp(x - max))
            .sum();
        for c in chunks {
            total = _mm256_add_ps(total, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m)));
        }
        hsum_ps(total) + tail
    }
}

/// `out[j] = k · e^(row[j] − max)` (every `row[j] ≤ max`).
///
/// # Safety
/// The CPU has AVX2 and FMA; `out` is as long as `row`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scaled_exp_avx2(row: &[f32], max: f32, k: f32, out: &mut [f32]) {
    unsafe {
        let (m, kv) = (_mm256_set1_ps(max), _mm256_set1_ps(k));
        let n = row.len() / 8 * 8;
        for i in (0..n).step_by(8) {
            let e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(row.as_ptr().add(i)), m));
            _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(e, kv));
        }
        for (o, &x) in out[n..].iter_mut().zip(&row[n..]) {
            *o = super::attention::exp(x - max) * k;
        }
    }
}

/// Eight `e^x` for `x ≤ 0` (−∞ gives 0): the polynomial of [`super::attention::exp`].
#[inline(always)]
unsafe fn exp_ps(x: __m256) -> __m256 {
    unsafe {
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
        let n = _mm256_round_ps(
            _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::LOG2_E)),
            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC,
        );
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_145_75), x);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428_606_8e-6), r);
        let mut p = _mm256_set1_ps(0.001_395_1);
        for c in [0.008_333_48, 0.041_666_42, 0.166_666_67, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let pow2 = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }
}

/// [`super::attention::exp`] eight at a time, operation for operation (no fused
/// multiply-adds), so to the same bits.
#[inline(always)]
unsafe fn exp_ps_unfused(x: __m256) -> __m256 {
    unsafe {
        let round = _mm256_set1_ps(12_582_912.0);
        let x = _mm256_max_ps(x, _mm256_set1_ps(-87.0));
        let n = _mm256_sub_ps(
            _mm256_add_ps(
                _mm256_mul_ps(x, _mm256_set1_ps(core::f32::consts::LOG2_E)),
                round,
            ),
            round,
        );
        let r = _mm256_sub_ps(x, _mm256_mul_ps(n, _mm256_set1_ps(0.693_145_75)));
        let r = _mm256_sub_ps(r, _mm256_mul_ps(n, _mm256_set1_ps(1.428_606_8e-6)));
        let mut p = _mm256_set1_ps(0.001_395_1);
        for c in [0.008_333_48, 0.041_666_42, 0.166_666_67, 0.5, 1.0, 1.0] {
            p = _mm256_add_ps(_mm256_set1_ps(c), _mm256_mul_ps(r, p));
        }
        let pow2 = _mm256_slli_epi32(
            _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)),
            23,
        );
        _mm256_mul_ps(p, _mm256_castsi256_ps(pow2))
    }
}

/// The values of one Q4_K/Q5_K super-block (eight 32-element blocks: one interleaved group
/// of [`super::batched`]) written interleaved to `out` (256 bytes): the eight blocks'
/// values, then an 8 × 8 transpose of their 32-bit words.
///
/// # Safety
/// The CPU has AVX2; `blk` holds a whole super-block and `out` 256 bytes.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn unpack_q45_k_avx2<const FIVE: bool>(blk: *const u8, out: *mut u8) {
    unsafe {
        let qs = blk.add(if FIVE { 48 } else { 16 });
        let qh = if FIVE {
            load(blk.add(16))
        } else {
            _mm256_setzero_si256()
        };
        let mut v = [_mm256_setzero_si256(); 8];
        for g in 0..4 {
            (v[2 * g], v[2 * g + 1]) = q45_k_values::<FIVE>(qs, qh, g);
        }
        // word j of block k goes to word 8j + k
        let s: [__m256i; 8] = core::array::from_fn(|i| {
            let (a, b) = (v[2 * (i / 2)], v[2 * (i / 2) + 1]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi32(a, b)
            } else {
                _mm256_unpackhi_epi32(a, b)
            }
        });
        // s[2p] = [v_{2p}[0] v_{2p+1}[0] v_{2p}[1] v_{2p+1}[1] | words 4, 5]; s[2p+1]: words 2, 3 | 6, 7
        let u: [__m256i; 8] = core::array::from_fn(|i| {
            let half = 4 * (i / 4); // v0..3 or v4..7
            let (a, b) = (s[half + (i % 4) / 2], s[half + 2 + (i % 4) / 2]);
            if i % 2 == 0 {
                _mm256_unpacklo_epi64(a, b)
            } else {
                _mm256_unpackhi_epi64(a, b)
            }
        });
        // u[j] (j < 4): word j of blocks 0..4 in the low lane, word j + 4 in the high one;
        // u[4 + j] the same of blocks 4..8
        let op = out as *mut __m256i;
        for j in 0..4 {
            let (a, b) = (u[j], u[4 + j]);
            _mm256_storeu_si256(op.add(j), _mm256_permute2x128_si256(a, b, 0x20));
            _mm256_storeu_si256(op.add(j + 4), _mm256_permute2x128_si256(a, b, 0x31));
        }
    }
}

/// The values of one Q6_K super-block (sixteen 16-element blocks: two interleaved groups)
/// written interleaved to `out` (256 bytes).
///
/// # Safety
/// The CPU has AVX2; `blk` holds a whole super-block and `out` 256 bytes.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn unpack_q6_k_avx2(blk: *const u8, out: *mut u8) {
    unsafe {
        let op = out as *mut __m256i;
        for n in 0..2 {
            // quarter p: blocks 2p (low 128-bit lane) and 2p + 1 (high lane) of the group
            let q = q6_k_quarters(blk, n);
            // lanes: y1 = [b0 | b4], y2 = [b1 | b5], y3 = [b2 | b6], y4 = [b3 | b7], so that
            // word j of the output is [b0..4 word j | b4..8 word j]
            let y1 = _mm256_permute2x128_si256(q[0], q[2], 0x20);
            let y2 = _mm256_permute2x128_si256(q[0], q[2], 0x31);
            let y3 = _mm256_permute2x128_si256(q[1], q[3], 0x20);
            let y4 = _mm256_permute2x128_si256(q[1], q[3], 0x31);
            // a 4 × 4 transpose of 32-bit words within each lane
            let t0 = _mm256_unpacklo_epi32(y1, y2);
            let t1 = _mm256_unpackhi_epi32(y1, y2);
            let t2 = _mm256_unpacklo_epi32(y3, y4);
            let t3 = _mm256_unpackhi_epi32(y3, y4);
            let g = op.add(4 * n);
            _mm256_storeu_si256(g, _mm256_unpacklo_epi64(t0, t2));
            _mm256_storeu_si256(g.add(1), _mm256_unpackhi_epi64(t0, t2));
            _mm256_storeu_si256(g.add(2), _mm256_unpacklo_epi64(t1, t3));
            _mm256_storeu_si256(g.add(3), _mm256_unpackhi_epi64(t1, t3));
        }
    }
}

/// One interleaved activation row: its bytes, block scales and `scale · Σq` per block.
pub(super) type InterleavedRow<'a> = (&'a [i8], &'a [f32], &'a [f32]);

/// The pointers the batched kernels read: each weight row's values, scales and offsets,
/// and each activation row's bytes, scales and `scale · Σq`.
struct Rows4<const N: usize> {
    up: [*const u8; 4],
    sp: [*const f32; 4],
    op: [*const f32; 4],
    qp: [*const i8; N],
    dp: [*const f32; N],
    dsp: [*const f32; N],
}

impl<const N: usize> Rows4<N> {
    #[inline(always)]
    fn new(w: [&super::batched::UnpackedRow; 4], acts: [InterleavedRow<'_>; N]) -> Self {
        Rows4 {
            up: w.map(|r| r.u.as_ptr()),
            sp: w.map(|r| r.scale.as_ptr()),
            op: w.map(|r| r.offset.as_ptr()),
            qp: acts.map(|a| a.0.as_ptr()),
            dp: acts.map(|a| a.1.as_ptr()),
            dsp: acts.map(|a| a.2.as_ptr()),
        }
    }
}

/// Four unpacked weight rows times `N` interleaved activation rows (see
/// [`super::batched`]), blocks of `L` (16 or 32): each 32-byte weight load feeds `N`
/// activation rows and each activation load four weight rows, and the eight lanes of each
/// product are eight blocks. `N = 3` holds 12 integer and 12 float accumulators: AVX-512's
/// 32 vector registers (with VL); AVX2's 16 take `N = 1`. `SIGNED`: the weight bytes are
/// signed (Q8_0 on AVX2, see [`super::batched::signed_values`]) and the offsets zero: each
/// product is `|w| · (q · sign w)` (`vpabsb`, `vpsignb`), pair sums at most 2 · 128 · 127,
/// which `maddubs` holds exactly.
#[inline(always)]
unsafe fn rows4_interleaved<P: BytePairs, const L: usize, const N: usize, const SIGNED: bool>(
    w: [&super::batched::UnpackedRow; 4],
    acts: [InterleavedRow<'_>; N],
) -> [[f32; 4]; N] {
    unsafe {
        // rows are padded to whole groups of eight blocks
        let nb = acts[0].1.len();
        let groups = nb / 8;
        debug_assert!(nb.is_multiple_of(8));
        debug_assert!(acts.iter().all(|a| a.0.len() >= L * nb && a.2.len() >= nb));
        let Rows4 {
            up,
            sp,
            op,
            qp,
            dp,
            dsp,
        } = Rows4::new(w, acts);
        let mut acc = [[_mm256_setzero_ps(); 4]; N];
        for g in 0..groups {
            let base = 8 * L * g;
            // the sums of every (activation, weight) row pair are independent chains
            let mut p = [[_mm256_setzero_si256(); 4]; N];
            for j in 0..L / 4 {
                // plain loops, not `array::map`: a closure does not inherit this function's
                // target features, and the intrinsics in one not inlined become calls
                let mut wv = [_mm256_setzero_si256(); 4];
                for r in 0..4 {
                    wv[r] = load(up[r].add(base + 32 * j));
                }
                for i in 0..N {
                    let q = load_q(qp[i].add(base + 32 * j));
                    for r in 0..4 {
                        if SIGNED {
                            // |w| · (q · sign w)
                            let m = _mm256_abs_epi8(wv[r]);
                            p[i][r] = P::dot_acc(p[i][r], m, _mm256_sign_epi8(q, wv[r]));
                        } else {
                            p[i][r] = P::dot_acc(p[i][r], wv[r], q);
                        }
                    }
                }
            }
            for i in 0..N {
                let da = _mm256_loadu_ps(dp[i].add(8 * g));
                let ds = _mm256_loadu_ps(dsp[i].add(8 * g));
                for r in 0..4 {
                    let scale = _mm256_loadu_ps(sp[r].add(8 * g));
                    let s = _mm256_mul_ps(scale, da);
                    acc[i][r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p[i][r]), s, acc[i][r]);
                    if !SIGNED {
                        let offset = _mm256_loadu_ps(op[r].add(8 * g));
                        acc[i][r] = _mm256_fmadd_ps(offset, ds, acc[i][r]);
                    }
                }
            }
        }
        let mut out = [[0.0f32; 4]; N];
        for i in 0..N {
            _mm_storeu_ps(out[i].as_mut_ptr(), hsum4_ps(acc[i]));
        }
        out
    }
}

/// Four unpacked weight rows times rows `range` of `a`, each result handed to `store` with
/// its row: the loop is here, not in the caller, so a narrow row's few groups do not pay a
/// call each. Signed rows (see [`super::batched::signed_values`]) take the `SIGNED` kernel.
///
/// # Safety
/// The CPU has AVX2, FMA and F16C; the rows hold as many blocks of `a.len` as `a`'s rows.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn rows4_interleaved_avx2(
    w: [&super::batched::UnpackedRow; 4],
    a: &super::batched::InterleavedActivations,
    range: core::ops::Range<usize>,
    store: impl FnMut(usize, [f32; 4]),
) {
    unsafe {
        match (a.len, w[0].signed) {
            (16, _) => each_row::<16, false>(w, a, range, store),
            (_, false) => each_row::<32, false>(w, a, range, store),
            (_, true) => each_row::<32, true>(w, a, range, store),
        }
    }
}

/// [`rows4_interleaved_avx2`]'s loop for one kind of row.
#[inline(always)]
unsafe fn each_row<const L: usize, const SIGNED: bool>(
    w: [&super::batched::UnpackedRow; 4],
    a: &super::batched::InterleavedActivations,
    range: core::ops::Range<usize>,
    mut store: impl FnMut(usize, [f32; 4]),
) {
    for i in range {
        // SAFETY: the caller's contract.
        let [v] = unsafe { rows4_interleaved::<Avx2, L, 1, SIGNED>(w, [a.row(i)]) };
        store(i, v);
    }
}

/// Activation rows the VNNI kernel takes at once (the rows after the last whole set go one
/// at a time).
pub(super) const VNNI_ROWS: usize = 3;

/// The low half of `v` plus its high half, as eight 32-bit integers.
#[inline(always)]
unsafe fn fold_halves(v: __m512i) -> __m256i {
    unsafe { _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1)) }
}

/// [`rows4_interleaved`] with the byte products in 512-bit registers: each load takes two
/// consecutive 32-byte chunks of a group (`j`, `j + 1`), so lanes `k` and `k + 8` of a
/// product both belong to block `k`; the two halves are summed in integers after the
/// group's last chunk (exact), and the float epilogue is the 256-bit kernel's: the results
/// are the same bit for bit, from half the product instructions (and, on a CPU whose
/// vector units are 512 bits wide, AMD Zen 5 or Intel's server cores, half their cycles).
#[inline(always)]
unsafe fn rows4_interleaved_zmm<const L: usize, const N: usize>(
    w: [&super::batched::UnpackedRow; 4],
    acts: [InterleavedRow<'_>; N],
) -> [[f32; 4]; N] {
    unsafe {
        let nb = acts[0].1.len();
        let groups = nb / 8;
        debug_assert!(nb.is_multiple_of(8) && L.is_multiple_of(8));
        debug_assert!(acts.iter().all(|a| a.0.len() >= L * nb && a.2.len() >= nb));
        let Rows4 {
            up,
            sp,
            op,
            qp,
            dp,
            dsp,
        } = Rows4::new(w, acts);
        let mut acc = [[_mm256_setzero_ps(); 4]; N];
        for g in 0..groups {
            let base = 8 * L * g;
            let mut p = [[_mm512_setzero_si512(); 4]; N];
            for j in 0..L / 8 {
                let mut wv = [_mm512_setzero_si512(); 4];
                for r in 0..4 {
                    wv[r] = _mm512_loadu_si512(up[r].add(base + 64 * j) as *const _);
                }
                for i in 0..N {
                    let q = _mm512_loadu_si512(qp[i].add(base + 64 * j) as *const _);
                    for r in 0..4 {
                        p[i][r] = _mm512_dpbusd_epi32(p[i][r], wv[r], q);
                    }
                }
            }
            for i in 0..N {
                let da = _mm256_loadu_ps(dp[i].add(8 * g));
                let ds = _mm256_loadu_ps(dsp[i].add(8 * g));
                for r in 0..4 {
                    let s = _mm256_mul_ps(_mm256_loadu_ps(sp[r].add(8 * g)), da);
                    let sum = _mm256_cvtepi32_ps(fold_halves(p[i][r]));
                    acc[i][r] = _mm256_fmadd_ps(sum, s, acc[i][r]);
                    acc[i][r] = _mm256_fmadd_ps(_mm256_loadu_ps(op[r].add(8 * g)), ds, acc[i][r]);
                }
            }
        }
        let mut out = [[0.0f32; 4]; N];
        for i in 0..N {
            _mm_storeu_ps(out[i].as_mut_ptr(), hsum4_ps(acc[i]));
        }
        out
    }
}

/// [`rows4_interleaved_avx2`] for `N` activation rows at once ([`VNNI_ROWS`] or 1), in
/// 512-bit registers (see [`rows4_interleaved_zmm`]).
///
/// # Safety
/// As [`rows4_interleaved_avx2`], and the CPU has AVX-512 F, BW, VL and VNNI.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vnni,avx512vl")]
pub(super) unsafe fn rows4_interleaved_vnni<const N: usize>(
    len: usize,
    w: [&super::batched::UnpackedRow; 4],
    a: [InterleavedRow<'_>; N],
) -> [[f32; 4]; N] {
    unsafe {
        match len {
            16 => rows4_interleaved_zmm::<16, N>(w, a),
            _ => rows4_interleaved_zmm::<32, N>(w, a),
        }
    }
}

/// Quantizes `x` in blocks of `block` (32 or 256) values to `[-127, 127]` (round to
/// nearest, ties to even: as [`super::activation`]'s portable path), writing the scales and
/// the sums of each `group` (32 or 16) values.
///
/// # Safety
/// The CPU has AVX2; `qs` holds `x.len()` values, `d` one per block, `sums` one per group.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn quantize_blocks_avx2(
    x: &[f32],
    block: usize,
    group: usize,
    qs: &mut [i8],
    d: &mut [f32],
    sums: &mut [i32],
) {
    unsafe {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (b, src) in x.chunks_exact(block).enumerate() {
            let sp = src.as_ptr();
            let mut amax = _mm256_setzero_ps();
            let mut nan = _mm256_setzero_ps();
            for i in (0..block).step_by(8) {
                let v = _mm256_loadu_ps(sp.add(i));
                amax = _mm256_max_ps(amax, _mm256_and_ps(v, abs_mask));
                nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            }
            let m = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let m = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
            let qb = &mut qs[b * block..(b + 1) * block];
            let groups = &mut sums[b * block / group..(b + 1) * block / group];
            let has_nan = _mm256_movemask_ps(nan) != 0;
            if m == 0.0 || !m.is_finite() || has_nan {
                qb.fill(0);
                groups.fill(0);
                d[b] = if m == 0.0 && !has_nan { 0.0 } else { f32::NAN };
                continue;
            }
            d[b] = m / 127.0;
            let id = _mm256_set1_ps(1.0 / (m / 127.0));
            for (c, out) in qb.chunks_exact_mut(32).enumerate() {
                let q: [__m256i; 4] = core::array::from_fn(|k| {
                    _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(sp.add(32 * c + 8 * k)), id))
                });
                let w01 = _mm256_packs_epi32(q[0], q[1]);
                let w23 = _mm256_packs_epi32(q[2], q[3]);
                let bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23), order);
                _mm256_storeu_si256(out.as_mut_ptr() as *mut __m256i, bytes);
                let s01 = hsum_epi32(_mm256_add_epi32(q[0], q[1]));
                let s23 = hsum_epi32(_mm256_add_epi32(q[2], q[3]));
                if group == 32 {
                    groups[c] = s01 + s23;
                } else {
                    groups[2 * c] = s01;
                    groups[2 * c + 1] = s23;
                }
            }
        }
    }
}

//! x86-64 dot products: AVX2 + FMA + F16C, and the same kernels with AVX-512 VNNI's
//! `vpdpbusd` (256-bit, EVEX) for the unsigned-by-signed byte products where the CPU has
//! it. The arithmetic is that of [`super::scalar`]: the same integers, summed in another
//! order, so results agree to float rounding.
//!
//! Every function here is `unsafe`: the caller checks the CPU features first
//! ([`super::Isa::detect`]) and passes rows of whole blocks.

use core::arch::x86_64::*;

use super::activation::ActivationRow;
use crate::dequant::{q3_k_scales, scale_min_k4};
use crate::format::GgmlType;

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    unsafe {
        let bits = core::ptr::read_unaligned(p as *const u16);
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits as i32)))
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

/// 16 bytes of nibbles → 32 bytes: the low nibbles (elements 0..16), then the high ones.
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    unsafe {
        let t = _mm_loadu_si128(p as *const __m128i);
        let hi = _mm_srli_epi16(t, 4);
        _mm256_and_si256(_mm256_set_m128i(hi, t), _mm256_set1_epi8(0x0F))
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

/// Two 16-element scales as the multiplier of `maddubs` pairs: lanes 0..8 (elements 0..16)
/// get `lo`, lanes 8..16 get `hi`.
#[inline(always)]
unsafe fn scale_pair(lo: i32, hi: i32) -> __m256i {
    unsafe { _mm256_set_m128i(_mm_set1_epi16(hi as i16), _mm_set1_epi16(lo as i16)) }
}

/// How the unsigned × signed byte products of 32-element blocks are summed to 8 × i32.
pub(super) trait BytePairs {
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i;
}

/// AVX2: `vpmaddubsw` then `vpmaddwd` with ones.
pub(super) struct Avx2;
impl BytePairs for Avx2 {
    #[inline(always)]
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, q), _mm256_set1_epi16(1)) }
    }
}

/// AVX-512 VNNI: one `vpdpbusd`.
pub(super) struct Vnni;
impl BytePairs for Vnni {
    #[inline(always)]
    unsafe fn dot(u: __m256i, q: __m256i) -> __m256i {
        unsafe { _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, q) }
    }
}

/// Σ over 32-element blocks of `scale · Σu·q + offset · Σq`, each times the block's
/// activation scale; `unpack(block) = (u bytes, scale, offset)`.
#[inline(always)]
unsafe fn blocks32<P: BytePairs, const TS: usize>(
    w: &[u8],
    a: ActivationRow<'_>,
    unpack: impl Fn(*const u8) -> (__m256i, f32, f32),
) -> f32 {
    unsafe {
        let n = a.d.len();
        debug_assert!(w.len() >= n * TS && a.qs.len() >= 32 * n && a.sums.len() >= n);
        let (wp, qp) = (w.as_ptr(), a.qs.as_ptr());
        let mut acc = _mm256_setzero_ps();
        let mut offsets = 0.0f32;
        for b in 0..n {
            let (u, scale, offset) = unpack(wp.add(b * TS));
            let p = P::dot(u, load_q(qp.add(32 * b)));
            let d = *a.d.get_unchecked(b);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale * d), acc);
            offsets += offset * d * *a.sums.get_unchecked(b) as f32;
        }
        hsum_ps(acc) + offsets
    }
}

/// Q8_0 weights are signed: `|w| · (q · sign w)`.
#[inline(always)]
unsafe fn q8_0<P: BytePairs>(w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        let n = a.d.len();
        let (wp, qp) = (w.as_ptr(), a.qs.as_ptr());
        let mut acc = _mm256_setzero_ps();
        for b in 0..n {
            let blk = wp.add(b * 34);
            let x = load(blk.add(2));
            let q = load_q(qp.add(32 * b));
            let p = P::dot(_mm256_sign_epi8(x, x), _mm256_sign_epi8(q, x));
            let scale = f16_at(blk) * *a.d.get_unchecked(b);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scale), acc);
        }
        hsum_ps(acc)
    }
}

/// `maddubs(u, q)` pairs times two 16-element scales, summed to 8 × i32.
#[inline(always)]
unsafe fn scaled(u: __m256i, q: *const i8, scales: __m256i) -> __m256i {
    unsafe { _mm256_madd_epi16(_mm256_maddubs_epi16(u, load_q(q)), scales) }
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

/// Σ over super-blocks; `block(bytes, q, sums16)` returns the block's dot product in
/// weight units.
#[inline(always)]
unsafe fn super_blocks<const TS: usize>(
    w: &[u8],
    a: ActivationRow<'_>,
    block: impl Fn(*const u8, *const i8, &[i32]) -> f32,
) -> f32 {
    unsafe {
        let n = a.d.len();
        let (wp, qp) = (w.as_ptr(), a.qs.as_ptr());
        let mut sum = 0.0f32;
        for b in 0..n {
            let sums = a.sums.get_unchecked(16 * b..16 * b + 16);
            sum += *a.d.get_unchecked(b) * block(wp.add(b * TS), qp.add(256 * b), sums);
        }
        sum
    }
}

#[inline(always)]
unsafe fn q2_k(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let sc = core::slice::from_raw_parts(b, 16);
        let mask = _mm256_set1_epi8(3);
        let mut acc = _mm256_setzero_si256();
        for n in 0..2 {
            let bits = load(b.add(16 + 32 * n));
            for j in 0..4 {
                let u = _mm256_and_si256(srl16(bits, 2 * j as u32), mask);
                let k = 8 * n + 2 * j;
                let s = scale_pair((sc[k] & 0xF) as i32, (sc[k + 1] & 0xF) as i32);
                acc = _mm256_add_epi32(acc, scaled(u, q.add(16 * k), s));
            }
        }
        let msum: i32 = (0..16).map(|k| (sc[k] >> 4) as i32 * sums[k]).sum();
        f16_at(b.add(80)) * hsum_epi32(acc) as f32 - f16_at(b.add(82)) * msum as f32
    }
}

#[inline(always)]
unsafe fn q3_k(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let scales = q3_k_scales(core::slice::from_raw_parts(b.add(96), 12));
        let hm = load(b);
        let (three, one) = (_mm256_set1_epi8(3), _mm256_set1_epi8(1));
        let mut acc = _mm256_setzero_si256();
        for n in 0..2 {
            let bits = load(b.add(32 + 32 * n));
            for j in 0..4 {
                let lo = _mm256_and_si256(srl16(bits, 2 * j as u32), three);
                let hbit = _mm256_and_si256(srl16(hm, (4 * n + j) as u32), one);
                let u = _mm256_or_si256(lo, _mm256_slli_epi16(hbit, 2));
                let k = 8 * n + 2 * j;
                let s = scale_pair(scales[k] as i32 - 32, scales[k + 1] as i32 - 32);
                acc = _mm256_add_epi32(acc, scaled(u, q.add(16 * k), s));
            }
        }
        let offset: i32 = (0..16).map(|k| (scales[k] as i32 - 32) * sums[k]).sum();
        f16_at(b.add(108)) * (hsum_epi32(acc) - 4 * offset) as f32
    }
}

#[inline(always)]
unsafe fn q4_k(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let raw = core::slice::from_raw_parts(b.add(4), 12);
        let low = _mm256_set1_epi8(0x0F);
        let mut acc = _mm256_setzero_si256();
        let mut msum = 0i32;
        for g in 0..4 {
            let bits = load(b.add(16 + 32 * g));
            let (sc0, m0) = scale_min_k4(2 * g, raw);
            let (sc1, m1) = scale_min_k4(2 * g + 1, raw);
            let u0 = _mm256_and_si256(bits, low);
            let u1 = _mm256_and_si256(_mm256_srli_epi16(bits, 4), low);
            let p0 = scaled(u0, q.add(64 * g), _mm256_set1_epi16(sc0 as i16));
            let p1 = scaled(u1, q.add(64 * g + 32), _mm256_set1_epi16(sc1 as i16));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p0, p1));
            msum += m0 as i32 * (sums[4 * g] + sums[4 * g + 1])
                + m1 as i32 * (sums[4 * g + 2] + sums[4 * g + 3]);
        }
        f16_at(b) * hsum_epi32(acc) as f32 - f16_at(b.add(2)) * msum as f32
    }
}

#[inline(always)]
unsafe fn q5_k(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let raw = core::slice::from_raw_parts(b.add(4), 12);
        let qh = load(b.add(16));
        let (low, one) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(1));
        let mut acc = _mm256_setzero_si256();
        let mut msum = 0i32;
        for g in 0..4 {
            let bits = load(b.add(48 + 32 * g));
            let (sc0, m0) = scale_min_k4(2 * g, raw);
            let (sc1, m1) = scale_min_k4(2 * g + 1, raw);
            let h0 = _mm256_slli_epi16(_mm256_and_si256(srl16(qh, 2 * g as u32), one), 4);
            let h1 = _mm256_slli_epi16(_mm256_and_si256(srl16(qh, 2 * g as u32 + 1), one), 4);
            let u0 = _mm256_or_si256(_mm256_and_si256(bits, low), h0);
            let u1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(bits, 4), low), h1);
            let p0 = scaled(u0, q.add(64 * g), _mm256_set1_epi16(sc0 as i16));
            let p1 = scaled(u1, q.add(64 * g + 32), _mm256_set1_epi16(sc1 as i16));
            acc = _mm256_add_epi32(acc, _mm256_add_epi32(p0, p1));
            msum += m0 as i32 * (sums[4 * g] + sums[4 * g + 1])
                + m1 as i32 * (sums[4 * g + 2] + sums[4 * g + 3]);
        }
        f16_at(b) * hsum_epi32(acc) as f32 - f16_at(b.add(2)) * msum as f32
    }
}

#[inline(always)]
unsafe fn q6_k(b: *const u8, q: *const i8, sums: &[i32]) -> f32 {
    unsafe {
        let sc = core::slice::from_raw_parts(b.add(192) as *const i8, 16);
        let (low, three) = (_mm256_set1_epi8(0x0F), _mm256_set1_epi8(3));
        let mut acc = _mm256_setzero_si256();
        for n in 0..2 {
            let ql0 = load(b.add(64 * n));
            let ql1 = load(b.add(64 * n + 32));
            let qh = load(b.add(128 + 32 * n));
            let hi = |shift: u32| _mm256_slli_epi16(_mm256_and_si256(srl16(qh, shift), three), 4);
            let quarters = [
                _mm256_or_si256(_mm256_and_si256(ql0, low), hi(0)),
                _mm256_or_si256(_mm256_and_si256(ql1, low), hi(2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low), hi(4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low), hi(6)),
            ];
            for (p, u) in quarters.into_iter().enumerate() {
                let k = 8 * n + 2 * p;
                let s = scale_pair(sc[k] as i32, sc[k + 1] as i32);
                acc = _mm256_add_epi32(acc, scaled(u, q.add(16 * k), s));
            }
        }
        let offset: i32 = (0..16).map(|k| sc[k] as i32 * sums[k]).sum();
        f16_at(b.add(208)) * (hsum_epi32(acc) - 32 * offset) as f32
    }
}

#[inline(always)]
unsafe fn dot_impl<P: BytePairs>(ty: GgmlType, w: &[u8], a: ActivationRow<'_>) -> f32 {
    unsafe {
        match ty {
            GgmlType::Q4_0 => blocks32::<P, 18>(w, a, |b| {
                let d = f16_at(b);
                (nibbles32(b.add(2)), d, -8.0 * d)
            }),
            GgmlType::Q4_1 => {
                blocks32::<P, 20>(w, a, |b| (nibbles32(b.add(4)), f16_at(b), f16_at(b.add(2))))
            }
            GgmlType::Q5_0 => blocks32::<P, 22>(w, a, |b| {
                let d = f16_at(b);
                let qh = core::ptr::read_unaligned(b.add(2) as *const u32);
                let u = _mm256_or_si256(nibbles32(b.add(6)), fifth_bits(qh));
                (u, d, -16.0 * d)
            }),
            GgmlType::Q5_1 => blocks32::<P, 24>(w, a, |b| {
                let qh = core::ptr::read_unaligned(b.add(4) as *const u32);
                let u = _mm256_or_si256(nibbles32(b.add(8)), fifth_bits(qh));
                (u, f16_at(b), f16_at(b.add(2)))
            }),
            GgmlType::Q8_0 => q8_0::<P>(w, a),
            GgmlType::Q2_K => super_blocks::<84>(w, a, |b, q, s| q2_k(b, q, s)),
            GgmlType::Q3_K => super_blocks::<110>(w, a, |b, q, s| q3_k(b, q, s)),
            GgmlType::Q4_K => super_blocks::<144>(w, a, |b, q, s| q4_k(b, q, s)),
            GgmlType::Q5_K => super_blocks::<176>(w, a, |b, q, s| q5_k(b, q, s)),
            GgmlType::Q6_K => super_blocks::<210>(w, a, |b, q, s| q6_k(b, q, s)),
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

/// An unquantized weight row times an f32 row (lengths checked by the caller).
///
/// # Safety
/// The CPU has AVX2, FMA and F16C.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_float_avx2(ty: GgmlType, w: &[u8], x: &[f32]) -> f32 {
    unsafe {
        let n = x.len();
        let (wp, xp) = (w.as_ptr(), x.as_ptr());
        let load_w = |i: usize| -> __m256 {
            match ty {
                GgmlType::F32 => _mm256_loadu_ps(wp.add(4 * i) as *const f32),
                GgmlType::F16 => _mm256_cvtph_ps(_mm_loadu_si128(wp.add(2 * i) as *const __m128i)),
                _ => {
                    let h = _mm256_cvtepu16_epi32(_mm_loadu_si128(wp.add(2 * i) as *const __m128i));
                    _mm256_castsi256_ps(_mm256_slli_epi32(h, 16))
                }
            }
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        while i + 32 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let j = i + 8 * k;
                *a = _mm256_fmadd_ps(load_w(j), _mm256_loadu_ps(xp.add(j)), *a);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(load_w(i), _mm256_loadu_ps(xp.add(i)), acc[0]);
            i += 8;
        }
        let v = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let tail = super::scalar::dot_float(ty, &w[i * ty.type_size()..], &x[i..]);
        hsum_ps(v) + tail
    }
}

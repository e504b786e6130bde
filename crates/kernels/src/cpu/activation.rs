//! Activations quantized once per product to 8-bit blocks, as llama.cpp pairs its weight
//! types with Q8_0/Q8_1/Q8_K: every weight row of the product is then an integer dot
//! product against the same bytes.
//!
//! Two block shapes serve every weight type:
//! - 32 elements with an f32 scale and the sum of the 32 quantized values (the weight types
//!   of 32-element blocks; the sum carries their offset or minimum);
//! - 256 elements with an f32 scale and the sums of each 16 values (the K-quants, whose
//!   super-blocks are 256 elements with integer sub-block scales and minimums).
//!
//! Values are rounded to nearest in `[-127, 127]`: symmetric, so a sign flip of the
//! activation flips the product exactly.

/// Which activation blocks a weight type multiplies against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationBlocks {
    /// 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
    B32,
    /// 256-element super-blocks with per-16 sums (Q2_K … Q6_K).
    B256,
}

impl ActivationBlocks {
    #[allow(clippy::len_without_is_empty)] // a block length, never empty
    pub const fn len(self) -> usize {
        match self {
            ActivationBlocks::B32 => 32,
            ActivationBlocks::B256 => 256,
        }
    }

    /// Elements per stored sum.
    pub const fn sum_group(self) -> usize {
        match self {
            ActivationBlocks::B32 => 32,
            ActivationBlocks::B256 => 16,
        }
    }
}

/// `rows` activation rows of `cols` values each, quantized.
#[derive(Debug, Clone)]
pub struct QuantizedActivations {
    pub blocks: ActivationBlocks,
    pub rows: usize,
    pub cols: usize,
    /// `rows × cols` values.
    pub qs: Vec<i8>,
    /// One scale per block: value ≈ `d · q`.
    pub d: Vec<f32>,
    /// Sums of the quantized values, one per [`ActivationBlocks::sum_group`] elements.
    pub sums: Vec<i32>,
    /// `(d, d · Σq)` of each 32-element block side by side (the second is what a weight
    /// block's offset or minimum multiplies; one 8-byte load gives a block both); empty
    /// for 256-element blocks.
    pub factors: Vec<[f32; 2]>,
}

/// The quantized values, scales and sums of one row.
#[derive(Debug, Clone, Copy)]
pub struct ActivationRow<'a> {
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub sums: &'a [i32],
    /// `(d, d · Σq)` per 32-element block (empty for 256-element blocks).
    pub factors: &'a [[f32; 2]],
}

impl QuantizedActivations {
    /// An empty buffer, to be filled by [`QuantizedActivations::quantize`].
    pub fn new(blocks: ActivationBlocks) -> Self {
        QuantizedActivations {
            blocks,
            rows: 0,
            cols: 0,
            qs: Vec::new(),
            d: Vec::new(),
            sums: Vec::new(),
            factors: Vec::new(),
        }
    }

    /// Quantizes `x` (`rows × cols`, `cols` a multiple of the block length), reusing the
    /// buffers.
    pub fn quantize(&mut self, x: &[f32], rows: usize, cols: usize) {
        let bl = self.blocks.len();
        let group = self.blocks.sum_group();
        assert_eq!(x.len(), rows * cols, "activation size");
        assert!(cols.is_multiple_of(bl), "{cols} columns in blocks of {bl}");
        self.rows = rows;
        self.cols = cols;
        self.qs.resize(rows * cols, 0);
        self.d.resize(rows * cols / bl, 0.0);
        self.sums.resize(rows * cols / group, 0);
        if let Some(simd) = simd_quantizer() {
            // SAFETY: `simd_quantizer` names only what the CPU runs; the buffers were sized
            // above.
            unsafe { simd(x, bl, group, &mut self.qs, &mut self.d, &mut self.sums) };
            self.fill_factors();
            return;
        }
        for ((src, q), (d, sums)) in x.chunks_exact(bl).zip(self.qs.chunks_exact_mut(bl)).zip(
            self.d
                .iter_mut()
                .zip(self.sums.chunks_exact_mut(bl / group)),
        ) {
            *d = quantize_block(src, q);
            for (s, g) in sums.iter_mut().zip(q.chunks_exact(group)) {
                *s = g.iter().map(|&v| v as i32).sum();
            }
        }
        self.fill_factors();
    }

    fn fill_factors(&mut self) {
        self.factors.clear();
        if self.blocks == ActivationBlocks::B32 {
            self.factors.extend(
                self.d
                    .iter()
                    .zip(&self.sums)
                    .map(|(&d, &s)| [d, d * s as f32]),
            );
        }
    }

    pub fn row(&self, r: usize) -> ActivationRow<'_> {
        let bl = self.blocks.len();
        let group = self.blocks.sum_group();
        let c = self.cols;
        ActivationRow {
            qs: &self.qs[r * c..(r + 1) * c],
            d: &self.d[r * c / bl..(r + 1) * c / bl],
            sums: &self.sums[r * c / group..(r + 1) * c / group],
            factors: if self.factors.is_empty() {
                &[]
            } else {
                &self.factors[r * c / bl..(r + 1) * c / bl]
            },
        }
    }
}

/// The quantizer in SIMD for this CPU's instruction set, if it has one: `(x, block, group,
/// qs, d, sums)`, the values of `x` in blocks of `block` with the sums of each `group`,
/// as the portable loop in [`QuantizedActivations::quantize`] writes them.
type SimdQuantizer = unsafe fn(&[f32], usize, usize, &mut [i8], &mut [f32], &mut [i32]);

fn simd_quantizer() -> Option<SimdQuantizer> {
    let isa = super::Isa::detect();
    #[cfg(target_arch = "x86_64")]
    if isa.is_x86() {
        return Some(super::x86::quantize_blocks_avx2);
    }
    #[cfg(target_arch = "aarch64")]
    if isa != super::Isa::Scalar {
        return Some(super::neon::quantize_blocks_neon);
    }
    let _ = isa;
    None
}

/// Quantizes one block to `[-127, 127]` (round to nearest, ties to even) and returns its
/// scale (NaN when the block holds a NaN or an infinity: the product then shows it).
#[inline]
fn quantize_block(src: &[f32], q: &mut [i8]) -> f32 {
    let amax = src.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let nan = src.iter().any(|v| v.is_nan());
    if amax == 0.0 || !amax.is_finite() || nan {
        // all zeros, or a NaN/inf the product cannot represent: let it show as NaN
        q.fill(0);
        return if amax == 0.0 && !nan { 0.0 } else { f32::NAN };
    }
    let d = amax / 127.0;
    let id = 1.0 / d;
    for (q, &v) in q.iter_mut().zip(src) {
        *q = (v * id).round_ties_even() as i8;
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_to_nearest_and_keep_sums() {
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 20.0) * 0.1).collect();
        let mut a = QuantizedActivations::new(ActivationBlocks::B32);
        a.quantize(&x, 1, 64);
        for b in 0..2 {
            let d = a.d[b];
            let amax = x[32 * b..32 * b + 32]
                .iter()
                .fold(0.0f32, |m, v| m.max(v.abs()));
            assert!((d - amax / 127.0).abs() < 1e-7);
            for i in 0..32 {
                let err = (a.qs[32 * b + i] as f32 * d - x[32 * b + i]).abs();
                assert!(err <= d / 2.0 + 1e-6, "block {b} element {i}: {err}");
            }
            let sum: i32 = a.qs[32 * b..32 * b + 32].iter().map(|&v| v as i32).sum();
            assert_eq!(a.sums[b], sum);
        }
        let mut k = QuantizedActivations::new(ActivationBlocks::B256);
        let x: Vec<f32> = (0..512).map(|i| ((i * 7919) % 97) as f32 - 48.0).collect();
        k.quantize(&x, 2, 256);
        assert_eq!(k.d.len(), 2);
        assert_eq!(k.sums.len(), 32);
        let row = k.row(1);
        assert_eq!(row.qs.len(), 256);
        let s: i32 = row.qs[16..32].iter().map(|&v| v as i32).sum();
        assert_eq!(row.sums[1], s);
    }

    #[test]
    fn zero_and_non_finite_blocks() {
        let mut a = QuantizedActivations::new(ActivationBlocks::B32);
        let mut x = vec![0.0f32; 96];
        x[40] = f32::INFINITY;
        x[70] = f32::NAN;
        a.quantize(&x, 1, 96);
        assert_eq!(a.d[0], 0.0);
        assert!(a.d[1].is_nan());
        assert!(a.d[2].is_nan());
    }

    /// The SIMD quantizer (where the CPU has one) writes what the portable one does.
    #[test]
    fn simd_and_portable_quantizers_agree() {
        let mut rng = crate::random::Rng::new(5);
        let x: Vec<f32> = (0..3 * 512).map(|_| rng.normal(2.0)).collect();
        for blocks in [ActivationBlocks::B32, ActivationBlocks::B256] {
            let mut a = QuantizedActivations::new(blocks);
            a.quantize(&x, 3, 512);
            let bl = blocks.len();
            for (b, src) in x.chunks_exact(bl).enumerate() {
                let mut q = vec![0i8; bl];
                let d = quantize_block(src, &mut q);
                assert!((a.d[b] - d).abs() <= 1e-6 * d, "{blocks:?} block {b}");
                assert_eq!(&a.qs[b * bl..(b + 1) * bl], &q[..], "{blocks:?} block {b}");
            }
            let g = blocks.sum_group();
            for (k, s) in a.sums.iter().enumerate() {
                let want: i32 = a.qs[k * g..(k + 1) * g].iter().map(|&v| v as i32).sum();
                assert_eq!(*s, want);
            }
        }
    }
}

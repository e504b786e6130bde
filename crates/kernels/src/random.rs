//! Seeded random weights in every block format: unit tests, and the synthetic models of
//! real shapes that `penwright bench` measures speed and memory on (random weights say
//! nothing about quality, everything about bytes moved per token).

use crate::format::GgmlType;

/// A small seeded generator (splitmix64), so tests need no dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }

    /// Roughly normal (the sum of four uniforms), scaled.
    pub fn normal(&mut self, scale: f32) -> f32 {
        let s: f32 = (0..4).map(|_| self.uniform(-1.0, 1.0)).sum();
        s * scale * 0.866
    }
}

/// Offsets of the f16 scale fields in a block of `ty` (`block_*` in ggml-common.h).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 => &[0],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        _ => &[],
    }
}

/// `rows × cols` elements of `ty` as seeded random blocks: random quantized bits with
/// finite scales of realistic size (float types get normal values).
pub fn random_matrix(ty: GgmlType, rows: usize, cols: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ (ty.id() as u64) << 32);
    let n = rows * cols;
    match ty {
        GgmlType::F32 => (0..n)
            .flat_map(|_| rng.normal(0.05).to_le_bytes())
            .collect(),
        GgmlType::F16 => (0..n)
            .flat_map(|_| half::f16::from_f32(rng.normal(0.05)).to_le_bytes())
            .collect(),
        GgmlType::BF16 => (0..n)
            .flat_map(|_| half::bf16::from_f32(rng.normal(0.05)).to_le_bytes())
            .collect(),
        _ => {
            let (bs, ts) = (ty.block_size(), ty.type_size());
            let mut out = vec![0u8; n / bs * ts];
            for block in out.chunks_exact_mut(ts) {
                for b in block.iter_mut() {
                    *b = rng.next_u64() as u8;
                }
                for (i, &off) in f16_fields(ty).iter().enumerate() {
                    // d in [0.001, 0.01); a minimum (second field) in [0, 0.01)
                    let lo = if i == 0 { 0.001 } else { 0.0 };
                    let v = half::f16::from_f32(rng.uniform(lo, 0.01));
                    block[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
            out
        }
    }
}

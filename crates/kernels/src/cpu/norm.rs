//! Llama's RMSNorm and rotary position embedding, one pass a row each: burn's generic path
//! builds each of them from five to seven tensor operations (square, mean, add, sqrt,
//! divide, multiply; two narrows, a negation, a concatenation, two products and a sum), and
//! a decode step runs two norms and two rotations in each of 30 layers, where every
//! operation's allocation and dispatch costs more than its arithmetic.

use rayon::prelude::*;

/// Rows a thread takes at a time (a prompt's rows in parallel; a decode step's one inline).
const ROWS_PER_TASK: usize = 16;

/// `out = x / sqrt(mean(x²) + eps) · weight` for each row of `weight.len()` values of `x`.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let dim = weight.len();
    assert!(
        dim > 0 && x.len().is_multiple_of(dim),
        "rows of {dim} values"
    );
    assert_eq!(out.len(), x.len(), "one output a value");
    let norm = |(row, dst): (&[f32], &mut [f32])| {
        // eight partial sums: they vectorize
        let mut acc = [0.0f32; 8];
        let mut chunks = row.chunks_exact(8);
        for c in &mut chunks {
            for (a, v) in acc.iter_mut().zip(c) {
                *a += v * v;
            }
        }
        let tail: f32 = chunks.remainder().iter().map(|v| v * v).sum();
        let sum = acc.iter().sum::<f32>() + tail;
        let rms = (sum / dim as f32 + eps).sqrt();
        for ((o, &v), &w) in dst.iter_mut().zip(row).zip(weight) {
            *o = v / rms * w;
        }
    };
    if x.len() <= ROWS_PER_TASK * dim {
        x.chunks_exact(dim)
            .zip(out.chunks_exact_mut(dim))
            .for_each(norm);
    } else {
        x.par_chunks(ROWS_PER_TASK * dim)
            .zip(out.par_chunks_mut(ROWS_PER_TASK * dim))
            .for_each(|(x, out)| {
                x.chunks_exact(dim)
                    .zip(out.chunks_exact_mut(dim))
                    .for_each(norm)
            });
    }
}

/// Rotates each `head_dim` row of `x` (`[rows, head_dim]`, rows `seq`-major within each of
/// `rows / seq` heads: row `r` is position `r % seq`) by its position's angles: `out = x ·
/// cos + rotate_half(x) · sin`, where `rotate_half(x) = [-x₂, x₁]` of the two halves and
/// `cos`/`sin` are `[seq, head_dim]`.
pub fn rope(x: &[f32], seq: usize, cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let dim = cos.len() / seq.max(1);
    assert!(dim > 0 && dim.is_multiple_of(2), "an even head dimension");
    assert_eq!(cos.len(), seq * dim, "cos is [seq, head_dim]");
    assert_eq!(sin.len(), seq * dim, "sin is [seq, head_dim]");
    assert!(x.len().is_multiple_of(seq * dim), "rows of [seq, head_dim]");
    assert_eq!(out.len(), x.len(), "one output a value");
    let half = dim / 2;
    let rotate = |(r, (row, dst)): (usize, (&[f32], &mut [f32]))| {
        let p = r % seq;
        let (c, s) = (&cos[p * dim..(p + 1) * dim], &sin[p * dim..(p + 1) * dim]);
        let (x1, x2) = row.split_at(half);
        let (o1, o2) = dst.split_at_mut(half);
        for i in 0..half {
            o1[i] = x1[i] * c[i] + -x2[i] * s[i];
            o2[i] = x2[i] * c[half + i] + x1[i] * s[half + i];
        }
    };
    let rows = x.len() / dim;
    if rows <= 64 {
        x.chunks_exact(dim)
            .zip(out.chunks_exact_mut(dim))
            .enumerate()
            .for_each(rotate);
    } else {
        x.par_chunks(dim)
            .zip(out.par_chunks_mut(dim))
            .enumerate()
            .with_min_len(64)
            .for_each(rotate);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    #[test]
    fn rms_norm_matches_its_definition() {
        let mut rng = Rng::new(3);
        for (rows, dim) in [(1, 576), (3, 7), (40, 64)] {
            let x: Vec<f32> = (0..rows * dim).map(|_| rng.normal(2.0)).collect();
            let w: Vec<f32> = (0..dim).map(|_| rng.normal(1.0)).collect();
            let mut out = vec![0.0; x.len()];
            rms_norm(&x, &w, 1e-5, &mut out);
            for r in 0..rows {
                let row = &x[r * dim..(r + 1) * dim];
                let ms = row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / dim as f64;
                let rms = (ms + 1e-5).sqrt();
                for i in 0..dim {
                    let want = row[i] as f64 / rms * w[i] as f64;
                    let got = out[r * dim + i] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                        "{rows}x{dim} [{r},{i}]"
                    );
                }
            }
        }
    }

    #[test]
    fn rope_rotates_each_half_pair_by_its_position() {
        let mut rng = Rng::new(4);
        let (heads, seq, dim) = (3, 70, 8);
        let x: Vec<f32> = (0..heads * seq * dim).map(|_| rng.normal(1.0)).collect();
        let angle = |p: usize, i: usize| p as f32 * 0.1 * (i % (dim / 2) + 1) as f32;
        let cos: Vec<f32> = (0..seq * dim)
            .map(|k| angle(k / dim, k % dim).cos())
            .collect();
        let sin: Vec<f32> = (0..seq * dim)
            .map(|k| angle(k / dim, k % dim).sin())
            .collect();
        let mut out = vec![0.0; x.len()];
        rope(&x, seq, &cos, &sin, &mut out);
        let half = dim / 2;
        for r in 0..heads * seq {
            let p = r % seq;
            for i in 0..half {
                let (a, b) = (x[r * dim + i], x[r * dim + half + i]);
                let t = angle(p, i);
                let want = [a * t.cos() - b * t.sin(), b * t.cos() + a * t.sin()];
                let got = [out[r * dim + i], out[r * dim + half + i]];
                for k in 0..2 {
                    assert!((got[k] - want[k]).abs() < 1e-5, "row {r} pair {i}");
                }
            }
        }
    }
}

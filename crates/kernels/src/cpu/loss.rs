//! Cross-entropy over a vocabulary, one row at a time: the loss of fine-tuning without the
//! `[tokens, vocabulary]` temporaries of log-softmax and a gather (at 1020 tokens × 49 152
//! entries, each is 200 MB to fill and page in), and its gradient written in one pass.

use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use super::Isa;
use super::attention::exp;

/// `(max, Σ e^(x − max))` of one row.
fn max_and_sum(row: &[f32]) -> (f32, f32) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    #[cfg(target_arch = "x86_64")]
    if Isa::detect().is_x86() {
        // SAFETY: the CPU has AVX2 (and FMA), which `detect` checked
        return (max, unsafe { super::x86::sum_exp_avx2(row, max) });
    }
    (max, row.iter().map(|&x| exp(x - max)).sum())
}

/// Σ over rows of `logsumexp(row) − row[target]`: the summed negative log-likelihood of
/// `targets` under `logits` (`[targets.len(), vocab]`, row-major).
pub fn cross_entropy_sum(logits: &[f32], vocab: usize, targets: &[usize]) -> f64 {
    assert_eq!(
        logits.len(),
        vocab * targets.len(),
        "logits are [rows, vocab]"
    );
    logits
        .par_chunks(vocab)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let (max, sum) = max_and_sum(row);
            (max as f64 + (sum as f64).ln()) - row[t] as f64
        })
        .sum()
}

/// The gradient of `scale ·` [`cross_entropy_sum`] with respect to the logits:
/// `scale · (softmax(row) − onehot(target))` for each row, into `out`.
pub fn cross_entropy_grad(
    logits: &[f32],
    vocab: usize,
    targets: &[usize],
    scale: f32,
    out: &mut [f32],
) {
    assert_eq!(
        logits.len(),
        vocab * targets.len(),
        "logits are [rows, vocab]"
    );
    assert_eq!(out.len(), logits.len());
    out.par_chunks_mut(vocab)
        .zip(logits.par_chunks(vocab))
        .zip(targets.par_iter())
        .for_each(|((out, row), &t)| {
            let (max, sum) = max_and_sum(row);
            let k = scale / sum;
            #[cfg(target_arch = "x86_64")]
            if Isa::detect().is_x86() {
                // SAFETY: as in `max_and_sum`
                unsafe { super::x86::scaled_exp_avx2(row, max, k, out) };
                out[t] -= scale;
                return;
            }
            for (o, &x) in out.iter_mut().zip(row) {
                *o = exp(x - max) * k;
            }
            out[t] -= scale;
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::random::Rng;

    #[test]
    fn the_loss_and_its_gradient_match_log_softmax_in_f64() {
        let (rows, vocab) = (7, 1001);
        let mut rng = Rng::new(5);
        let logits: Vec<f32> = (0..rows * vocab).map(|_| rng.normal(4.0)).collect();
        let targets: Vec<usize> = (0..rows).map(|i| (i * 389) % vocab).collect();
        let mut expected_loss = 0.0f64;
        let mut expected_grad = vec![0.0f64; rows * vocab];
        let scale = 0.25;
        for (r, &t) in targets.iter().enumerate() {
            let row = &logits[r * vocab..][..vocab];
            let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
            let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
            expected_loss += max + sum.ln() - row[t] as f64;
            for (j, &x) in row.iter().enumerate() {
                expected_grad[r * vocab + j] = scale as f64 * (x as f64 - max).exp() / sum;
            }
            expected_grad[r * vocab + t] -= scale as f64;
        }
        let loss = cross_entropy_sum(&logits, vocab, &targets);
        assert!(
            (loss - expected_loss).abs() < 1e-5 * expected_loss.abs(),
            "{loss} vs {expected_loss}"
        );
        let mut grad = vec![f32::NAN; rows * vocab];
        cross_entropy_grad(&logits, vocab, &targets, scale, &mut grad);
        let worst = grad
            .iter()
            .zip(&expected_grad)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-7, "largest gradient error {worst}");
        // each row's gradient sums to zero (softmax sums to one)
        for row in grad.chunks(vocab) {
            assert!(row.iter().map(|&g| g as f64).sum::<f64>().abs() < 1e-6);
        }
    }
}

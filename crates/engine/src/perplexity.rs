//! Perplexity of a text under the model: consecutive non-overlapping windows of `ctx` tokens,
//! every token but the first of each window scored from the tokens before it in its window.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use crate::model::LanguageModel;
use crate::{EngineError, Result};

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct PerplexityReport {
    /// Tokens scored.
    pub tokens: usize,
    /// Mean negative log-likelihood per scored token (nats).
    pub nll: f64,
    pub perplexity: f64,
}

/// Sum of the negative log-likelihoods of `ids[1..]` given their prefixes, one sequence.
pub fn sequence_nll(model: &LanguageModel, ids: &[u32]) -> Result<f64> {
    let n = ids.len();
    if n < 2 {
        return Ok(0.0);
    }
    let device = model.device();
    let input = Tensor::<2, Int>::from_data(
        TensorData::new(
            ids[..n - 1].iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, n - 1],
        ),
        device,
    );
    let targets = Tensor::<3, Int>::from_data(
        TensorData::new(
            ids[1..].iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, n - 1, 1],
        ),
        device,
    );
    let logp = log_softmax(model.forward(input), 2).gather(2, targets);
    let values = logp
        .into_data()
        .try_into_vec::<f32>()
        .map_err(|e| EngineError::Device(format!("{e:?}")))?;
    Ok(-values.iter().map(|&v| v as f64).sum::<f64>())
}

/// Scores `ids` in windows of `ctx` tokens; `progress(done, total)` per window.
pub fn perplexity(
    model: &LanguageModel,
    ids: &[u32],
    ctx: usize,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<PerplexityReport> {
    if ctx < 2 {
        return Err(EngineError::Other("--ctx must be at least 2".into()));
    }
    let ctx = ctx.min(model.config.max_position_embeddings);
    let windows: Vec<&[u32]> = ids.chunks(ctx).filter(|w| w.len() >= 2).collect();
    if windows.is_empty() {
        return Err(EngineError::Other(
            "the text has fewer than 2 tokens to score".into(),
        ));
    }
    let (mut nll, mut count) = (0.0, 0);
    for (i, w) in windows.iter().enumerate() {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        progress(i, windows.len());
        nll += sequence_nll(model, w)?;
        count += w.len() - 1;
    }
    progress(windows.len(), windows.len());
    let mean = nll / count as f64;
    Ok(PerplexityReport {
        tokens: count,
        nll: mean,
        perplexity: mean.exp(),
    })
}

//! The generation loop: prefill (reusing the cached prefix), then token-by-token decode with
//! a sampler, stop tokens and stop strings, streaming text that never splits a character,
//! and cancellation between any two tokens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::model::{KvCache, LanguageModel};
use crate::sampler::{Sampler, SamplerConfig};
use crate::tokenizer::Tokenizer;
use crate::{EngineError, Result};

/// Prompts longer than this are prefilled in chunks (bounded memory, cancellable).
pub const PREFILL_CHUNK: usize = 512;

#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Generation ends before any of these strings; they are not part of the text.
    pub stop_strings: Vec<String>,
    /// Token ids that end generation, besides the tokenizer's own end-of-text/turn tokens.
    pub stop_ids: Vec<u32>,
}

impl GenerateRequest {
    pub fn new(prompt_ids: Vec<u32>, max_tokens: usize) -> Self {
        GenerateRequest {
            prompt_ids,
            max_tokens,
            sampler: SamplerConfig::default(),
            stop_strings: Vec::new(),
            stop_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    MaxTokens,
    StopToken,
    StopString,
    ContextFull,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose keys/values were already in the cache.
    pub reused_tokens: usize,
    pub prefilled_tokens: usize,
    pub generated_tokens: usize,
    /// Request start to the first generated token.
    pub ttft_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    pub prefill_tok_s: f64,
    pub decode_tok_s: f64,
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub tokens: Vec<u32>,
    pub stop: StopReason,
    pub stats: GenerationStats,
}

/// Length of the common prefix of two token sequences.
pub fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Feeds `prompt` into `cache`, reusing the longest cached prefix, and returns the logits of
/// the last prompt position with the number of reused tokens.
pub fn prefill(
    model: &LanguageModel,
    cache: &mut KvCache,
    prompt: &[u32],
    cancel: &AtomicBool,
) -> Result<(Vec<f32>, usize)> {
    if prompt.is_empty() {
        return Err(EngineError::Other("empty prompt".into()));
    }
    if prompt.len() > cache.capacity() {
        return Err(EngineError::ContextOverflow {
            tokens: prompt.len(),
            context: cache.capacity(),
        });
    }
    // At least the last token is fed again: its logits are what we need.
    let reused = common_prefix(cache.tokens(), prompt).min(prompt.len() - 1);
    cache.truncate(reused);
    let rest = &prompt[reused..];
    // The last token goes through the model on its own, as it does when the rest of the
    // prompt is already cached: the same prompt then gets the same logits (and a greedy
    // answer the same text) whatever the cache held before.
    let (body, last) = rest.split_at(rest.len() - 1);
    for chunk in body.chunks(PREFILL_CHUNK) {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        model.forward_cached(chunk, cache, false)?;
    }
    if cancel.load(Ordering::Relaxed) {
        return Err(EngineError::Cancelled);
    }
    let logits = LanguageModel::to_rows(model.forward_cached(last, cache, false)?)?
        .pop()
        .expect("one row");
    Ok((logits, reused))
}

/// Feeds one generated token and returns the logits of the next position: the decode step
/// of every generation loop (this one and autocomplete's).
pub fn decode_step(model: &LanguageModel, cache: &mut KvCache, token: u32) -> Result<Vec<f32>> {
    let out = model.forward_cached(&[token], cache, false)?;
    Ok(LanguageModel::to_rows(out)?.pop().expect("one row"))
}

/// Holds back streamed text that could still turn into a stop string.
struct StopMatcher<'a> {
    stops: &'a [String],
}

impl StopMatcher<'_> {
    /// Byte index where a stop string starts in `text`, if any.
    fn find(&self, text: &str) -> Option<usize> {
        self.stops
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
    }

    /// How many trailing bytes of `text` are a proper prefix of some stop string.
    fn pending(&self, text: &str) -> usize {
        let mut hold = 0;
        for s in self.stops {
            for (i, _) in s.char_indices().skip(1) {
                if text.ends_with(&s[..i]) {
                    hold = hold.max(i);
                }
            }
        }
        hold
    }
}

/// Generates a continuation of `req.prompt_ids`. `on_text` receives each new piece of text
/// as soon as it is final.
pub fn generate(
    model: &LanguageModel,
    tokenizer: &Tokenizer,
    cache: &mut KvCache,
    req: &GenerateRequest,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let start = Instant::now();
    let (mut logits, reused) = prefill(model, cache, &req.prompt_ids, cancel)?;
    let prefill_ms = start.elapsed().as_secs_f64() * 1e3;
    let mut stats = GenerationStats {
        prompt_tokens: req.prompt_ids.len(),
        reused_tokens: reused,
        prefilled_tokens: req.prompt_ids.len() - reused,
        prefill_ms,
        prefill_tok_s: (req.prompt_ids.len() - reused) as f64 / (prefill_ms / 1e3).max(1e-9),
        ..Default::default()
    };
    let mut stop_ids = tokenizer.stop_ids();
    stop_ids.extend(&req.stop_ids);
    let matcher = StopMatcher {
        stops: &req.stop_strings,
    };
    let mut sampler = Sampler::new(req.sampler.clone());
    let mut history = req.prompt_ids.clone();
    let mut decoder = tokenizer.decode_stream(true);
    let mut text = String::new();
    let mut emitted = 0;
    let mut tokens = Vec::new();
    let decode_start = Instant::now();
    let stop = loop {
        if cancel.load(Ordering::Relaxed) {
            return Err(EngineError::Cancelled);
        }
        if tokens.len() >= req.max_tokens {
            break StopReason::MaxTokens;
        }
        let next = sampler.sample(&logits, &history);
        if tokens.is_empty() {
            stats.ttft_ms = start.elapsed().as_secs_f64() * 1e3;
        }
        if stop_ids.contains(&next) {
            break StopReason::StopToken;
        }
        tokens.push(next);
        history.push(next);
        if let Some(piece) = decoder.step(next)? {
            text.push_str(&piece);
        }
        if let Some(at) = matcher.find(&text) {
            text.truncate(at);
            if at > emitted {
                on_text(&text[emitted..]);
            }
            emitted = text.len();
            break StopReason::StopString;
        }
        let safe = text.len() - matcher.pending(&text);
        if safe > emitted {
            on_text(&text[emitted..safe]);
            emitted = safe;
        }
        if tokens.len() >= req.max_tokens {
            break StopReason::MaxTokens;
        }
        if cache.len() >= cache.capacity() {
            break StopReason::ContextFull;
        }
        logits = decode_step(model, cache, next)?;
    };
    if emitted < text.len() {
        on_text(&text[emitted..]);
    }
    let decode_ms = decode_start.elapsed().as_secs_f64() * 1e3;
    stats.generated_tokens = tokens.len();
    stats.decode_ms = decode_ms;
    stats.decode_tok_s = tokens.len().saturating_sub(1) as f64 / (decode_ms / 1e3).max(1e-9);
    if tokens.is_empty() {
        stats.ttft_ms = start.elapsed().as_secs_f64() * 1e3;
    }
    Ok(Generation {
        text,
        tokens,
        stop,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_matcher_holds_back_partial_stop_strings() {
        let stops = vec!["\n\n".to_string(), "User:".to_string()];
        let m = StopMatcher { stops: &stops };
        assert_eq!(m.pending("Hello\n"), 1);
        assert_eq!(m.pending("Hello Us"), 2);
        assert_eq!(m.pending("Hello"), 0);
        assert_eq!(m.find("a\n\nb"), Some(1));
        assert_eq!(m.find("say User: hi"), Some(4));
    }

    #[test]
    fn common_prefix_counts_equal_leading_tokens() {
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 4]), 2);
        assert_eq!(common_prefix(&[], &[1]), 0);
        assert_eq!(common_prefix(&[1, 2], &[1, 2]), 2);
    }
}

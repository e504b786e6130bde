//! `penwright bench`: the numbers that say whether Penwright keeps up with a writer.

pub mod synthetic;

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use crate::generate::{GenerateRequest, generate, prefill};
use crate::loader::LoadedModel;
use crate::model::{KvCache, LanguageModel};
use crate::sampler::argmax;
use crate::tasks::autocomplete::{AutocompleteSession, AutocompleteSettings};
use crate::{EngineError, Result};

#[derive(Debug, Clone, serde::Serialize)]
pub struct BenchReport {
    pub model: String,
    pub device: String,
    pub load_seconds: f64,
    /// Prefill throughput on a 512-token prompt.
    pub prefill_tok_s: f64,
    /// Decode throughput over 128 generated tokens.
    pub decode_tok_s: f64,
    /// Decode throughput of the median step of those 128 (on a machine shared with noisy
    /// neighbours, the steady speed: a stall of a few steps moves the mean, not this).
    pub decode_median_tok_s: f64,
    /// Autocomplete: 256-token prompt, 16 new tokens, cold cache.
    pub autocomplete_ttft_ms: f64,
    pub autocomplete_total_ms: f64,
    /// Autocomplete inside a ~2,000-token document: first request (cold cache) and the next
    /// keystroke's request (warm cache, prefix reused).
    pub doc_tokens: usize,
    pub doc_cold_ttft_ms: f64,
    pub doc_warm_ttft_ms: f64,
    pub doc_warm_reused_tokens: usize,
    /// Peak resident memory of the process (VmHWM).
    pub peak_rss_mb: f64,
}

/// Tokens of a natural text long enough for the benchmark prompts.
fn bench_tokens(loaded: &LoadedModel, n: usize) -> Result<Vec<u32>> {
    let paragraph = "It is a truth universally acknowledged, that a single man in possession of a good \
        fortune, must be in want of a wife. However little known the feelings or views of such a man \
        may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the \
        surrounding families, that he is considered the rightful property of some one or other of \
        their daughters. ";
    let text = paragraph.repeat(n / 40 + 2);
    let mut ids = loaded.tokenizer()?.encode(&text, false)?;
    if ids.len() < n {
        return Err(EngineError::Other("benchmark text too short".into()));
    }
    ids.truncate(n);
    Ok(ids)
}

pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

pub fn run(loaded: &LoadedModel) -> Result<BenchReport> {
    let model = &loaded.model;
    let tokenizer = loaded.tokenizer()?;
    let cancel = AtomicBool::new(false);
    let prompt = bench_tokens(loaded, 512)?;
    // warm-up (kernel selection, allocator), not measured
    let mut cache = model.new_cache(1024);
    prefill(model, &mut cache, &prompt[..64], &cancel)?;

    cache.clear();
    let t = Instant::now();
    prefill(model, &mut cache, &prompt, &cancel)?;
    let prefill_tok_s = prompt.len() as f64 / t.elapsed().as_secs_f64();

    cache.clear();
    let (decode_tok_s, decode_median_tok_s) =
        decode_throughput(model, &mut cache, &prompt[..32], 128, &cancel)?;

    cache.clear();
    let t = Instant::now();
    let ac = generate(
        model,
        tokenizer,
        &mut cache,
        &GenerateRequest::new(prompt[..256].to_vec(), 16),
        &cancel,
        &mut |_| {},
    )?;
    let autocomplete_total_ms = t.elapsed().as_secs_f64() * 1e3;
    // the document's session has a cache of its own: one at a time, as the app holds them
    drop(cache);

    let doc_ids = bench_tokens(loaded, 2000)?;
    let doc = tokenizer.decode(&doc_ids, true)?;
    let settings = AutocompleteSettings::default();
    let mut session = AutocompleteSession::new(model, &settings);
    let cold = session.complete(model, tokenizer, &doc, "", &settings, &cancel)?;
    let warm = session.complete(
        model,
        tokenizer,
        &format!("{doc} Mr"),
        "",
        &settings,
        &cancel,
    )?;

    Ok(BenchReport {
        model: loaded.info.name.clone(),
        device: loaded.device.name.clone(),
        load_seconds: loaded.load_seconds,
        prefill_tok_s,
        decode_tok_s,
        decode_median_tok_s,
        autocomplete_ttft_ms: ac.stats.ttft_ms,
        autocomplete_total_ms,
        doc_tokens: doc_ids.len(),
        doc_cold_ttft_ms: cold.ttft_ms,
        doc_warm_ttft_ms: warm.ttft_ms,
        doc_warm_reused_tokens: warm.reused_tokens,
        peak_rss_mb: peak_rss_mb(),
    })
}

/// Decodes exactly `n` tokens greedily after `prompt`, ignoring end-of-text; returns the
/// throughput over all `n` and that of the median step, in tok/s.
fn decode_throughput(
    model: &LanguageModel,
    cache: &mut KvCache,
    prompt: &[u32],
    n: usize,
    cancel: &AtomicBool,
) -> Result<(f64, f64)> {
    let (mut logits, _) = prefill(model, cache, prompt, cancel)?;
    let t = Instant::now();
    let mut steps = Vec::with_capacity(n);
    for _ in 0..n {
        let step = Instant::now();
        let next = argmax(&logits);
        let out = model.forward_cached(&[next], cache, false)?;
        logits = LanguageModel::to_rows(out)?.pop().expect("one row");
        steps.push(step.elapsed().as_secs_f64());
    }
    let mean = n as f64 / t.elapsed().as_secs_f64();
    steps.sort_by(f64::total_cmp);
    let median = steps.get(n / 2).map_or(0.0, |s| 1.0 / s);
    Ok((mean, median))
}

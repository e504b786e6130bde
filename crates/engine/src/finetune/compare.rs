//! What fine-tuning changed, in words: the base model's and the tuned model's continuations
//! of the same held-out passage, greedy, side by side with the perplexities.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::Result;
use crate::device::SelectedDevice;
use crate::generate::{GenerateRequest, generate};
use crate::loader::{LoadedModel, load_model};
use crate::sampler::SamplerConfig;

/// The passage's opening as the prompt, and how each model goes on.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Comparison {
    pub prompt: String,
    pub base: String,
    pub tuned: String,
}

/// Tokens of the held-out passage given as the prompt.
pub const PROMPT_TOKENS: usize = 48;
/// Tokens each model writes.
pub const CONTINUATION_TOKENS: usize = 48;

/// Continues `passage` (a held-out sequence; its first [`PROMPT_TOKENS`]) with the base model
/// at `model_path`, then with the adapter in `adapter_dir` merged into it.
pub fn compare(
    model_path: &Path,
    adapter_dir: &Path,
    device: SelectedDevice,
    passage: &[u32],
) -> Result<Comparison> {
    let prompt_ids = passage[..passage.len().min(PROMPT_TOKENS)].to_vec();
    let mut loaded = load_model(model_path, device, &mut |_| {})?;
    let prompt = loaded.tokenizer()?.decode(&prompt_ids, true)?;
    let base = continuation(&loaded, &prompt_ids)?;
    let adapter = crate::lora::Adapter::open(adapter_dir)?;
    crate::lora::apply_adapter(&mut loaded.model, &adapter)?;
    let tuned = continuation(&loaded, &prompt_ids)?;
    Ok(Comparison {
        prompt,
        base,
        tuned,
    })
}

fn continuation(loaded: &LoadedModel, prompt_ids: &[u32]) -> Result<String> {
    let mut cache = loaded
        .model
        .new_cache(prompt_ids.len() + CONTINUATION_TOKENS + 1);
    let mut req = GenerateRequest::new(prompt_ids.to_vec(), CONTINUATION_TOKENS);
    req.sampler = SamplerConfig {
        temperature: 0.0,
        repetition_penalty: 1.1,
        ..SamplerConfig::default()
    };
    let out = generate(
        &loaded.model,
        loaded.tokenizer()?,
        &mut cache,
        &req,
        &AtomicBool::new(false),
        &mut |_| {},
    )?;
    Ok(out.text)
}

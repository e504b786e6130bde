//! What an adapter trained elsewhere (a cluster trainer's run on `finetune export`'s data)
//! does to held-out perplexity: the base model and the base with the adapter merged score
//! the same held-out text, and the figures are kept beside the adapter so the list shows
//! base → tuned as it does for Penwright's own runs.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::device::SelectedDevice;
use crate::loader::load_model;
use crate::perplexity::perplexity;
use crate::{EngineError, Result};

/// The file beside an adapter that holds its measured perplexities.
pub const MEASURED_FILE: &str = "measured.json";

/// Window of the perplexity (tokens each prediction may look back over at most).
pub const WINDOW: usize = 512;

/// Held-out perplexity without and with an adapter.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdapterPerplexity {
    pub base_ppl: f64,
    pub tuned_ppl: f64,
    /// Tokens scored (each model scores the same ones).
    pub tokens: usize,
}

/// What a measurement reports on its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasureProgress {
    /// "base" or "tuned".
    pub model: &'static str,
    pub done: usize,
    pub total: usize,
}

/// The held-out texts under `paths`: `.jsonl` files as `finetune export` writes them (one
/// `{"text": ...}` a line, e.g. its `heldout.jsonl`), and documents of every kind training
/// reads.
pub fn read_heldout(paths: &[PathBuf]) -> Result<Vec<String>> {
    let (jsonl, documents): (Vec<PathBuf>, Vec<PathBuf>) = paths.iter().cloned().partition(|p| {
        p.extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
    });
    let mut texts = Vec::new();
    for path in &jsonl {
        let size = std::fs::metadata(path)
            .map_err(|e| EngineError::io(path, e))?
            .len();
        if size > super::dataset::MAX_IMPORT_TEXT_BYTES as u64 {
            return Err(EngineError::InvalidRequest(format!(
                "{}: over {} MB",
                path.display(),
                super::dataset::MAX_IMPORT_TEXT_BYTES >> 20
            )));
        }
        let raw = crate::documents::read_document(path)?;
        for (n, line) in raw
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| {
                EngineError::InvalidRequest(format!("{} line {}: {e}", path.display(), n + 1))
            })?;
            let text = value["text"].as_str().ok_or_else(|| {
                EngineError::InvalidRequest(format!(
                    "{} line {}: no \"text\" string",
                    path.display(),
                    n + 1
                ))
            })?;
            texts.push(super::dataset::normalize(text));
        }
    }
    if !documents.is_empty() {
        let (docs, _skipped, _duplicates) = super::dataset::import(&documents);
        texts.extend(docs.into_iter().map(|d| d.text));
    }
    texts.retain(|t| !t.is_empty());
    if texts.is_empty() {
        return Err(EngineError::InvalidRequest(
            "no held-out text in what was given".into(),
        ));
    }
    Ok(texts)
}

/// Scores `texts` (at most `max_tokens` of them, 0: all) with the model at `model_path`,
/// then with `adapter_dir` merged into it, and keeps the result beside the adapter.
pub fn measure_adapter(
    model_path: &Path,
    adapter_dir: &Path,
    device: SelectedDevice,
    texts: &[String],
    max_tokens: usize,
    cancel: &AtomicBool,
    progress: &mut dyn FnMut(MeasureProgress),
) -> Result<AdapterPerplexity> {
    // the adapter first: a bad one fails before the model loads
    let adapter = crate::lora::Adapter::open(adapter_dir)?;
    let mut loaded = load_model(model_path, device, &mut |_| {})?;
    let tokenizer = loaded.tokenizer()?;
    let mut ids = Vec::new();
    for text in texts {
        ids.extend(tokenizer.encode_with_bos(text, false)?);
        if let Some(eos) = tokenizer.eos_id() {
            ids.push(eos);
        }
        if max_tokens > 0 && ids.len() >= max_tokens {
            ids.truncate(max_tokens);
            break;
        }
    }
    let base = perplexity(&loaded.model, &ids, WINDOW, cancel, &mut |done, total| {
        progress(MeasureProgress {
            model: "base",
            done,
            total,
        })
    })?;
    crate::lora::apply_adapter(&mut loaded.model, &adapter)?;
    let tuned = perplexity(&loaded.model, &ids, WINDOW, cancel, &mut |done, total| {
        progress(MeasureProgress {
            model: "tuned",
            done,
            total,
        })
    })?;
    let measured = AdapterPerplexity {
        base_ppl: base.perplexity,
        tuned_ppl: tuned.perplexity,
        tokens: tuned.tokens,
    };
    let file = adapter_dir.join(MEASURED_FILE);
    let json = serde_json::to_vec_pretty(&measured).expect("plain numbers");
    crate::fs::atomic_write(&file, &json)?;
    Ok(measured)
}

/// The perplexities measured for the adapter in `adapter_dir`, if they were.
pub fn measured(adapter_dir: &Path) -> Option<AdapterPerplexity> {
    let raw = std::fs::read(adapter_dir.join(MEASURED_FILE)).ok()?;
    serde_json::from_slice(&raw).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heldout_text_comes_from_exported_jsonl_and_from_documents() {
        let dir = tempfile::tempdir().unwrap();
        let jsonl = dir.path().join("heldout.jsonl");
        std::fs::write(
            &jsonl,
            "{\"text\": \"First held-out document.\"}\n\n{\"text\": \"Second one.\"}\n",
        )
        .unwrap();
        let doc = dir.path().join("notes.md");
        std::fs::write(&doc, "A third, as a Markdown file.").unwrap();
        let texts = read_heldout(&[jsonl.clone(), doc]).unwrap();
        assert_eq!(
            texts,
            [
                "First held-out document.",
                "Second one.",
                "A third, as a Markdown file."
            ]
        );
        // a line that is not an export's is named
        std::fs::write(&jsonl, "{\"text\": \"fine\"}\n{\"body\": 3}\n").unwrap();
        let err = read_heldout(std::slice::from_ref(&jsonl))
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2") && err.contains("text"), "{err}");
        std::fs::write(&jsonl, "").unwrap();
        assert!(read_heldout(&[jsonl]).is_err());
    }
}

//! Model hyper-parameters, read from a Hugging Face `config.json` or from GGUF metadata.

use std::path::Path;

use serde::Deserialize;

use crate::gguf::GgufFile;
use crate::{EngineError, Result};

/// The decoder-only architectures Penwright runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama family: Llama 2/3, SmolLM, TinyLlama, Mistral-style models.
    Llama,
    /// Qwen2 / Qwen2.5: the Llama shape plus q/k/v biases.
    Qwen2,
    /// GPT-2: learned positions, LayerNorm, GELU, fused `c_attn`.
    Gpt2,
}

impl Architecture {
    /// Names accepted in `config.json` (`model_type`) and GGUF (`general.architecture`).
    pub const SUPPORTED: [&'static str; 4] = ["llama", "mistral", "qwen2", "gpt2"];

    pub fn from_name(name: &str) -> Result<Self> {
        match name {
            "llama" | "mistral" => Ok(Architecture::Llama),
            "qwen2" => Ok(Architecture::Qwen2),
            "gpt2" => Ok(Architecture::Gpt2),
            other => Err(EngineError::UnsupportedArchitecture {
                found: other.to_string(),
                supported: Self::SUPPORTED.to_vec(),
            }),
        }
    }

    /// Positions are rotary (RoPE) rather than learned embeddings.
    pub fn uses_rope(self) -> bool {
        match self {
            Architecture::Llama | Architecture::Qwen2 => true,
            Architecture::Gpt2 => false,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gpt2 => "gpt2",
        }
    }
}

/// Llama-3 style frequency-dependent RoPE scaling.
#[derive(Debug, Clone, PartialEq)]
pub struct Llama3RopeScaling {
    pub factor: f64,
    pub low_freq_factor: f64,
    pub high_freq_factor: f64,
    pub original_max_position_embeddings: usize,
}

/// Everything the model code needs to know about shapes and numerics.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Longest sequence the model was trained for (and the KV cache's capacity ceiling).
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Per-frequency RoPE divisors stored in a GGUF (`rope_freqs.weight`), used instead of
    /// `rope_scaling` when present.
    pub rope_freq_factors: Option<Vec<f32>>,
    pub tie_word_embeddings: bool,
    /// q/k/v projections carry biases (Qwen2).
    pub attention_bias: bool,
}

#[derive(Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    architectures: Option<Vec<String>>,
    vocab_size: Option<usize>,
    // Llama / Qwen2 names
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    max_position_embeddings: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    // GPT-2 names
    n_embd: Option<usize>,
    n_layer: Option<usize>,
    n_head: Option<usize>,
    n_inner: Option<usize>,
    n_positions: Option<usize>,
    layer_norm_epsilon: Option<f64>,
}

fn need<T>(value: Option<T>, key: &str, path: &Path) -> Result<T> {
    value.ok_or_else(|| EngineError::Config(format!("{}: `{key}` is missing", path.display())))
}

/// Bounds on a model's shape, far above any real decoder-only model and low enough that
/// nothing derived from them overflows or asks for memory without end (a hostile header
/// claiming 2^40 layers is refused before anything is allocated).
pub const MAX_VOCAB: usize = 1 << 22;
pub const MAX_HIDDEN: usize = 1 << 16;
pub const MAX_INTERMEDIATE: usize = 1 << 20;
pub const MAX_LAYERS: usize = 1024;
pub const MAX_HEADS: usize = 1024;
pub const MAX_HEAD_DIM: usize = 1024;
pub const MAX_CONTEXT: usize = 1 << 22;

/// The size of one head, 0 (refused by validation) when there are no heads.
fn per_head(hidden: usize, heads: usize) -> usize {
    hidden.checked_div(heads).unwrap_or(0)
}

impl ModelConfig {
    /// Reads a Hugging Face `config.json`.
    pub fn from_hf_json(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        Self::from_hf_str(&text, path)
    }

    pub fn from_hf_str(text: &str, path: &Path) -> Result<Self> {
        let c: HfConfig = serde_json::from_str(text)
            .map_err(|e| EngineError::Config(format!("{}: {e}", path.display())))?;
        let model_type = match (&c.model_type, &c.architectures) {
            (Some(t), _) => t.clone(),
            (None, Some(a)) if !a.is_empty() => a[0].to_lowercase(),
            _ => need(None::<String>, "model_type", path)?,
        };
        let architecture = Architecture::from_name(&model_type)?;
        let config = match architecture {
            Architecture::Gpt2 => {
                let hidden = need(c.n_embd, "n_embd", path)?;
                let heads = need(c.n_head, "n_head", path)?;
                ModelConfig {
                    architecture,
                    vocab_size: need(c.vocab_size, "vocab_size", path)?,
                    hidden_size: hidden,
                    intermediate_size: c.n_inner.unwrap_or(hidden.saturating_mul(4)),
                    num_layers: need(c.n_layer, "n_layer", path)?,
                    num_heads: heads,
                    num_kv_heads: heads,
                    head_dim: per_head(hidden, heads),
                    max_position_embeddings: need(c.n_positions, "n_positions", path)?,
                    norm_eps: c.layer_norm_epsilon.unwrap_or(1e-5),
                    rope_theta: 0.0,
                    rope_scaling: None,
                    rope_freq_factors: None,
                    tie_word_embeddings: true,
                    attention_bias: true,
                }
            }
            Architecture::Llama | Architecture::Qwen2 => {
                let hidden = need(c.hidden_size, "hidden_size", path)?;
                let heads = need(c.num_attention_heads, "num_attention_heads", path)?;
                ModelConfig {
                    architecture,
                    vocab_size: need(c.vocab_size, "vocab_size", path)?,
                    hidden_size: hidden,
                    intermediate_size: need(c.intermediate_size, "intermediate_size", path)?,
                    num_layers: need(c.num_hidden_layers, "num_hidden_layers", path)?,
                    num_heads: heads,
                    num_kv_heads: c.num_key_value_heads.unwrap_or(heads),
                    head_dim: c.head_dim.unwrap_or(per_head(hidden, heads)),
                    max_position_embeddings: c.max_position_embeddings.unwrap_or(2048),
                    norm_eps: c.rms_norm_eps.unwrap_or(1e-6),
                    rope_theta: c.rope_theta.unwrap_or(10_000.0),
                    rope_scaling: parse_rope_scaling(c.rope_scaling.as_ref(), path)?,
                    rope_freq_factors: None,
                    tie_word_embeddings: c.tie_word_embeddings.unwrap_or(false),
                    attention_bias: c
                        .attention_bias
                        .unwrap_or(architecture == Architecture::Qwen2),
                }
            }
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Reads the `<arch>.*` keys of a GGUF file.
    pub fn from_gguf(file: &GgufFile) -> Result<Self> {
        let arch_name = file.architecture()?.to_string();
        let architecture = Architecture::from_name(&arch_name)?;
        let key = |k: &str| format!("{arch_name}.{k}");
        let u = |k: &str| -> Result<usize> { Ok(file.require_u64(&key(k))? as usize) };
        let hidden = u("embedding_length")?;
        let heads = u("attention.head_count")?;
        let vocab_size = match file.get_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => file
                .get_str_array("tokenizer.ggml.tokens")
                .map(|t| t.len())
                .or_else(|| file.tensor_info("token_embd.weight").map(|t| t.shape()[0]))
                .ok_or_else(|| EngineError::MissingMetadata {
                    path: file.path.clone(),
                    key: key("vocab_size"),
                })?,
        };
        let tie_word_embeddings = file.tensor_info("output.weight").is_none();
        let config = match architecture {
            Architecture::Gpt2 => ModelConfig {
                architecture,
                vocab_size,
                hidden_size: hidden,
                intermediate_size: file
                    .get_u64(&key("feed_forward_length"))
                    .map(|v| v as usize)
                    .unwrap_or(hidden.saturating_mul(4)),
                num_layers: u("block_count")?,
                num_heads: heads,
                num_kv_heads: heads,
                head_dim: per_head(hidden, heads),
                max_position_embeddings: u("context_length")?,
                norm_eps: file
                    .get_f32(&key("attention.layer_norm_epsilon"))
                    .unwrap_or(1e-5) as f64,
                rope_theta: 0.0,
                rope_scaling: None,
                rope_freq_factors: None,
                tie_word_embeddings,
                attention_bias: true,
            },
            Architecture::Llama | Architecture::Qwen2 => {
                let head_dim = file
                    .get_u64(&key("attention.key_length"))
                    .or_else(|| file.get_u64(&key("rope.dimension_count")))
                    .map(|v| v as usize)
                    .unwrap_or(per_head(hidden, heads));
                let rope_freq_factors = match file.tensor_info("rope_freqs.weight") {
                    Some(_) => Some(file.tensor_f32("rope_freqs.weight")?.0),
                    None => None,
                };
                ModelConfig {
                    architecture,
                    vocab_size,
                    hidden_size: hidden,
                    intermediate_size: u("feed_forward_length")?,
                    num_layers: u("block_count")?,
                    num_heads: heads,
                    num_kv_heads: file
                        .get_u64(&key("attention.head_count_kv"))
                        .map(|v| v as usize)
                        .unwrap_or(heads),
                    head_dim,
                    max_position_embeddings: u("context_length")?,
                    norm_eps: file
                        .get_f32(&key("attention.layer_norm_rms_epsilon"))
                        .unwrap_or(1e-6) as f64,
                    rope_theta: file.get_f32(&key("rope.freq_base")).unwrap_or(10_000.0) as f64,
                    rope_scaling: None,
                    rope_freq_factors,
                    tie_word_embeddings,
                    attention_bias: architecture == Architecture::Qwen2,
                }
            }
        };
        config.validate(&file.path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let bad = |what: String| Err(EngineError::Config(format!("{}: {what}", path.display())));
        // checked first: every size derived below (parameter counts, cache and buffer
        // sizes) then fits in a usize
        for (field, value, limit) in [
            ("vocabulary size", self.vocab_size, MAX_VOCAB),
            ("hidden size", self.hidden_size, MAX_HIDDEN),
            (
                "feed-forward size",
                self.intermediate_size,
                MAX_INTERMEDIATE,
            ),
            ("layer count", self.num_layers, MAX_LAYERS),
            ("attention head count", self.num_heads, MAX_HEADS),
            ("key/value head count", self.num_kv_heads, MAX_HEADS),
            ("head size", self.head_dim, MAX_HEAD_DIM),
            ("context length", self.max_position_embeddings, MAX_CONTEXT),
        ] {
            if value > limit {
                return bad(format!(
                    "the {field} is {value}, above Penwright's limit of {limit}"
                ));
            }
        }
        if self.num_heads == 0 || self.num_kv_heads == 0 || self.head_dim == 0 {
            return bad("zero attention heads or head size".into());
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return bad(format!(
                "{} attention heads cannot be grouped over {} key/value heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.architecture != Architecture::Gpt2 && !self.head_dim.is_multiple_of(2) {
            return bad(format!(
                "RoPE needs an even head size, got {}",
                self.head_dim
            ));
        }
        if self.vocab_size == 0 || self.hidden_size == 0 || self.num_layers == 0 {
            return bad("empty model (zero vocabulary, width or depth)".into());
        }
        Ok(())
    }

    /// Parameter count, tied embeddings counted once.
    pub fn parameter_count(&self) -> usize {
        let (h, i, v) = (self.hidden_size, self.intermediate_size, self.vocab_size);
        let q = self.num_heads * self.head_dim;
        let kv = self.num_kv_heads * self.head_dim;
        let head = if self.tie_word_embeddings { 0 } else { v * h };
        match self.architecture {
            Architecture::Gpt2 => {
                let block = 2 * 2 * h + h * 3 * h + 3 * h + h * h + h + h * i + i + i * h + h;
                v * h + self.max_position_embeddings * h + self.num_layers * block + 2 * h + head
            }
            Architecture::Llama | Architecture::Qwen2 => {
                let bias = if self.attention_bias { q + 2 * kv } else { 0 };
                let block = 2 * h + h * q + 2 * h * kv + q * h + bias + 3 * h * i;
                v * h + self.num_layers * block + h + head
            }
        }
    }
}

fn parse_rope_scaling(
    value: Option<&serde_json::Value>,
    path: &Path,
) -> Result<Option<Llama3RopeScaling>> {
    let Some(v) = value.filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = v
        .get("rope_type")
        .or_else(|| v.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("");
    let f = |k: &str| v.get(k).and_then(|x| x.as_f64());
    match kind {
        "llama3" => Ok(Some(Llama3RopeScaling {
            factor: f("factor").unwrap_or(8.0),
            low_freq_factor: f("low_freq_factor").unwrap_or(1.0),
            high_freq_factor: f("high_freq_factor").unwrap_or(4.0),
            original_max_position_embeddings: f("original_max_position_embeddings")
                .unwrap_or(8192.0) as usize,
        })),
        "default" => Ok(None),
        other => Err(EngineError::Config(format!(
            "{}: rope_scaling type `{other}` is not supported (llama3 is)",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_architecture_is_named_with_the_supported_list() {
        let err = ModelConfig::from_hf_str(
            r#"{"model_type":"mamba","vocab_size":10}"#,
            Path::new("config.json"),
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mamba"), "{msg}");
        assert!(msg.contains("llama") && msg.contains("gpt2"), "{msg}");
    }

    #[test]
    fn parses_llama3_rope_scaling() {
        let cfg = ModelConfig::from_hf_str(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
                "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,
                "rope_scaling":{"rope_type":"llama3","factor":32.0,"low_freq_factor":1.0,
                "high_freq_factor":4.0,"original_max_position_embeddings":8192}}"#,
            Path::new("config.json"),
        )
        .unwrap();
        assert_eq!(cfg.rope_scaling.unwrap().factor, 32.0);
        assert_eq!(cfg.head_dim, 4);
    }

    fn llama_with(field: &str, value: u64) -> Result<ModelConfig> {
        let mut v: serde_json::Value = serde_json::from_str(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":8,"intermediate_size":16,
                "num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1}"#,
        )
        .unwrap();
        v[field] = value.into();
        ModelConfig::from_hf_str(&v.to_string(), Path::new("config.json"))
    }

    #[test]
    fn hostile_header_numbers_are_refused_before_any_use() {
        let err = llama_with("num_attention_heads", 0).unwrap_err();
        assert!(err.to_string().contains("zero attention heads"), "{err}");
        for (field, value, says) in [
            (
                "num_hidden_layers",
                1u64 << 40,
                "the layer count is 1099511627776, above",
            ),
            ("num_hidden_layers", 1 << 28, "layer count"),
            ("intermediate_size", 1 << 62, "feed-forward size"),
            ("vocab_size", 1 << 40, "vocabulary size"),
            ("hidden_size", u64::MAX, "hidden size"),
            ("max_position_embeddings", 1 << 50, "context length"),
        ] {
            let err = llama_with(field, value).unwrap_err();
            assert!(err.to_string().contains(says), "{field}: {err}");
            assert!(err.to_string().contains("config.json"), "{err}");
        }
        let gpt2 = ModelConfig::from_hf_str(
            r#"{"model_type":"gpt2","vocab_size":10,"n_embd":8,"n_layer":1,"n_head":0,"n_positions":8}"#,
            Path::new("config.json"),
        );
        assert!(
            gpt2.unwrap_err()
                .to_string()
                .contains("zero attention heads")
        );
    }

    #[test]
    fn rejects_heads_that_do_not_group() {
        let err = ModelConfig::from_hf_str(
            r#"{"model_type":"llama","vocab_size":10,"hidden_size":12,"intermediate_size":16,
                "num_hidden_layers":1,"num_attention_heads":3,"num_key_value_heads":2}"#,
            Path::new("config.json"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("grouped"), "{err}");
    }
}

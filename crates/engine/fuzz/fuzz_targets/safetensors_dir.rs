//! Fuzzes a Hugging Face model folder's safetensors header: the input is
//! `model.safetensors` beside a fixed small Llama config.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::loader;

const CONFIG: &str = r#"{"model_type": "llama", "hidden_size": 8, "intermediate_size": 16,
  "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
  "vocab_size": 16, "max_position_embeddings": 32, "tie_word_embeddings": true}"#;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let dir = common::scratch().join("safetensors");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("config.json"), CONFIG).unwrap();
    std::fs::write(dir.join("model.safetensors"), data).unwrap();
    let _ = loader::inspect_model(&dir);
});

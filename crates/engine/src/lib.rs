//! Penwright's engine: our GPT written with burn, the weights and tokenizers it loads,
//! generation, the writing tasks and fine-tuning. The desktop app and the CLI are thin
//! front ends over this crate.

pub mod bench;
pub mod chat;
pub mod config;
pub mod device;
pub mod documents;
pub mod error;
pub mod finetune;
pub mod fs;
pub mod generate;
pub mod gguf;
pub mod installed;
pub mod isolated;
pub mod loader;
pub mod lora;
pub mod machine;
pub mod model;
pub mod perplexity;
pub mod remote;

pub mod sampler;
pub mod tasks;
pub mod tokenizer;
pub mod weights;
pub mod worker;

pub use error::{EngineError, ErrorKind, Result};

//! Fine-tuning the model on the writer's own documents with LoRA.

pub mod compare;
pub mod dataset;
pub mod export;
pub mod extract;
pub mod job;
pub mod measure;
pub mod peft;
pub mod train;

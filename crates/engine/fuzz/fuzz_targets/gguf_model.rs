//! Fuzzes what reading a GGUF file does before any weight is touched: the header (metadata
//! and tensor table), the model config from it (checked numbers), the tensor table against
//! the config, the tokenizer built from its vocabulary, and its chat template checked.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::loader;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let path = common::as_file("model.gguf", data);
    if loader::inspect_model(&path).is_ok() {
        let _ = loader::inspect_model_for_import(&path);
    }
});

//! Fuzzes building a tokenizer from a Hugging Face `tokenizer.json`, then encoding and
//! decoding a line with it.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::tokenizer::Tokenizer;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let dir = common::scratch().join("tokenizer");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("tokenizer.json"), data).unwrap();
    if let Ok(t) = Tokenizer::from_hf_dir(&dir) {
        if let Ok(ids) = t.encode("Call me Ishmael. <|im_end|>", false) {
            let _ = t.decode(&ids, false);
        }
    }
});

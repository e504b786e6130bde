//! Fuzzes chat templates (attacker-controlled in every GGUF and tokenizer_config.json):
//! compiled, then rendered for each conversation shape Penwright sends, under minijinja's
//! fuel and the output cap. Unbounded memory is outside this target: a template's check
//! runs in a child process under a memory cap (see `isolated`), and libFuzzer's
//! -malloc_limit_mb stops an input that allocates more than a check could.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::chat::ChatTemplate;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(t) = ChatTemplate::new(source, "<s>", "</s>") {
        let _ = t.check();
    }
});

//! Fuzzes the .docx reader of the fine-tune importer (a writer's own document, or one
//! from anywhere): text or a reason, never a panic, a hang or memory without bound.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::finetune::extract::extract_text;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let path = common::as_file("document.docx", data);
    let _ = extract_text(&path);
});

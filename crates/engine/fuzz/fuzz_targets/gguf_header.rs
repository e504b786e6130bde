//! Fuzzes the GGUF header parser: any input must parse or fail with an error, never
//! panic, hang or allocate without bound.
//!
//! Run with: `scripts/fuzz.sh SECONDS gguf_header`
#![no_main]

#[path = "common.rs"]
mod common;

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use penwright_engine::gguf::GgufHeader;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    if let Ok(header) = GgufHeader::parse(data, Path::new("fuzz.gguf")) {
        for t in &header.tensors {
            let _ = (t.n_elements(), t.shape(), t.byte_len());
        }
    }
});

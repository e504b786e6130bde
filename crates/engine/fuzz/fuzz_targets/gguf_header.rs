//! Fuzzes the GGUF header parser: any input must parse or fail with an error, never
//! panic, hang or allocate without bound.
//!
//! Run with: `cd crates/engine/fuzz && cargo +nightly fuzz run gguf_header`
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use penwright_engine::gguf::GgufHeader;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = GgufHeader::parse(data, Path::new("fuzz.gguf")) {
        for t in &header.tensors {
            let _ = (t.n_elements(), t.shape(), t.byte_len());
        }
    }
});

//! Fuzzes a PEFT `adapter_config.json` (an adapter trained elsewhere, imported), opened
//! as an adapter.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::lora::Adapter;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let dir = common::scratch().join("adapter");
    let _ = std::fs::create_dir_all(&dir);
    std::fs::write(dir.join("adapter_config.json"), data).unwrap();
    // beside factors that hold no tensors: the config is what is fuzzed
    let mut factors = 8u64.to_le_bytes().to_vec();
    factors.extend(b"{}      ");
    std::fs::write(dir.join("adapter_model.safetensors"), &factors).unwrap();
    let _ = Adapter::open(&dir);
});

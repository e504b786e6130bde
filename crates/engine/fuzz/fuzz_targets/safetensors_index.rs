//! Fuzzes `model.safetensors.index.json` (the shard map, whose names must stay inside the
//! model folder), beside a config and an empty but valid shard.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use penwright_engine::weights::SafetensorsWeights;

fuzz_target!(|data: &[u8]| {
    common::panics_caught_by_the_engine_are_errors();
    let dir = common::scratch().join("sharded");
    let _ = std::fs::create_dir_all(&dir);
    // a shard with no tensors: 8-byte header length, then `{}` padded to 8 bytes
    let mut shard = 8u64.to_le_bytes().to_vec();
    shard.extend(b"{}      ");
    std::fs::write(dir.join("model-00001-of-00001.safetensors"), &shard).unwrap();
    std::fs::write(dir.join("model.safetensors.index.json"), data).unwrap();
    let _ = SafetensorsWeights::open_dir(&dir);
});

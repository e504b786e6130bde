//! Test support shared by the unit tests: llama.cpp's reference blocks
//! (`tests/fixtures/quant_ref.json`, written by gguf-py) and seeded random blocks.

use crate::format::GgmlType;

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

pub fn fixture() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant_ref.json");
    let text = std::fs::read_to_string(path).expect("read quant_ref.json");
    serde_json::from_str(&text).expect("parse quant_ref.json")
}

pub struct Case {
    pub dtype: GgmlType,
    pub n: usize,
    pub bytes: Vec<u8>,
    pub expected: Vec<f32>,
}

pub fn cases() -> Vec<Case> {
    let doc = fixture();
    doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let id = c["type_id"].as_u64().unwrap() as u32;
            let dtype = GgmlType::from_u32(id).unwrap();
            assert_eq!(dtype.name(), c["type"].as_str().unwrap());
            let expected = unhex(c["f32_hex"].as_str().unwrap())
                .chunks_exact(4)
                .map(|x| f32::from_le_bytes([x[0], x[1], x[2], x[3]]))
                .collect();
            Case {
                dtype,
                n: c["n"].as_u64().unwrap() as usize,
                bytes: unhex(c["bytes_hex"].as_str().unwrap()),
                expected,
            }
        })
        .collect()
}

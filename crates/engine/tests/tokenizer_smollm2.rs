//! The tokenizer Penwright builds from the default model's GGUF metadata (SmolLM2-135M-Instruct,
//! byte-level BPE, `smollm` pre-tokenizer) against llama.cpp on the 31 texts of
//! `tests/fixtures/smollm2-tokenizer-ref.json` (no BOS, special tokens as plain text), and
//! against Hugging Face's ids for the special-token cases when special tokens are parsed.

mod common;

use common::default_model_path;
use std::path::Path;

use penwright_engine::chat::{ChatMessage, ChatTemplate};
use penwright_engine::gguf::GgufFile;
use penwright_engine::tokenizer::{GgufTokenizerSpec, Tokenizer};

fn spec() -> GgufTokenizerSpec {
    let file = GgufFile::open(default_model_path()).unwrap();
    GgufTokenizerSpec::from_gguf(&file).unwrap()
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_gguf_spec(&spec()).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn reference() -> serde_json::Value {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-tokenizer-ref.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn spec_from_gguf() {
    let spec = spec();
    assert_eq!(spec.model, "gpt2");
    assert_eq!(spec.pre.as_deref(), Some("smollm"));
    assert_eq!(spec.tokens.len(), 49152);
    assert_eq!(spec.token_types.len(), 49152);
    assert_eq!(spec.merges.len(), 48900);
    assert_eq!(
        (spec.bos_id, spec.eos_id, spec.unk_id, spec.pad_id),
        (Some(1), Some(2), Some(0), Some(2))
    );
    assert!(!spec.add_bos);
    assert!(
        spec.chat_template
            .as_deref()
            .unwrap()
            .contains("<|im_start|>")
    );
}

#[test]
fn matches_llama_cpp_on_reference_texts() {
    let reference = reference();
    assert_eq!(reference["add_bos"], false);
    assert_eq!(reference["special"], false);
    let t = tokenizer();
    let cases = reference["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 31);
    let mut failures = Vec::new();
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        let got = t.encode(text, false).unwrap();
        if got != expected {
            failures.push(format!(
                "{text:?}:\n  llama.cpp {expected:?}\n  penwright {got:?}"
            ));
        }
        // Every text comes back from its ids.
        assert_eq!(t.decode(&got, false).unwrap(), text);
    }
    assert!(
        failures.is_empty(),
        "{} of 31 cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn parsed_special_tokens_match_hugging_face() {
    let reference = reference();
    let t = tokenizer();
    let mut checked = 0;
    for case in reference["cases"].as_array().unwrap() {
        if case["hf_equal"] == true {
            continue;
        }
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            t.encode(text, true).unwrap(),
            ids(&case["hf_ids"]),
            "{text:?}"
        );
        checked += 1;
    }
    assert_eq!(checked, 2);
}

#[test]
fn special_ids_and_streaming() {
    let t = tokenizer();
    assert_eq!((t.bos_id(), t.eos_id()), (Some(1), Some(2)));
    assert_eq!(t.id_to_piece(2).as_deref(), Some("<|im_end|>"));
    assert_eq!(t.vocab_size(), 49152);
    let stops = t.stop_ids();
    assert!(stops.contains(&2) && stops.contains(&0), "{stops:?}");
    assert!(!stops.contains(&1), "{stops:?}");
    assert_eq!(t.fim_tokens(), None);
    assert_eq!(
        t.encode_with_bos("Hello", false).unwrap(),
        t.encode("Hello", false).unwrap()
    );

    let text = "Caf\u{e9} 😀 👍🏽 你好世界 — ok";
    let ids = t.encode(text, false).unwrap();
    let mut stream = t.decode_stream(true);
    let mut out = String::new();
    for &id in &ids {
        if let Some(piece) = stream.step(id).unwrap() {
            assert!(!piece.contains('\u{FFFD}'), "{piece:?}");
            out.push_str(&piece);
        }
    }
    assert_eq!(out, text);
}

#[test]
fn chat_prompt_from_gguf_template() {
    let spec = spec();
    let t = Tokenizer::from_gguf_spec(&spec).unwrap();
    let template = ChatTemplate::new(
        spec.chat_template.as_deref().unwrap(),
        "<|im_start|>",
        "<|im_end|>",
    )
    .unwrap();
    let prompt = template
        .render(
            &[ChatMessage::system("Be brief."), ChatMessage::user("Hi!")],
            true,
        )
        .unwrap();
    assert_eq!(
        prompt,
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = t.encode(&prompt, true).unwrap();
    assert_eq!(ids.iter().filter(|&&i| i == 1).count(), 3);
    assert_eq!(ids.iter().filter(|&&i| i == 2).count(), 2);
    assert_eq!(t.decode(&ids, false).unwrap(), prompt);
}

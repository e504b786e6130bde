//! The default model (SmolLM2-135M-Instruct, Q4_1 GGUF) against llama.cpp's logits on the same
//! file and tokens. llama.cpp quantizes activations to 8 bits in its Q4_1 matmuls, and so do
//! we (every quantized product) but with our own rounding, so the comparison is on top-1
//! tokens and logit distance, not float32 bits (HF transformers' f32 pass agrees with
//! llama.cpp at 31 of 32 positions, KL 0.005; several positions are near-ties).
//!
//! 8-bit activations make near-ties a coin toss: a relative change of 1e-6 in the hidden
//! state (float rounding, e.g. another summation order) moves some values across a rounding
//! boundary of the 8-bit grid, and the logits move by that grid's noise. Measured on the
//! scalar and AVX2 paths under eleven such perturbations each: 28 to 32 of 32 agree, the same
//! spread on both, and every position that changed had llama.cpp's top two within 0.25
//! logits of each other (7 of the 32). So the 32-position test holds every position with a
//! clear winner to agreement, and the near-ties only to a floor; the agreement rate itself is
//! measured on 768 positions of real text, where that noise averages out
//! (`scripts/reference/llama_cpp_agreement.py` made the fixture; with an f32 KV cache the f32
//! activations of earlier versions agreed at 727 of them and 8-bit ones at 722, within the
//! noise of each other; with the f16 cache, as llama.cpp keeps it, 731).

mod common;

use common::default_model_path;
use std::path::Path;

use burn::tensor::Device;
use penwright_engine::config::ModelConfig;
use penwright_engine::gguf::GgufFile;
use penwright_engine::model::LanguageModel;
use penwright_engine::weights::{GgufWeights, WeightSource};

fn load(device: &Device) -> LanguageModel {
    let file = GgufFile::open(default_model_path()).unwrap();
    let config = ModelConfig::from_gguf(&file).unwrap();
    let weights = WeightSource::Gguf(GgufWeights::new(
        file,
        config.architecture,
        config.num_heads,
        config.num_kv_heads,
    ));
    LanguageModel::load(config, &weights, device, &mut |_, _| {}).unwrap()
}

fn check(device: &Device) {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-llamacpp-logits.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let ids: Vec<u32> = reference["token_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let model = load(device);
    // the prompt in one pass: 32 rows, 8-bit activations (the f32 path of earlier versions
    // agreed at 31 of these; its two flips here lead by 0.07 and 0.10 in llama.cpp)
    let mut cache = model.new_cache(64);
    let rows =
        LanguageModel::to_rows(model.forward_cached(&ids, &mut cache, true).unwrap()).unwrap();
    compare(&reference, &rows, device, "prompt pass").require(30, 1.6);
    // token by token, as decoding runs: 8-bit activations
    let mut cache = model.new_cache(64);
    let rows: Vec<Vec<f32>> = ids
        .iter()
        .map(|&id| {
            let out = model.forward_cached(&[id], &mut cache, false).unwrap();
            LanguageModel::to_rows(out).unwrap().pop().unwrap()
        })
        .collect();
    compare(&reference, &rows, device, "decoding").require(28, 2.0);
}

/// Where llama.cpp's top-1 leads its second by at least this many logits, a disagreement is
/// an error, not rounding (the near-ties that do flip all lead by 0.25 or less).
const CLEAR_MARGIN: f64 = 0.3;

struct Agreement<'a> {
    /// Which pass it is.
    what: &'a str,
    /// Positions whose top-1 token is llama.cpp's.
    agree: usize,
    /// Positions with a clear winner (see [`CLEAR_MARGIN`]) where ours differs.
    clear_misses: Vec<usize>,
    /// The largest logit difference on llama.cpp's top-5.
    max_diff: f64,
}

impl Agreement<'_> {
    /// Every clear position agrees, at least `min_agree` of all do, and no logit on
    /// llama.cpp's top-5 is `max_diff` or more away.
    fn require(&self, min_agree: usize, max_diff: f64) {
        let what = self.what;
        assert!(
            self.clear_misses.is_empty(),
            "{what}: disagrees where llama.cpp's winner is clear, at {:?}",
            self.clear_misses
        );
        assert!(
            self.agree >= min_agree,
            "{what}: top-1 agreement {}/32",
            self.agree
        );
        assert!(
            self.max_diff < max_diff,
            "{what}: logits differ by {}",
            self.max_diff
        );
    }
}

/// Top-1 agreement and the largest logit difference on llama.cpp's top-5, printed with the
/// mean KL over them and each disagreement with llama.cpp's margin there.
fn compare<'a>(
    reference: &serde_json::Value,
    rows: &[Vec<f32>],
    device: &Device,
    what: &'a str,
) -> Agreement<'a> {
    let (mut agree, mut max_diff, mut kl_sum) = (0, 0.0f64, 0.0f64);
    let mut clear_misses = Vec::new();
    for (pos, row) in rows.iter().enumerate() {
        let p = &reference["positions"][pos];
        let top: Vec<(u32, f64)> = p["top5"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| (x[0].as_u64().unwrap() as u32, x[1].as_f64().unwrap()))
            .collect();
        let ours = penwright_engine::sampler::argmax(row);
        let margin = top[0].1 - top[1].1;
        if ours == top[0].0 {
            agree += 1;
        } else {
            eprintln!("{what}: position {pos} disagrees, llama.cpp's margin there {margin:.3}");
            if margin >= CLEAR_MARGIN {
                clear_misses.push(pos);
            }
        }
        for (id, logit) in &top {
            max_diff = max_diff.max((row[*id as usize] as f64 - logit).abs());
        }
        // KL(llama.cpp || ours) over llama.cpp's top-5 (the mass it stores)
        let lse_ours = {
            let m = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
            m + row.iter().map(|&l| (l as f64 - m).exp()).sum::<f64>().ln()
        };
        let lse_ref = p["logsumexp"].as_f64().unwrap();
        for (id, logit) in &top {
            let lp_ref = logit - lse_ref;
            let lp_ours = row[*id as usize] as f64 - lse_ours;
            kl_sum += lp_ref.exp() * (lp_ref - lp_ours);
        }
    }
    eprintln!(
        "SmolLM2 Q4_1 on {device:?}, {what}: top-1 agreement {agree}/{}, max |Δlogit| on llama.cpp's top-5 {max_diff:.3}, mean partial KL {:.4}",
        rows.len(),
        kl_sum / rows.len() as f64
    );
    Agreement {
        what,
        agree,
        clear_misses,
        max_diff,
    }
}

#[test]
fn default_model_agrees_with_llama_cpp_on_cpu() {
    check(&Device::flex());
}

/// Top-1 agreement with llama.cpp on 24 windows of 32 tokens of Moby-Dick, each one batch
/// from an empty cache: at least 712 of the 768 (measured: 731; 722 with an f32 cache, 727
/// with f32 activations too), and at most five misses where llama.cpp's winner leads by
/// [`CLEAR_MARGIN`] or more (measured: none; three with an f32 cache, leads 0.37–0.48).
#[test]
fn default_model_agrees_with_llama_cpp_on_768_positions_of_real_text() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2-llamacpp-top1-768.json");
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model = load(&Device::flex());
    let numbers = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect()
    };
    let (mut positions, mut agree, mut clear_misses) = (0, 0, Vec::new());
    for (w, window) in reference["windows"].as_array().unwrap().iter().enumerate() {
        let ids: Vec<u32> = numbers(&window["ids"]).iter().map(|&v| v as u32).collect();
        let (top1, margin) = (numbers(&window["top1"]), numbers(&window["margin"]));
        let mut cache = model.new_cache(ids.len());
        let rows =
            LanguageModel::to_rows(model.forward_cached(&ids, &mut cache, true).unwrap()).unwrap();
        for (pos, row) in rows.iter().enumerate() {
            positions += 1;
            if penwright_engine::sampler::argmax(row) == top1[pos] as u32 {
                agree += 1;
            } else if margin[pos] >= CLEAR_MARGIN {
                clear_misses.push((w, pos, margin[pos]));
            }
        }
    }
    eprintln!("768 positions: top-1 agreement {agree}/{positions}, clear misses {clear_misses:?}");
    assert_eq!(positions, 768);
    assert!(agree >= 712, "top-1 agreement {agree}/768");
    assert!(
        clear_misses.len() <= 5,
        "disagrees where llama.cpp's winner is clear: {clear_misses:?}"
    );
}

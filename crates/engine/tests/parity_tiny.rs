//! Our burn models against Hugging Face transformers 4.46.3 on the tiny random fixtures
//! (float32 reference logits), on the CPU (flex) and on wgpu, plus KV-cache equivalence.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Int, Tensor, TensorData};
use penwright_engine::config::ModelConfig;
use penwright_engine::model::LanguageModel;
use penwright_engine::weights::{SafetensorsWeights, WeightSource};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Reference {
    ids: Vec<u32>,
    logits: Vec<Vec<f32>>,
}

fn reference(dir: &Path) -> Reference {
    let text = std::fs::read_to_string(dir.join("ref_logits.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let ids = v["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect();
    let logits = v["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect()
        })
        .collect();
    Reference { ids, logits }
}

fn load(dir: &Path, device: &Device) -> LanguageModel {
    let config = ModelConfig::from_hf_json(&dir.join("config.json")).unwrap();
    let weights = WeightSource::Safetensors(SafetensorsWeights::open_dir(dir).unwrap());
    LanguageModel::load(config, &weights, device, &mut |_, _| {}).unwrap()
}

fn full_logits(model: &LanguageModel, ids: &[u32]) -> Vec<Vec<f32>> {
    let device = model.device();
    let input = Tensor::<2, Int>::from_data(
        TensorData::new(
            ids.iter().map(|&i| i as i64).collect::<Vec<_>>(),
            [1, ids.len()],
        ),
        device,
    );
    let logits = model.forward(input);
    let [_, s, v] = logits.dims();
    LanguageModel::to_rows(logits.reshape([s, v])).unwrap()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

fn check_parity(name: &str, device: &Device, tol: f32) {
    let dir = fixture(name);
    let r = reference(&dir);
    let model = load(&dir, device);
    let ours = full_logits(&model, &r.ids);
    let diff = max_abs_diff(&ours, &r.logits);
    eprintln!("{name} on {device:?}: max |Δlogit| = {diff:e}");
    assert!(diff < tol, "{name}: max abs logit diff {diff} >= {tol}");
}

/// Token-by-token decode through the KV cache gives the logits of one full pass.
fn check_cache(name: &str, device: &Device, tol: f32) {
    let dir = fixture(name);
    let r = reference(&dir);
    let model = load(&dir, device);
    let mut cache = model.new_cache(64);
    // prefill half, then one token at a time, then rollback and re-feed
    let half = r.ids.len() / 2;
    let mut rows = LanguageModel::to_rows(
        model
            .forward_cached(&r.ids[..half], &mut cache, true)
            .unwrap(),
    )
    .unwrap();
    for &id in &r.ids[half..] {
        rows.extend(
            LanguageModel::to_rows(model.forward_cached(&[id], &mut cache, false).unwrap())
                .unwrap(),
        );
    }
    let diff = max_abs_diff(&rows, &r.logits);
    assert!(diff < tol, "{name}: cached decode differs by {diff}");
    // rollback to 5 tokens and re-feed the rest in one chunk: same logits as the fresh pass
    cache.truncate(5);
    let again =
        LanguageModel::to_rows(model.forward_cached(&r.ids[5..], &mut cache, true).unwrap())
            .unwrap();
    let diff = max_abs_diff(&again, &r.logits[5..]);
    assert!(
        diff < tol,
        "{name}: re-prefill after truncate differs by {diff}"
    );
}

#[test]
fn tiny_gpt2_matches_transformers_on_cpu() {
    check_parity("tiny-gpt2", &Device::flex(), 1e-4);
}

#[test]
fn tiny_llama_matches_transformers_on_cpu() {
    check_parity("tiny-llama", &Device::flex(), 1e-4);
}

/// The CPU's cache keeps keys and values in f16 (as llama.cpp's does): the cached logits
/// move by its rounding (5e-3 at most here; an indexing mistake moves them by whole units).
#[test]
fn kv_cache_decode_matches_full_pass_on_cpu() {
    check_cache("tiny-llama", &Device::flex(), 1e-2);
    check_cache("tiny-gpt2", &Device::flex(), 1e-2);
}

#[test]
fn context_overflow_is_an_error_not_a_crash() {
    let model = load(&fixture("tiny-llama"), &Device::flex());
    let mut cache = model.new_cache(4);
    let err = model
        .forward_cached(&[1, 2, 3, 4, 5], &mut cache, false)
        .unwrap_err();
    assert!(err.to_string().contains("context"), "{err}");
    let err = model
        .forward_cached(&[5000], &mut cache, false)
        .unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[test]
fn a_config_claiming_more_than_the_file_holds_is_refused_before_loading() {
    let dir = fixture("tiny-llama");
    let weights = WeightSource::Safetensors(SafetensorsWeights::open_dir(&dir).unwrap());
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    // 1000 layers pass the config's own bounds; the file holds 2
    let claimed = text.replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1000");
    let config = ModelConfig::from_hf_str(&claimed, &dir.join("config.json")).unwrap();
    let mut layers_loaded = 0;
    let err = LanguageModel::load(config, &weights, &Device::flex(), &mut |done, _| {
        layers_loaded = done
    })
    .err()
    .expect("a 1000-layer model from a 2-layer file");
    assert_eq!(layers_loaded, 0, "refused before any layer was loaded");
    assert!(
        err.to_string()
            .contains("describes a model of 37056064 parameters, but its tensors hold only"),
        "{err}"
    );
    // the file's own config loads
    load(&dir, &Device::flex());
}

/// The GPU path (burn-wgpu), here on Mesa's lavapipe; on a machine with no Vulkan/Metal/DX12
/// adapter at all this test fails with the adapter error, it never passes silently.
#[test]
fn tiny_models_match_transformers_on_wgpu() {
    let device = penwright_engine::device::wgpu_device()
        .expect("a wgpu adapter (install mesa-vulkan-drivers)");
    check_parity("tiny-llama", &device.device, 1e-3);
    check_parity("tiny-gpt2", &device.device, 1e-3);
    check_cache("tiny-llama", &device.device, 1e-3);
}

/// Reusing a cached prefix (autocomplete's warm path) gives the logits of a fresh prefill.
#[test]
fn prefix_reuse_gives_the_logits_of_a_fresh_prefill() {
    use penwright_engine::generate::prefill;
    use std::sync::atomic::AtomicBool;
    let dir = fixture("tiny-llama");
    let r = reference(&dir);
    let model = load(&dir, &Device::flex());
    let cancel = AtomicBool::new(false);
    let mut warm = model.new_cache(64);
    prefill(&model, &mut warm, &r.ids, &cancel).unwrap();
    // the writer edits the end: keep 10 tokens, then different ones
    let mut edited = r.ids[..10].to_vec();
    edited.extend([7, 3, 99, 500]);
    let (reused_logits, reused) = prefill(&model, &mut warm, &edited, &cancel).unwrap();
    assert_eq!(reused, 10);
    let mut cold = model.new_cache(64);
    let (fresh_logits, fresh_reused) = prefill(&model, &mut cold, &edited, &cancel).unwrap();
    assert_eq!(fresh_reused, 0);
    let diff = reused_logits
        .iter()
        .zip(&fresh_logits)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    eprintln!("prefix reuse vs fresh prefill: max |Δlogit| = {diff:e}");
    assert!(diff < 1e-5, "prefix reuse changed the logits by {diff}");
}

/// A PEFT 0.13.2 adapter made elsewhere reproduces PEFT's base + adapter logits.
#[test]
fn peft_adapter_reproduces_peft_logits() {
    use penwright_engine::lora::{Adapter, apply_adapter};
    let mut model = load(&fixture("tiny-llama"), &Device::flex());
    let adapter = Adapter::open(&fixture("tiny-llama-lora")).unwrap();
    assert_eq!(apply_adapter(&mut model, &adapter).unwrap(), 4);
    let r = reference(&fixture("tiny-llama-lora"));
    let ours = full_logits(&model, &r.ids);
    let diff = max_abs_diff(&ours, &r.logits);
    eprintln!("tiny-llama + PEFT adapter: max |Δlogit| = {diff:e}");
    assert!(diff < 1e-4, "adapter logits differ by {diff}");
}

/// A PEFT adapter on GPT-2's Conv1D layers (`fan_in_fan_out`) reproduces PEFT's logits.
#[test]
fn peft_adapter_on_gpt2_conv1d_layers_reproduces_peft_logits() {
    use penwright_engine::lora::{Adapter, apply_adapter};
    let mut model = load(&fixture("tiny-gpt2"), &Device::flex());
    let adapter = Adapter::open(&fixture("tiny-gpt2-lora")).unwrap();
    assert!(adapter.config.fan_in_fan_out);
    // c_attn and c_fc of both blocks
    assert_eq!(apply_adapter(&mut model, &adapter).unwrap(), 4);
    let r = reference(&fixture("tiny-gpt2-lora"));
    let ours = full_logits(&model, &r.ids);
    let diff = max_abs_diff(&ours, &r.logits);
    eprintln!("tiny-gpt2 + PEFT Conv1D adapter: max |Δlogit| = {diff:e}");
    assert!(diff < 1e-4, "adapter logits differ by {diff}");
    // the same adapter does not fit a Llama model
    let mut llama = load(&fixture("tiny-llama"), &Device::flex());
    let err = apply_adapter(&mut llama, &adapter).unwrap_err().to_string();
    assert!(err.contains("fan_in_fan_out"), "{err}");
}

/// `--quantize`: an f32 checkpoint quantized as it loads stays close to its f32 logits and
/// to Hugging Face's (within each type's rounding), and its matrices are in that type.
#[test]
fn checkpoints_quantized_at_load_keep_their_logits() {
    use penwright_engine::device::cpu_device;
    use penwright_engine::loader::{LoadOptions, load_model_with};
    for name in ["tiny-llama", "tiny-gpt2"] {
        let dir = fixture(name);
        let r = reference(&dir);
        let spread = r
            .logits
            .iter()
            .flatten()
            .fold(0.0f32, |m, v| m.max(v.abs()));
        // the correlation of every logit with Hugging Face's f32 one; 4 bits on these
        // random weights (initializer range 0.2) lose more than on trained ones
        for (quantize, min_corr) in [("q8_0", 0.999), ("q4_0", 0.85), ("q4_k", 0.95)] {
            let options = LoadOptions {
                quantize: Some(LoadOptions::parse_quantize(quantize).unwrap()),
            };
            let loaded = load_model_with(&dir, cpu_device("test"), options, &mut |_| {}).unwrap();
            // q4_k needs 256-wide rows: most of these fixtures' rows are 64 wide, Q8_0 then
            assert!(
                loaded
                    .info
                    .quantization
                    .ends_with(&format!("{} at load", quantize.to_ascii_uppercase())),
                "{}",
                loaded.info.quantization
            );
            let ours = full_logits(&loaded.model, &r.ids);
            let diff = max_abs_diff(&ours, &r.logits);
            let corr = correlation(&ours, &r.logits);
            eprintln!(
                "{name} --quantize {quantize}: correlation {corr:.5}, max |Δlogit| {diff:.4} (logits up to {spread:.2})"
            );
            assert!(corr > min_corr, "{name} {quantize}: correlation {corr}");
            assert!(diff > 0.0, "{name} {quantize}: nothing was quantized");
        }
    }
    let err = LoadOptions::parse_quantize("q3_k").unwrap_err().to_string();
    assert!(err.contains("q8_0, q4_0 or q4_k"), "{err}");
}

fn correlation(a: &[Vec<f32>], b: &[Vec<f32>]) -> f64 {
    let (x, y): (Vec<f64>, Vec<f64>) = a
        .iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(&p, &q)| (p as f64, q as f64))
        .unzip();
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(&y).map(|(p, q)| (p - mx) * (q - my)).sum();
    let vx: f64 = x.iter().map(|p| (p - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|q| (q - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

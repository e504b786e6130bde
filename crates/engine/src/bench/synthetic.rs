//! Synthetic models for `penwright bench`: the real shapes of the SmolLM2 family (the same
//! tokenizer as the default model, so prompts are real text), with seeded random weights in
//! the block formats people download. Random weights say nothing about quality and
//! everything about speed and memory: the bytes moved per token are those of the real model.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use penwright_kernels::GgmlType;
use penwright_kernels::random::random_matrix;

use crate::gguf::write::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::{EngineError, Result};

/// A Llama-family shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub name: &'static str,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
}

/// The shapes `penwright bench --synthetic` knows.
pub const SHAPES: [Shape; 3] = [
    Shape {
        name: "smollm2-135m",
        hidden: 576,
        intermediate: 1536,
        layers: 30,
        heads: 9,
        kv_heads: 3,
    },
    Shape {
        name: "smollm2-360m",
        hidden: 960,
        intermediate: 2560,
        layers: 32,
        heads: 15,
        kv_heads: 5,
    },
    Shape {
        name: "smollm2-1.7b",
        hidden: 2048,
        intermediate: 8192,
        layers: 24,
        heads: 32,
        kv_heads: 32,
    },
];

/// How the weights are quantized, named as llama.cpp's `llama-quantize` names its mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Every matrix Q8_0.
    Q8_0,
    /// Q4_K, with Q6_K for the embedding/output and for `attn_v`/`ffn_down` in the layers
    /// llama.cpp gives more bits (the first and last eighth, and every third between).
    Q4KM,
    /// Q4_1 with a Q8_0 embedding, as the default model file.
    Q4_1,
}

impl Mix {
    pub fn name(self) -> &'static str {
        match self {
            Mix::Q8_0 => "q8_0",
            Mix::Q4KM => "q4_k_m",
            Mix::Q4_1 => "q4_1",
        }
    }

    pub fn parse(s: &str) -> Option<Mix> {
        [Mix::Q8_0, Mix::Q4KM, Mix::Q4_1]
            .into_iter()
            .find(|m| m.name() == s.to_ascii_lowercase())
    }

    fn embedding(self) -> GgmlType {
        match self {
            Mix::Q8_0 | Mix::Q4_1 => GgmlType::Q8_0,
            Mix::Q4KM => GgmlType::Q6_K,
        }
    }

    /// The type of `kind` (`attn_q`, `ffn_down`, …) in layer `l` of `n` whose rows are
    /// `d_in` wide: where they are not whole 256-element super-blocks, llama.cpp falls
    /// back from Q4_K to Q5_0 and from Q6_K to Q8_0, and so does this.
    fn matrix(self, kind: &str, l: usize, n: usize, d_in: usize) -> GgmlType {
        let ty = self.preferred(kind, l, n);
        match ty {
            GgmlType::Q4_K if !d_in.is_multiple_of(256) => GgmlType::Q5_0,
            GgmlType::Q6_K if !d_in.is_multiple_of(256) => GgmlType::Q8_0,
            ty => ty,
        }
    }

    fn preferred(self, kind: &str, l: usize, n: usize) -> GgmlType {
        match self {
            Mix::Q8_0 => GgmlType::Q8_0,
            Mix::Q4_1 => GgmlType::Q4_1,
            Mix::Q4KM => {
                let more_bits = l < n / 8 || l >= 7 * n / 8 || (l - n / 8) % 3 == 2;
                if (kind == "attn_v" || kind == "ffn_down") && more_bits {
                    GgmlType::Q6_K
                } else {
                    GgmlType::Q4_K
                }
            }
        }
    }
}

/// The shape named `name`.
pub fn shape(name: &str) -> Option<Shape> {
    SHAPES.into_iter().find(|s| s.name == name)
}

/// Writes a copy of `template`'s metadata without its tensors (a couple of megabytes): a
/// template for [`write_model`] to carry where the whole model file would not fit.
pub fn write_template(template: &Path, out: &Path) -> Result<u64> {
    let t = GgufFile::open(template)?;
    let mut w = GgufWriter::new();
    for (k, v) in &t.header.metadata {
        w.kv(k, v.clone());
    }
    let file = File::create(out).map_err(|e| EngineError::io(out, e))?;
    let mut sink = BufWriter::new(file);
    w.write_to(&mut sink, |_, _| {})
        .map_err(|e| EngineError::io(out, e))?;
    drop(sink);
    Ok(std::fs::metadata(out)
        .map_err(|e| EngineError::io(out, e))?
        .len())
}

/// Writes a model of `shape` in `mix` to `out`, taking the tokenizer, chat template and
/// RoPE settings from `template` (the default model's file, or a [`write_template`] copy).
pub fn write_model(template: &Path, shape: Shape, mix: Mix, out: &Path) -> Result<u64> {
    let t = GgufFile::open(template)?;
    let vocab = t
        .get_str_array("tokenizer.ggml.tokens")
        .map(|v| v.len())
        .ok_or_else(|| EngineError::Other("the template has no tokenizer".into()))?;
    let head_dim = shape.hidden / shape.heads;
    let mut w = GgufWriter::new();
    let overrides: [(&str, MetaValue); 8] = [
        (
            "general.name",
            MetaValue::String(format!("synthetic {} {}", shape.name, mix.name())),
        ),
        ("llama.block_count", MetaValue::U32(shape.layers as u32)),
        (
            "llama.embedding_length",
            MetaValue::U32(shape.hidden as u32),
        ),
        (
            "llama.feed_forward_length",
            MetaValue::U32(shape.intermediate as u32),
        ),
        (
            "llama.attention.head_count",
            MetaValue::U32(shape.heads as u32),
        ),
        (
            "llama.attention.head_count_kv",
            MetaValue::U32(shape.kv_heads as u32),
        ),
        (
            "llama.rope.dimension_count",
            MetaValue::U32(head_dim as u32),
        ),
        ("llama.vocab_size", MetaValue::U32(vocab as u32)),
    ];
    for (k, v) in &t.header.metadata {
        if !overrides.iter().any(|(o, _)| o == k) {
            w.kv(k, v.clone());
        }
    }
    for (k, v) in overrides {
        w.kv(k, v);
    }
    // (name, ne0 = in, ne1 = out, type)
    let mut tensors: Vec<(String, usize, usize, GgmlType)> = Vec::new();
    let (h, i, kv) = (shape.hidden, shape.intermediate, shape.kv_heads * head_dim);
    let embedding = match mix.embedding() {
        GgmlType::Q6_K if !h.is_multiple_of(256) => GgmlType::Q8_0,
        ty => ty,
    };
    tensors.push(("token_embd.weight".into(), h, vocab, embedding));
    for l in 0..shape.layers {
        let n = shape.layers;
        for (kind, d_in, d_out) in [
            ("attn_q", h, h),
            ("attn_k", h, kv),
            ("attn_v", h, kv),
            ("attn_output", h, h),
            ("ffn_gate", h, i),
            ("ffn_up", h, i),
            ("ffn_down", i, h),
        ] {
            tensors.push((
                format!("blk.{l}.{kind}.weight"),
                d_in,
                d_out,
                mix.matrix(kind, l, n, d_in),
            ));
        }
        for norm in ["attn_norm", "ffn_norm"] {
            tensors.push((format!("blk.{l}.{norm}.weight"), h, 1, GgmlType::F32));
        }
    }
    tensors.push(("output_norm.weight".into(), h, 1, GgmlType::F32));
    for (name, d_in, d_out, ty) in &tensors {
        let dims: Vec<u64> = if *d_out == 1 {
            vec![*d_in as u64]
        } else {
            vec![*d_in as u64, *d_out as u64]
        };
        let len = ty.row_bytes(*d_in).expect("whole blocks") * d_out;
        w.tensor(name, &dims, ty.id(), len);
    }
    let file = File::create(out).map_err(|e| EngineError::io(out, e))?;
    let mut sink = BufWriter::with_capacity(1 << 20, file);
    w.write_to(&mut sink, |k, buf| {
        let (_, d_in, d_out, ty) = &tensors[k];
        if *ty == GgmlType::F32 {
            // norm weights: ones
            buf.extend((0..*d_in).flat_map(|_| 1.0f32.to_le_bytes()));
        } else {
            buf.extend(random_matrix(*ty, *d_out, *d_in, k as u64));
        }
    })
    .map_err(|e| EngineError::io(out, e))?;
    let file = sink
        .into_inner()
        .map_err(|e| EngineError::io(out, e.into_error()))?;
    file.sync_all().map_err(|e| EngineError::io(out, e))?;
    Ok(std::fs::metadata(out)
        .map_err(|e| EngineError::io(out, e))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: Shape = Shape {
        name: "tiny",
        hidden: 256,
        intermediate: 512,
        layers: 9,
        heads: 4,
        kv_heads: 2,
    };

    /// Damaged block data: a truncated file is refused with an error naming what is
    /// missing, and overwritten blocks load and run (their numbers are garbage, the engine
    /// does not crash). Every cut and overwrite below ran without a panic.
    #[test]
    fn damaged_block_data_is_an_error_or_garbage_never_a_panic() {
        let Ok(template) = crate::loader::resolve_model(None) else {
            eprintln!("default model not installed; skipped");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.gguf");
        write_model(&template, TINY, Mix::Q4KM, &good).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let data_start = GgufFile::open(&good).unwrap().header.data_offset as usize;
        let damaged = dir.path().join("damaged.gguf");
        let load = |b: &[u8]| {
            std::fs::write(&damaged, b).unwrap();
            crate::loader::load_model(&damaged, crate::device::cpu_device("test"), &mut |_| {})
        };
        for cut in [
            data_start + 1,
            data_start + 1000,
            bytes.len() / 2,
            bytes.len() - 1,
        ] {
            let err = load(&bytes[..cut]).err().expect("a truncated file loads");
            assert!(
                matches!(err, EngineError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        let mut rng = penwright_kernels::random::Rng::new(3);
        for _ in 0..8 {
            let mut b = bytes.clone();
            for _ in 0..64 {
                let at = data_start + (rng.next_u64() as usize) % (bytes.len() - data_start);
                b[at] = rng.next_u64() as u8;
            }
            let loaded = load(&b).expect("overwritten blocks still load");
            let mut cache = loaded.model.new_cache(8);
            let out = loaded
                .model
                .forward_cached(&[1, 2], &mut cache, false)
                .unwrap();
            let _ = crate::model::LanguageModel::to_rows(out).unwrap();
        }
    }

    /// A synthetic model loads and generates (nonsense, but finite) on its real shape.
    #[test]
    fn synthetic_models_load_with_their_shape_and_mix() {
        let template = crate::loader::resolve_model(None);
        let Ok(template) = template else {
            eprintln!("default model not installed; skipped");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        for mix in [Mix::Q4KM, Mix::Q8_0] {
            let path = dir.path().join(format!("{}.gguf", mix.name()));
            write_model(&template, TINY, mix, &path).unwrap();
            let file = GgufFile::open(&path).unwrap();
            let ty = |n: &str| file.tensor_info(n).unwrap().dtype;
            // a metadata-only template makes the same model
            let small = dir.path().join("template.gguf");
            write_template(&template, &small).unwrap();
            assert!(std::fs::metadata(&small).unwrap().len() < 4 << 20);
            let again = dir.path().join("again.gguf");
            write_model(&small, TINY, mix, &again).unwrap();
            assert_eq!(
                std::fs::read(&again).unwrap(),
                std::fs::read(&path).unwrap()
            );
            match mix {
                Mix::Q4KM => {
                    assert_eq!(ty("blk.0.attn_v.weight"), GgmlType::Q6_K);
                    assert_eq!(ty("blk.4.attn_v.weight"), GgmlType::Q4_K);
                    assert_eq!(ty("blk.3.attn_q.weight"), GgmlType::Q4_K);
                }
                _ => assert_eq!(ty("blk.3.ffn_down.weight"), GgmlType::Q8_0),
            }
            let loaded =
                crate::loader::load_model(&path, crate::device::cpu_device("test"), &mut |_| {})
                    .unwrap();
            assert_eq!(loaded.model.config.hidden_size, 256);
            assert_eq!(loaded.model.config.num_layers, 9);
            let mut cache = loaded.model.new_cache(16);
            let logits = loaded
                .model
                .forward_cached(&[1, 2, 3], &mut cache, false)
                .unwrap();
            let row = crate::model::LanguageModel::to_rows(logits).unwrap();
            assert!(row[0].iter().all(|v| v.is_finite()), "{mix:?}");
        }
    }
}

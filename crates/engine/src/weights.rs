//! Weight files: Hugging Face safetensors (single or sharded) and GGUF, read by their
//! Hugging Face tensor names and shapes so that the model code has one naming scheme.
//!
//! Pickled checkpoints (`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt`) are never opened.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensorError, SafeTensors};

use crate::config::Architecture;
use crate::gguf::GgufFile;
use crate::{EngineError, Result};

/// A tensor on the host, row-major, in float32.
#[derive(Debug, Clone)]
pub struct HostTensor {
    pub data: Vec<f32>,
    pub shape: Vec<usize>,
}

impl HostTensor {
    /// The transpose of a 2-D tensor.
    pub fn transposed(&self) -> HostTensor {
        let [rows, cols] = [self.shape[0], self.shape[1]];
        let mut out = vec![0.0f32; rows * cols];
        const BLOCK: usize = 32;
        for r0 in (0..rows).step_by(BLOCK) {
            for c0 in (0..cols).step_by(BLOCK) {
                for r in r0..(r0 + BLOCK).min(rows) {
                    for c in c0..(c0 + BLOCK).min(cols) {
                        out[c * rows + r] = self.data[r * cols + c];
                    }
                }
            }
        }
        HostTensor {
            data: out,
            shape: vec![cols, rows],
        }
    }
}

/// Where a model's tensors come from.
pub enum WeightSource {
    Safetensors(SafetensorsWeights),
    Gguf(GgufWeights),
}

impl WeightSource {
    /// Reads a tensor by its Hugging Face name, with its Hugging Face shape.
    pub fn get(&self, name: &str) -> Result<HostTensor> {
        match self {
            WeightSource::Safetensors(w) => w.get(name),
            WeightSource::Gguf(w) => w.get(name),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        match self {
            WeightSource::Safetensors(w) => w.contains(name),
            WeightSource::Gguf(w) => w
                .gguf_name(name)
                .is_some_and(|n| w.file.tensor_info(&n).is_some()),
        }
    }

    /// Checks the shape of a tensor before reading it.
    pub fn get_shaped(&self, name: &str, expected: &[usize]) -> Result<HostTensor> {
        let t = self.get(name)?;
        if t.shape != expected {
            return Err(EngineError::TensorShape {
                path: self.path().to_path_buf(),
                tensor: name.to_string(),
                expected: expected.to_vec(),
                actual: t.shape,
            });
        }
        Ok(t)
    }

    pub fn path(&self) -> &Path {
        match self {
            WeightSource::Safetensors(w) => &w.dir,
            WeightSource::Gguf(w) => &w.file.path,
        }
    }
}

/// Refuses pickled checkpoints by name before anything reads them.
pub fn refuse_pickle(path: &Path) -> Result<()> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let pickle = [".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"];
    if pickle.iter().any(|ext| name.ends_with(ext)) {
        return Err(EngineError::PickleRefused {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

struct Shard {
    path: PathBuf,
    mmap: Mmap,
    header_len: usize,
    tensors: BTreeMap<String, safetensors::tensor::TensorInfo>,
}

/// One or more `.safetensors` files of a Hugging Face model folder.
pub struct SafetensorsWeights {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// tensor name → index in `shards`
    index: BTreeMap<String, usize>,
}

fn map_safetensors_error(path: &Path, e: SafeTensorError) -> EngineError {
    match e {
        SafeTensorError::HeaderTooSmall
        | SafeTensorError::MetadataIncompleteBuffer
        | SafeTensorError::InvalidHeaderLength => EngineError::Truncated {
            path: path.to_path_buf(),
            what: format!("safetensors header: {e}"),
        },
        other => EngineError::Malformed {
            path: path.to_path_buf(),
            what: other.to_string(),
        },
    }
}

impl SafetensorsWeights {
    /// Opens `model.safetensors`, or every shard listed in `model.safetensors.index.json`,
    /// or else every `*.safetensors` in the folder.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index_path = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if index_path.exists() {
            let text = std::fs::read_to_string(&index_path)
                .map_err(|e| EngineError::io(&index_path, e))?;
            let json: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| EngineError::Malformed {
                    path: index_path.clone(),
                    what: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| EngineError::Malformed {
                    path: index_path.clone(),
                    what: "no `weight_map` object".into(),
                })?;
            let mut names: Vec<String> = map
                .values()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            names.sort();
            names.dedup();
            names.into_iter().map(|n| dir.join(n)).collect()
        } else if dir.join("model.safetensors").exists() {
            vec![dir.join("model.safetensors")]
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| EngineError::io(dir, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                for entry in std::fs::read_dir(dir).map_err(|e| EngineError::io(dir, e))? {
                    let path = entry.map_err(|e| EngineError::io(dir, e))?.path();
                    refuse_pickle(&path)?;
                }
                return Err(EngineError::ModelNotFound {
                    path: dir.to_path_buf(),
                });
            }
            found
        };
        let mut shards = Vec::new();
        let mut index = BTreeMap::new();
        for path in files {
            let file = File::open(&path).map_err(|e| EngineError::io(&path, e))?;
            // SAFETY: the file is opened read-only; Penwright never writes model files
            // while they are mapped.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(&path, e))?;
            let (header_len, metadata) =
                SafeTensors::read_metadata(&mmap).map_err(|e| map_safetensors_error(&path, e))?;
            let tensors: BTreeMap<String, safetensors::tensor::TensorInfo> = metadata
                .tensors()
                .into_iter()
                .map(|(name, info)| (name, info.clone()))
                .collect();
            for name in tensors.keys() {
                index.insert(name.clone(), shards.len());
            }
            shards.push(Shard {
                path,
                mmap,
                header_len,
                tensors,
            });
        }
        Ok(SafetensorsWeights {
            dir: dir.to_path_buf(),
            shards,
            index,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Result<HostTensor> {
        let shard = self
            .index
            .get(name)
            .map(|&i| &self.shards[i])
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.dir.clone(),
                tensor: name.to_string(),
            })?;
        let info = &shard.tensors[name];
        let start = 8 + shard.header_len + info.data_offsets.0;
        let end = 8 + shard.header_len + info.data_offsets.1;
        let bytes = shard
            .mmap
            .get(start..end)
            .ok_or_else(|| EngineError::Truncated {
                path: shard.path.clone(),
                what: format!("tensor `{name}` ends past the end of the file"),
            })?;
        let n: usize = info.shape.iter().product();
        let (elem, dtype_name) = match info.dtype {
            Dtype::F32 => (4, "F32"),
            Dtype::F16 => (2, "F16"),
            Dtype::BF16 => (2, "BF16"),
            other => {
                return Err(EngineError::UnsupportedDtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        if bytes.len() != n * elem {
            return Err(EngineError::TensorSize {
                path: shard.path.clone(),
                tensor: name.to_string(),
                shape: info.shape.clone(),
                dtype: dtype_name.to_string(),
                expected: n * elem,
                actual: bytes.len(),
            });
        }
        let data: Vec<f32> = match info.dtype {
            Dtype::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            _ => bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        };
        Ok(HostTensor {
            data,
            shape: info.shape.clone(),
        })
    }
}

/// A GGUF file read through Hugging Face names.
pub struct GgufWeights {
    pub file: GgufFile,
    architecture: Architecture,
    num_heads: usize,
    num_kv_heads: usize,
}

impl GgufWeights {
    pub fn new(
        file: GgufFile,
        architecture: Architecture,
        num_heads: usize,
        num_kv_heads: usize,
    ) -> Self {
        GgufWeights {
            file,
            architecture,
            num_heads,
            num_kv_heads,
        }
    }

    /// Maps a Hugging Face tensor name to the GGUF one (llama.cpp's naming).
    pub fn gguf_name(&self, hf: &str) -> Option<String> {
        let fixed = match (self.architecture, hf) {
            (Architecture::Gpt2, "transformer.wte.weight") => Some("token_embd.weight"),
            (Architecture::Gpt2, "transformer.wpe.weight") => Some("position_embd.weight"),
            (Architecture::Gpt2, "transformer.ln_f.weight") => Some("output_norm.weight"),
            (Architecture::Gpt2, "transformer.ln_f.bias") => Some("output_norm.bias"),
            (_, "model.embed_tokens.weight") => Some("token_embd.weight"),
            (_, "model.norm.weight") => Some("output_norm.weight"),
            (_, "lm_head.weight") => Some("output.weight"),
            _ => None,
        };
        if let Some(name) = fixed {
            return Some(name.to_string());
        }
        let (prefix, rest) = match self.architecture {
            Architecture::Gpt2 => ("transformer.h.", hf.strip_prefix("transformer.h.")?),
            _ => ("model.layers.", hf.strip_prefix("model.layers.")?),
        };
        let _ = prefix;
        let (layer, tail) = rest.split_once('.')?;
        let layer: usize = layer.parse().ok()?;
        let (module, kind) = tail.rsplit_once('.')?;
        let gguf_module = match module {
            "input_layernorm" | "ln_1" => "attn_norm",
            "post_attention_layernorm" | "ln_2" => "ffn_norm",
            "self_attn.q_proj" => "attn_q",
            "self_attn.k_proj" => "attn_k",
            "self_attn.v_proj" => "attn_v",
            "self_attn.o_proj" | "attn.c_proj" => "attn_output",
            "attn.c_attn" => "attn_qkv",
            "mlp.gate_proj" => "ffn_gate",
            "mlp.up_proj" | "mlp.c_fc" => "ffn_up",
            "mlp.down_proj" | "mlp.c_proj" => "ffn_down",
            _ => return None,
        };
        Some(format!("blk.{layer}.{gguf_module}.{kind}"))
    }

    pub fn get(&self, hf: &str) -> Result<HostTensor> {
        let name = self
            .gguf_name(hf)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.file.path.clone(),
                tensor: hf.to_string(),
            })?;
        let (data, shape) = self.file.tensor_f32(&name)?;
        let mut t = HostTensor { data, shape };
        match self.architecture {
            // llama.cpp permutes the rows of Q and K in Llama GGUFs so that its RoPE works on
            // adjacent pairs; undo it to get back Hugging Face's rotate-half layout.
            Architecture::Llama if hf.ends_with("q_proj.weight") => {
                t = unpermute_rows(t, self.num_heads)
            }
            Architecture::Llama if hf.ends_with("k_proj.weight") => {
                t = unpermute_rows(t, self.num_kv_heads)
            }
            Architecture::Llama if hf.ends_with("q_proj.bias") => {
                t = unpermute_rows(t, self.num_heads)
            }
            Architecture::Llama if hf.ends_with("k_proj.bias") => {
                t = unpermute_rows(t, self.num_kv_heads)
            }
            // GPT-2's Conv1D weights are stored [in, out] by Hugging Face and transposed to
            // [out, in] by llama.cpp's converter.
            Architecture::Gpt2
                if t.shape.len() == 2
                    && (hf.ends_with("c_attn.weight")
                        || hf.ends_with("c_proj.weight")
                        || hf.ends_with("c_fc.weight")) =>
            {
                t = t.transposed()
            }
            _ => {}
        }
        Ok(t)
    }
}

/// Inverse of llama.cpp's `permute(w, n_head)`: rows grouped per head as
/// `[n_head, head_dim/2, 2]` go back to `[n_head, 2, head_dim/2]`.
fn unpermute_rows(t: HostTensor, n_head: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols: usize = t.shape[1..].iter().product::<usize>().max(1);
    let head_dim = rows / n_head;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; t.data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                let src = h * head_dim + i * 2 + j;
                let dst = h * head_dim + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&t.data[src * cols..(src + 1) * cols]);
            }
        }
    }
    HostTensor {
        data: out,
        shape: t.shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // permute as llama.cpp's converter does: reshape(n_head, 2, hd/2, cols).swapaxes(1, 2)
        let (n_head, head_dim, cols) = (2, 4, 3);
        let rows = n_head * head_dim;
        let orig: Vec<f32> = (0..rows * cols).map(|x| x as f32).collect();
        let mut permuted = vec![0.0; orig.len()];
        for h in 0..n_head {
            for two in 0..2 {
                for i in 0..head_dim / 2 {
                    let src = h * head_dim + two * (head_dim / 2) + i;
                    let dst = h * head_dim + i * 2 + two;
                    permuted[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&orig[src * cols..(src + 1) * cols]);
                }
            }
        }
        let back = unpermute_rows(
            HostTensor {
                data: permuted,
                shape: vec![rows, cols],
            },
            n_head,
        );
        assert_eq!(back.data, orig);
    }

    #[test]
    fn transpose_round_trips() {
        let t = HostTensor {
            data: (0..35 * 70).map(|x| x as f32).collect(),
            shape: vec![35, 70],
        };
        let tt = t.transposed();
        assert_eq!(tt.shape, vec![70, 35]);
        assert_eq!(tt.data[35 + 2], t.data[2 * 70 + 1]);
        assert_eq!(tt.transposed().data, t.data);
    }

    #[test]
    fn pickles_are_refused_by_name() {
        for name in ["pytorch_model.bin", "model.pt", "x.pth", "a.ckpt"] {
            let err = refuse_pickle(Path::new(name)).unwrap_err();
            assert!(matches!(err, EngineError::PickleRefused { .. }), "{name}");
        }
        refuse_pickle(Path::new("model.safetensors")).unwrap();
    }
}

//! Weight files: Hugging Face safetensors (single or sharded) and GGUF, read by their
//! Hugging Face tensor names and shapes so that the model code has one naming scheme.
//!
//! Pickled checkpoints (`pytorch_model.bin`, `.pt`, `.pth`, `.ckpt`) are never opened.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use burn::tensor::{AllocationProperty, Bytes};
use memmap2::Mmap;
use penwright_kernels::GgmlType;
use penwright_kernels::ops::PackedLayout;
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

/// A weight matrix in its file's element format (GGUF blocks, or f32/f16/bf16), ready to
/// go to a device: `layout.rows × layout.cols` in Hugging Face's `[out, in]` orientation,
/// the bytes padded to whole `u32` words. Where the file's bytes can be used as they are,
/// they are borrowed from its memory map, not copied.
pub struct PackedHost {
    pub layout: PackedLayout,
    pub bytes: Bytes,
}

/// `range` of a mapped file as tensor bytes padded to whole words: borrowed from the map
/// when the padded range lies inside the file and is word-aligned, else copied.
fn mapped_bytes(map: &Arc<Mmap>, range: std::ops::Range<usize>) -> Bytes {
    let padded = range.start..range.start + (range.end - range.start).div_ceil(4) * 4;
    let aligned = (map.as_ptr() as usize + range.start).is_multiple_of(4);
    if aligned && padded.end <= map.len() {
        let owner = MapSlice {
            map: map.clone(),
            range: padded,
        };
        Bytes::from_shared(bytes::Bytes::from_owner(owner), AllocationProperty::File)
    } else {
        copied_from_map(map, range.clone(), map[range].to_vec())
    }
}

/// An unquantized matrix quantized to `ty` (or Q8_0 where its rows are not whole blocks
/// of `ty`); quantized matrices and ones that fit neither are returned as they are.
fn quantized(packed: PackedHost, ty: GgmlType) -> PackedHost {
    let PackedLayout {
        ty: from,
        rows,
        cols,
    } = packed.layout;
    if !matches!(from, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) {
        return packed;
    }
    let Some(ty) = [ty, GgmlType::Q8_0]
        .into_iter()
        .find(|t| cols.is_multiple_of(t.block_size()))
    else {
        return packed;
    };
    let row_bytes = from.type_size() * cols;
    let mut out = Vec::with_capacity(ty.row_bytes(cols).unwrap_or(0) * rows);
    let mut row = vec![0.0f32; cols];
    for r in 0..rows {
        let src = &packed.bytes[r * row_bytes..(r + 1) * row_bytes];
        penwright_kernels::dequant::dequantize_into(from, src, &mut row)
            .expect("whole f32/f16/bf16 rows");
        penwright_kernels::quantize::quantize_row(ty, &row, &mut out);
    }
    PackedHost {
        layout: PackedLayout { ty, rows, cols },
        bytes: owned_bytes(out),
    }
}

/// Owned bytes made from `range` of a mapped file (its rows reordered, transposed or
/// realigned): once copied, the map's pages of that range are released from the process
/// (`MADV_DONTNEED`), so the tensor is resident once, not twice. The page cache keeps them,
/// reclaimable like any file read. A Llama-family GGUF's q and k projections are reordered
/// (llama.cpp permutes their rows); on 1.7B-shape files that is 113 MB (Q4_K_M) and 214 MB
/// (Q8_0), and the peak RSS of `penwright bench` fell from 1452 to 1325 MB and from 2279
/// to 2056 MB.
fn copied_from_map(map: &Mmap, range: std::ops::Range<usize>, copy: Vec<u8>) -> Bytes {
    release_pages(map, range);
    owned_bytes(copy)
}

/// Drops the whole pages inside `range` of `map` from the process's resident memory.
fn release_pages(map: &Mmap, range: std::ops::Range<usize>) {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0);
        if page == 0 {
            return;
        }
        let start = range.start.next_multiple_of(page);
        let end = range.end.min(map.len()) / page * page;
        if start < end {
            // SAFETY: the map is a read-only mapping of a file: a dropped page reads back
            // from the file with the same bytes on its next access, so no borrow of the
            // map sees anything change. Failure only leaves the pages in.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }
    #[cfg(not(unix))]
    let _ = (map, range);
}

/// Owned tensor bytes, zero-padded to whole words.
fn owned_bytes(mut v: Vec<u8>) -> Bytes {
    v.resize(v.len().div_ceil(4) * 4, 0);
    Bytes::from_bytes_vec(v)
}

/// A part of a shared memory map (the owner `bytes::Bytes` keeps alive).
struct MapSlice {
    map: Arc<Mmap>,
    range: std::ops::Range<usize>,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.range.clone()]
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

    /// Quantizes the unquantized (f32/f16/bf16) matrices to `ty` (one of
    /// [`penwright_kernels::quantize::TARGETS`]) as they load: the memory of a quantized
    /// file for a checkpoint that came in half precision. Matrices whose rows are not whole
    /// blocks of `ty` fall back to Q8_0, or stay as they are.
    pub fn quantize_at_load(mut self, ty: GgmlType) -> Self {
        match &mut self {
            WeightSource::Safetensors(w) => w.quantize = Some(ty),
            WeightSource::Gguf(w) => w.quantize = Some(ty),
        }
        self
    }

    /// Reads a 2-D weight in its file's format (or quantized, see
    /// [`WeightSource::quantize_at_load`]), checked against the Hugging Face shape
    /// `[out, in]` (`conv1d`: GPT-2's Conv1D weights, which Hugging Face stores `[in, out]`).
    pub fn get_packed(&self, name: &str, out_in: [usize; 2], conv1d: bool) -> Result<PackedHost> {
        let (packed, quantize) = match self {
            WeightSource::Safetensors(w) => (w.get_packed(name, conv1d)?, w.quantize),
            WeightSource::Gguf(w) => (w.get_packed(name)?, w.quantize),
        };
        let packed = match quantize {
            Some(ty) => quantized(packed, ty),
            None => packed,
        };
        let (rows, cols) = (packed.layout.rows, packed.layout.cols);
        if [rows, cols] != out_in {
            let actual = if conv1d {
                vec![cols, rows]
            } else {
                vec![rows, cols]
            };
            let expected = if conv1d {
                vec![out_in[1], out_in[0]]
            } else {
                out_in.to_vec()
            };
            return Err(EngineError::TensorShape {
                path: self.path().to_path_buf(),
                tensor: name.to_string(),
                expected,
                actual,
            });
        }
        Ok(packed)
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

    /// How many values the file's tensors hold together, by their headers (what a model
    /// read from it can have at most, whatever its config claims).
    pub fn stored_values(&self) -> u64 {
        match self {
            WeightSource::Safetensors(w) => w
                .shards
                .iter()
                .flat_map(|s| s.tensors.values())
                .map(|t| {
                    t.shape
                        .iter()
                        .try_fold(1u64, |n, &d| n.checked_mul(d as u64))
                        .unwrap_or(u64::MAX)
                })
                .fold(0u64, u64::saturating_add),
            WeightSource::Gguf(w) => w
                .file
                .header
                .tensors
                .iter()
                .map(|t| t.n_elements())
                .fold(0u64, u64::saturating_add),
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
    mmap: Arc<Mmap>,
    header_len: usize,
    tensors: BTreeMap<String, safetensors::tensor::TensorInfo>,
}

/// One or more `.safetensors` files of a Hugging Face model folder.
pub struct SafetensorsWeights {
    dir: PathBuf,
    shards: Vec<Shard>,
    /// tensor name → index in `shards`
    index: BTreeMap<String, usize>,
    /// Unquantized matrices are quantized to this type as they load.
    quantize: Option<GgmlType>,
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

/// A plain `*.safetensors` file name: one path component, not hidden, not `..`.
fn is_shard_name(name: &str) -> bool {
    let path = Path::new(name);
    let mut parts = path.components();
    matches!(
        (parts.next(), parts.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && name.ends_with(".safetensors")
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
            // a shard is a file of this folder: no path, no `..`, a .safetensors name
            if let Some(bad) = names.iter().find(|n| !is_shard_name(n)) {
                return Err(EngineError::Malformed {
                    path: index_path.clone(),
                    what: format!(
                        "shard `{bad}` is not a .safetensors file name inside the model folder"
                    ),
                });
            }
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
                mmap: Arc::new(mmap),
                header_len,
                tensors,
            });
        }
        Ok(SafetensorsWeights {
            dir: dir.to_path_buf(),
            shards,
            index,
            quantize: None,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }
}

/// A tensor's place in its shard: the shard, the byte range, its dtype and shape.
struct Located<'a> {
    shard: &'a Shard,
    range: std::ops::Range<usize>,
    dtype: GgmlType,
    shape: Vec<usize>,
}

impl SafetensorsWeights {
    fn locate(&self, name: &str) -> Result<Located<'_>> {
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
        if shard.mmap.get(start..end).is_none() {
            return Err(EngineError::Truncated {
                path: shard.path.clone(),
                what: format!("tensor `{name}` ends past the end of the file"),
            });
        }
        let n: usize = info.shape.iter().product();
        let dtype = match info.dtype {
            Dtype::F32 => GgmlType::F32,
            Dtype::F16 => GgmlType::F16,
            Dtype::BF16 => GgmlType::BF16,
            other => {
                return Err(EngineError::UnsupportedDtype {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    dtype: format!("{other:?}"),
                });
            }
        };
        let elem = dtype.type_size();
        if end - start != n * elem {
            return Err(EngineError::TensorSize {
                path: shard.path.clone(),
                tensor: name.to_string(),
                shape: info.shape.clone(),
                dtype: dtype.name().to_string(),
                expected: n * elem,
                actual: end - start,
            });
        }
        Ok(Located {
            shard,
            range: start..end,
            dtype,
            shape: info.shape.clone(),
        })
    }

    pub fn get(&self, name: &str) -> Result<HostTensor> {
        let t = self.locate(name)?;
        let bytes = &t.shard.mmap[t.range.clone()];
        let n = bytes.len() / t.dtype.type_size();
        let data =
            penwright_kernels::dequant::dequantize_to_vec(t.dtype, bytes, n).map_err(|e| {
                EngineError::Malformed {
                    path: t.shard.path.clone(),
                    what: format!("tensor `{name}`: {e}"),
                }
            })?;
        Ok(HostTensor {
            data,
            shape: t.shape,
        })
    }

    /// A 2-D tensor in its stored precision; `conv1d` weights (`[in, out]`) are transposed
    /// to `[out, in]` (a copy), the others borrowed from the map.
    fn get_packed(&self, name: &str, conv1d: bool) -> Result<PackedHost> {
        let t = self.locate(name)?;
        let [a, b] =
            <[usize; 2]>::try_from(t.shape.as_slice()).map_err(|_| EngineError::TensorShape {
                path: t.shard.path.clone(),
                tensor: name.to_string(),
                expected: vec![0, 0],
                actual: t.shape.clone(),
            })?;
        let (rows, cols, bytes) = if conv1d {
            let elem = t.dtype.type_size();
            let src = &t.shard.mmap[t.range.clone()];
            let mut out = vec![0u8; src.len()];
            for i in 0..a {
                for j in 0..b {
                    let (s, d) = ((i * b + j) * elem, (j * a + i) * elem);
                    out[d..d + elem].copy_from_slice(&src[s..s + elem]);
                }
            }
            (b, a, copied_from_map(&t.shard.mmap, t.range.clone(), out))
        } else {
            (a, b, mapped_bytes(&t.shard.mmap, t.range.clone()))
        };
        Ok(PackedHost {
            layout: PackedLayout {
                ty: t.dtype,
                rows,
                cols,
            },
            bytes,
        })
    }
}

/// A GGUF file read through Hugging Face names.
pub struct GgufWeights {
    pub file: GgufFile,
    architecture: Architecture,
    num_heads: usize,
    num_kv_heads: usize,
    /// Unquantized matrices are quantized to this type as they load.
    quantize: Option<GgmlType>,
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
            quantize: None,
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

    /// How many heads a Q or K projection's rows were permuted over by llama.cpp's
    /// converter (Llama GGUFs only; its RoPE works on adjacent pairs).
    fn permuted_heads(&self, hf: &str) -> Option<usize> {
        match self.architecture {
            Architecture::Llama if hf.ends_with("q_proj.weight") || hf.ends_with("q_proj.bias") => {
                Some(self.num_heads)
            }
            Architecture::Llama if hf.ends_with("k_proj.weight") || hf.ends_with("k_proj.bias") => {
                Some(self.num_kv_heads)
            }
            _ => None,
        }
    }

    /// A 2-D weight in its GGUF block format, `[out, in]` (GGUF's `ne0` is the input
    /// dimension, GPT-2's Conv1D weights included). Borrowed from the map unless its rows
    /// must be reordered.
    fn get_packed(&self, hf: &str) -> Result<PackedHost> {
        let name = self
            .gguf_name(hf)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.file.path.clone(),
                tensor: hf.to_string(),
            })?;
        let info = self
            .file
            .tensor_info(&name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.file.path.clone(),
                tensor: name.clone(),
            })?;
        let dims: Vec<usize> = info.shape();
        let [rows, cols] =
            <[usize; 2]>::try_from(dims.as_slice()).map_err(|_| EngineError::TensorShape {
                path: self.file.path.clone(),
                tensor: name.clone(),
                expected: vec![0, 0],
                actual: dims.clone(),
            })?;
        if !info.dtype.is_supported() {
            return Err(EngineError::UnsupportedDtype {
                path: self.file.path.clone(),
                tensor: name,
                dtype: info.dtype.name().to_string(),
            });
        }
        let range = self.file.tensor_range(&name)?;
        let bytes = match self.permuted_heads(hf) {
            None => mapped_bytes(self.file.mapping(), range),
            Some(heads) => {
                let map = self.file.mapping();
                let src = &map[range.clone()];
                let row_len = src.len() / rows.max(1);
                let copy = reorder_rows(src, row_len, &unpermuted_order(rows, heads));
                copied_from_map(map, range, copy)
            }
        };
        Ok(PackedHost {
            layout: PackedLayout {
                ty: info.dtype,
                rows,
                cols,
            },
            bytes,
        })
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
        if let Some(heads) = self.permuted_heads(hf) {
            // undo llama.cpp's permutation to get back Hugging Face's rotate-half layout
            t = unpermute_rows(t, heads);
        }
        match self.architecture {
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
/// `[n_head, head_dim/2, 2]` go back to `[n_head, 2, head_dim/2]`. Returns, for each row of
/// the result, the row of the input it comes from.
fn unpermuted_order(rows: usize, n_head: usize) -> Vec<usize> {
    let mut src_of: Vec<usize> = (0..rows).collect();
    let head_dim = rows / n_head.max(1);
    let half = head_dim / 2;
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                src_of[h * head_dim + j * half + i] = h * head_dim + i * 2 + j;
            }
        }
    }
    src_of
}

/// Rows of `row_len` units (f32 values or bytes) reordered: row `d` of the result is row
/// `order[d]` of `src`.
fn reorder_rows<T: Copy + Default>(src: &[T], row_len: usize, order: &[usize]) -> Vec<T> {
    let mut out = vec![T::default(); src.len()];
    for (d, &s) in order.iter().enumerate() {
        out[d * row_len..(d + 1) * row_len].copy_from_slice(&src[s * row_len..(s + 1) * row_len]);
    }
    out
}

fn unpermute_rows(t: HostTensor, n_head: usize) -> HostTensor {
    let rows = t.shape[0];
    let cols: usize = t.shape[1..].iter().product::<usize>().max(1);
    HostTensor {
        data: reorder_rows(&t.data, cols, &unpermuted_order(rows, n_head)),
        shape: t.shape,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The resident kilobytes of the mapping that starts at `addr` (from /proc/self/smaps).
    #[cfg(target_os = "linux")]
    fn resident_kb(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines();
        while let Some(line) = lines.next() {
            let start = line.split('-').next().unwrap_or("");
            if usize::from_str_radix(start, 16) == Ok(addr) {
                for l in lines.by_ref() {
                    if let Some(kb) = l.strip_prefix("Rss:") {
                        return kb.trim().trim_end_matches(" kB").trim().parse().unwrap();
                    }
                }
            }
        }
        panic!("no mapping at {addr:#x}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_copied_tensor_leaves_the_process_once_its_pages_are_released() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        let len = 8 << 20;
        std::fs::write(
            &path,
            (0..len).map(|i| (i % 251) as u8).collect::<Vec<u8>>(),
        )
        .unwrap();
        let map = unsafe { Mmap::map(&File::open(&path).unwrap()) }.unwrap();
        let addr = map.as_ptr() as usize;
        let sum: u64 = map.iter().step_by(4096).map(|&b| u64::from(b)).sum();
        assert!(sum > 0);
        assert!(resident_kb(addr) >= 8 << 10, "the read pages are resident");
        // a tensor in the middle, not on page boundaries
        let range = 1000..(6 << 20) + 123;
        let copy = copied_from_map(&map, range.clone(), map[range.clone()].to_vec());
        let left = resident_kb(addr);
        assert!(
            left <= (8 << 10) - (6 << 10) + 8,
            "{left} kB of the 8 MB map still resident after releasing 6 MB of it"
        );
        // the map still reads the file's bytes, and the copy is whole
        assert_eq!(&copy[..range.len()], &map[range.clone()]);
        assert!(map.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
    }

    #[test]
    fn shard_names_cannot_leave_the_model_folder() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "../../../../etc/passwd",
            "/etc/passwd",
            "sub/model.safetensors",
            "..",
            ".hidden.safetensors",
            "model.bin",
        ] {
            let index = serde_json::json!({"weight_map": {"w": bad}});
            std::fs::write(
                dir.path().join("model.safetensors.index.json"),
                index.to_string(),
            )
            .unwrap();
            let err = SafetensorsWeights::open_dir(dir.path())
                .err()
                .expect("refused");
            assert!(
                err.to_string().contains(&format!("shard `{bad}` is not")),
                "{bad}: {err}"
            );
        }
        assert!(is_shard_name("model-00001-of-00002.safetensors"));
    }

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

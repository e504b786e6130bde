//! Writing GGUF files: the header, then each tensor's bytes streamed from a callback, so a
//! multi-gigabyte file never sits in memory (the synthetic models of `penwright bench`,
//! and the tests' hand-made files).

use std::io::{self, Write};

use super::MetaValue;

/// A GGUF file's header, to be written with [`GgufWriter::write_to`].
pub struct GgufWriter {
    pub version: u32,
    pub alignment: usize,
    kvs: Vec<(String, MetaValue)>,
    /// name, dims (GGUF order: `ne0` first), ggml type id, byte length
    tensors: Vec<(String, Vec<u64>, u32, usize)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl GgufWriter {
    /// Version 3, 32-byte alignment.
    pub fn new() -> Self {
        GgufWriter {
            version: 3,
            alignment: super::DEFAULT_ALIGNMENT as usize,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(&mut self, key: &str, v: MetaValue) {
        self.kvs.push((key.to_string(), v));
    }

    /// Declares a tensor of `byte_len` bytes; its data comes later, in this order.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ggml_type: u32, byte_len: usize) {
        self.tensors
            .push((name.to_string(), dims.to_vec(), ggml_type, byte_len));
    }

    /// Writes the file; `data(i, buf)` appends tensor `i`'s bytes to `buf`. Returns the
    /// offset of the data section.
    pub fn write_to(
        &self,
        out: &mut impl Write,
        mut data: impl FnMut(usize, &mut Vec<u8>),
    ) -> io::Result<u64> {
        let align = |n: usize| n.div_ceil(self.alignment) * self.alignment;
        let mut head = b"GGUF".to_vec();
        head.extend(self.version.to_le_bytes());
        head.extend((self.tensors.len() as u64).to_le_bytes());
        head.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut head, k);
            head.extend(type_id(v).to_le_bytes());
            put_value(&mut head, v);
        }
        let mut offset = 0usize;
        for (name, dims, ty, len) in &self.tensors {
            put_str(&mut head, name);
            head.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                head.extend(d.to_le_bytes());
            }
            head.extend(ty.to_le_bytes());
            head.extend((offset as u64).to_le_bytes());
            offset = align(offset + len);
        }
        let data_offset = align(head.len());
        head.resize(data_offset, 0);
        out.write_all(&head)?;
        let mut buf = Vec::new();
        for (i, (name, _, _, len)) in self.tensors.iter().enumerate() {
            buf.clear();
            data(i, &mut buf);
            if buf.len() != *len {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("tensor `{name}`: {} bytes, declared {len}", buf.len()),
                ));
            }
            buf.resize(align(buf.len()), 0);
            out.write_all(&buf)?;
        }
        Ok(data_offset as u64)
    }
}

fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.push(*x),
        MetaValue::I8(x) => out.push(*x as u8),
        MetaValue::U16(x) => out.extend(x.to_le_bytes()),
        MetaValue::I16(x) => out.extend(x.to_le_bytes()),
        MetaValue::U32(x) => out.extend(x.to_le_bytes()),
        MetaValue::I32(x) => out.extend(x.to_le_bytes()),
        MetaValue::F32(x) => out.extend(x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(*x as u8),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(items) => {
            let elem = items.first().map(type_id).unwrap_or(0);
            out.extend(elem.to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                put_value(out, item);
            }
        }
        MetaValue::U64(x) => out.extend(x.to_le_bytes()),
        MetaValue::I64(x) => out.extend(x.to_le_bytes()),
        MetaValue::F64(x) => out.extend(x.to_le_bytes()),
    }
}

//! Writing a GGUF file (version 3, little-endian, 32-byte alignment): the metadata, the tensor
//! infos, then each tensor quantised and written in turn, so that only one tensor's bytes are
//! held at a time. The file is made atomically (a temporary sibling renamed into place).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::quant::quantize;
use super::reader::{Value, DEFAULT_ALIGNMENT, MAGIC};
use super::types::GgmlType;
use crate::io::replace_atomic;

/// A tensor to write: its llama.cpp name, its values (any floating dtype and device) and the
/// type to store it as.
pub struct Entry {
    pub name: String,
    pub tensor: Tensor,
    pub ggml_type: GgmlType,
}

fn put_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn put_value(w: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::U8(x) => w.write_all(&[*x]),
        Value::I8(x) => w.write_all(&x.to_le_bytes()),
        Value::U16(x) => w.write_all(&x.to_le_bytes()),
        Value::I16(x) => w.write_all(&x.to_le_bytes()),
        Value::U32(x) => w.write_all(&x.to_le_bytes()),
        Value::I32(x) => w.write_all(&x.to_le_bytes()),
        Value::U64(x) => w.write_all(&x.to_le_bytes()),
        Value::I64(x) => w.write_all(&x.to_le_bytes()),
        Value::F32(x) => w.write_all(&x.to_le_bytes()),
        Value::F64(x) => w.write_all(&x.to_le_bytes()),
        Value::Bool(x) => w.write_all(&[*x as u8]),
        Value::Str(s) => put_str(w, s),
        Value::Array(items) => {
            let inner = items.first().map(Value::type_code).unwrap_or(8);
            w.write_all(&inner.to_le_bytes())?;
            w.write_all(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| put_value(w, i))
        }
    }
}

fn pad(w: &mut impl Write, written: u64) -> std::io::Result<u64> {
    let padding = written.next_multiple_of(DEFAULT_ALIGNMENT) - written;
    w.write_all(&vec![0u8; padding as usize])?;
    Ok(padding)
}

/// The float32 values of a tensor, in row-major order.
fn values(t: &Tensor) -> Result<Vec<f32>> {
    let host = t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?;
    let n = host.numel();
    let mut out = vec![0f32; n];
    host.f_copy_data(&mut out, n)?;
    Ok(out)
}

/// Writes `metadata` and `tensors` to `path` as a GGUF file.
pub fn write(path: &Path, metadata: &[(String, Value)], tensors: &[Entry]) -> Result<()> {
    for (key, v) in metadata {
        if let Value::Array(items) = v {
            if items.iter().any(|i| i.type_code() != items[0].type_code()) {
                bail!("metadata '{key}' mixes value types in one array");
            }
        }
    }
    let mut sizes = Vec::with_capacity(tensors.len());
    for e in tensors {
        let dims: Vec<u64> = e.tensor.size().iter().rev().map(|d| *d as u64).collect();
        let bytes = e.ggml_type.bytes_for(&dims).with_context(|| format!("tensor '{}' as {}", e.name, e.ggml_type.name()))?;
        sizes.push((dims, bytes));
    }
    replace_atomic(path, |tmp| {
        let file = File::create(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut w = BufWriter::new(file);
        let mut header = Vec::new();
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&3u32.to_le_bytes());
        header.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
        header.extend_from_slice(&(metadata.len() as u64).to_le_bytes());
        for (key, v) in metadata {
            put_str(&mut header, key)?;
            header.extend_from_slice(&v.type_code().to_le_bytes());
            put_value(&mut header, v)?;
        }
        let mut offset = 0u64;
        for (e, (dims, bytes)) in tensors.iter().zip(&sizes) {
            put_str(&mut header, &e.name)?;
            header.extend_from_slice(&(dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| header.extend_from_slice(&d.to_le_bytes()));
            header.extend_from_slice(&e.ggml_type.code().to_le_bytes());
            header.extend_from_slice(&offset.to_le_bytes());
            offset = (offset + bytes).next_multiple_of(DEFAULT_ALIGNMENT);
        }
        w.write_all(&header)?;
        pad(&mut w, header.len() as u64)?;
        for (e, (_, bytes)) in tensors.iter().zip(&sizes) {
            let data = quantize(e.ggml_type, &values(&e.tensor)?).with_context(|| format!("tensor '{}'", e.name))?;
            debug_assert_eq!(data.len() as u64, *bytes);
            w.write_all(&data)?;
            pad(&mut w, data.len() as u64)?;
        }
        w.flush().with_context(|| format!("cannot write {}", tmp.display()))
    })
}

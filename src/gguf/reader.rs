//! Reading a GGUF file (llama.cpp's format, versions 2 and 3): the header, the metadata
//! key-values, the tensor infos and the aligned data section, memory-mapped. Every count, length
//! and offset is checked against the bytes that are really there before anything is allocated,
//! so that a truncated or hostile file is an error naming what is wrong, never a crash or a huge
//! allocation.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::types::GgmlType;

pub const MAGIC: &[u8; 4] = b"GGUF";
/// The data section's alignment when `general.alignment` does not say.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml tensors have at most four dimensions.
pub const MAX_DIMS: u32 = 4;
/// Arrays nest at most this deep (real files use arrays of scalars or strings only).
const MAX_NESTING: u32 = 4;

/// A metadata value, as the file types it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    /// The value as an integer, if it is one (of any width).
    pub fn as_i64(&self) -> Option<i64> {
        Some(match *self {
            Value::U8(v) => v as i64,
            Value::I8(v) => v as i64,
            Value::U16(v) => v as i64,
            Value::I16(v) => v as i64,
            Value::U32(v) => v as i64,
            Value::I32(v) => v as i64,
            Value::U64(v) => i64::try_from(v).ok()?,
            Value::I64(v) => v,
            _ => return None,
        })
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The GGUF type code of this value (`gguf_type`).
    pub fn type_code(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::Str(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }
}

/// One tensor's entry: its name, its dimensions in ggml's order (`ne[0]`, the row length,
/// first), its type and where its bytes are (from the start of the file).
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    pub offset: u64,
    pub nbytes: u64,
}

impl TensorInfo {
    /// The shape as PyTorch orders it (the row length last).
    pub fn shape(&self) -> Vec<i64> {
        self.dims.iter().rev().map(|d| *d as i64).collect()
    }

    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// Where a GGUF's bytes are: a mapped file, or bytes in memory.
enum Bytes {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        }
    }
}

/// An open GGUF file: its metadata and tensor infos, and its bytes.
pub struct Gguf {
    pub version: u32,
    pub metadata: BTreeMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    bytes: Bytes,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: a read-only map; moontune never writes to a file it has mapped.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
        let (version, metadata, tensors, alignment) = parse(&mmap).with_context(|| format!("{} is not a valid GGUF file", path.display()))?;
        Ok(Gguf { version, metadata, tensors, alignment, bytes: Bytes::Mapped(mmap) })
    }

    /// A GGUF held in memory (what the coverage-guided fuzz target feeds arbitrary bytes to).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf> {
        let (version, metadata, tensors, alignment) = parse(&bytes).context("not a valid GGUF file")?;
        Ok(Gguf { version, metadata, tensors, alignment, bytes: Bytes::Owned(bytes) })
    }

    /// The bytes of tensor `info` (checked to lie inside the file when it was opened).
    pub fn data(&self, info: &TensorInfo) -> &[u8] {
        &self.bytes.as_slice()[info.offset as usize..(info.offset + info.nbytes) as usize]
    }

    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.get(key)
    }

    /// A string the file must have.
    pub fn string(&self, key: &str) -> Result<&str> {
        match self.get(key) {
            Some(v) => v.as_str().with_context(|| format!("metadata '{key}' must be a string")),
            None => bail!("the file lacks metadata '{key}'"),
        }
    }
}

type Parsed = (u32, BTreeMap<String, Value>, Vec<TensorInfo>, u64);

/// A cursor over the file's bytes that refuses to read past their end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.left() {
            bail!("truncated: {what} needs {n} bytes at offset {}, but the file ends {} bytes later", self.at, self.left());
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        Ok(self.take(N, what)?.try_into().expect("N bytes"))
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    /// A count of things each at least `min_size` bytes long: more than the rest of the file
    /// could hold is refused before anything is allocated for them.
    fn count(&mut self, what: &str, min_size: usize) -> Result<usize> {
        let n = self.u64(what)?;
        if n > (self.left() / min_size.max(1)) as u64 {
            bail!("{what} is {n}, more than the {} bytes left in the file could hold", self.left());
        }
        Ok(n as usize)
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(&format!("the length of {what}"))?;
        if len > self.left() as u64 {
            bail!("{what} is {len} bytes long, past the end of the file ({} bytes left)", self.left());
        }
        let bytes = self.take(len as usize, what)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| anyhow::anyhow!("{what} is not valid UTF-8"))
    }

    fn value(&mut self, code: u32, what: &str, depth: u32) -> Result<Value> {
        Ok(match code {
            0 => Value::U8(self.array::<1>(what)?[0]),
            1 => Value::I8(self.array::<1>(what)?[0] as i8),
            2 => Value::U16(u16::from_le_bytes(self.array(what)?)),
            3 => Value::I16(i16::from_le_bytes(self.array(what)?)),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(i32::from_le_bytes(self.array(what)?)),
            6 => Value::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => bail!("{what} is a bool stored as {b} (must be 0 or 1)"),
            },
            8 => Value::Str(self.string(what)?),
            9 => {
                if depth >= MAX_NESTING {
                    bail!("{what} nests arrays more than {MAX_NESTING} deep");
                }
                let inner = self.u32(&format!("the element type of {what}"))?;
                let min = min_value_size(inner).with_context(|| format!("{what} is an array of unknown type {inner}"))?;
                let n = self.count(&format!("the length of {what}"), min)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(inner, what, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(i64::from_le_bytes(self.array(what)?)),
            12 => Value::F64(f64::from_le_bytes(self.array(what)?)),
            other => bail!("{what} has unknown value type {other}"),
        })
    }
}

/// The fewest bytes a value of type `code` takes (a string: its 8-byte length).
fn min_value_size(code: u32) -> Option<usize> {
    Some(match code {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 | 10..=12 => 8,
        9 => 12,
        _ => return None,
    })
}

fn parse(bytes: &[u8]) -> Result<Parsed> {
    let mut c = Cursor { bytes, at: 0 };
    let magic = c.take(4, "the magic number")?;
    if magic != MAGIC {
        bail!("it does not start with the magic 'GGUF' (found {:?})", String::from_utf8_lossy(magic));
    }
    let version = c.u32("the version")?;
    match version {
        2 | 3 => {}
        1 => bail!("GGUF version 1 (32-bit counts) is not supported; convert it with a recent llama.cpp"),
        v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => bail!("it is a big-endian GGUF; only little-endian files are supported"),
        v => bail!("GGUF version {v} is not supported (versions 2 and 3 are)"),
    }
    // Each tensor info takes at least 8 (name length) + 4 (dims) + 8 (one dim) + 4 + 8 bytes.
    let tensor_count = c.count("the tensor count", 32)?;
    let kv_count = c.count("the metadata count", 13)?;
    let mut metadata = BTreeMap::new();
    for i in 0..kv_count {
        let key = c.string(&format!("metadata key {i}"))?;
        let code = c.u32(&format!("the type of metadata '{key}'"))?;
        let value = c.value(code, &format!("metadata '{key}'"), 0)?;
        if metadata.insert(key.clone(), value).is_some() {
            bail!("metadata '{key}' appears twice");
        }
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::U32(a)) if a.is_power_of_two() => *a as u64,
        Some(v) => bail!("general.alignment must be a power of two stored as uint32, got {v:?}"),
    };
    let mut infos = Vec::with_capacity(tensor_count);
    let mut names = std::collections::BTreeSet::new();
    for i in 0..tensor_count {
        let name = c.string(&format!("the name of tensor {i}"))?;
        if !names.insert(name.clone()) {
            bail!("tensor '{name}' appears twice");
        }
        let n_dims = c.u32(&format!("the dimension count of tensor '{name}'"))?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            bail!("tensor '{name}' has {n_dims} dimensions (1 to {MAX_DIMS} are allowed)");
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(c.u64(&format!("dimension {d} of tensor '{name}'"))?);
        }
        let code = c.u32(&format!("the type of tensor '{name}'"))?;
        let ggml_type = GgmlType::from_code(code).with_context(|| format!("tensor '{name}'"))?;
        let offset = c.u64(&format!("the offset of tensor '{name}'"))?;
        if offset % alignment != 0 {
            bail!("tensor '{name}' starts at offset {offset}, which is not a multiple of the alignment {alignment}");
        }
        let nbytes = ggml_type.bytes_for(&dims).with_context(|| format!("tensor '{name}' with dimensions {dims:?}"))?;
        infos.push(TensorInfo { name, dims, ggml_type, offset, nbytes });
    }
    let data_start = (c.at as u64).div_ceil(alignment) * alignment;
    let file_len = bytes.len() as u64;
    for info in &mut infos {
        let start = data_start.checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(info.nbytes));
        match (start, end) {
            (Some(s), Some(e)) if e <= file_len => info.offset = s,
            _ => bail!(
                "tensor '{}' ({} bytes at data offset {}) lies outside the file ({file_len} bytes; the data section starts at {data_start})",
                info.name, info.nbytes, info.offset
            ),
        }
    }
    Ok((version, metadata, infos, alignment))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, tensors: u64, kvs: u64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(tensors.to_le_bytes());
        b.extend(kvs.to_le_bytes());
        b
    }

    fn err(bytes: &[u8]) -> String {
        format!("{:#}", parse(bytes).err().expect("refused"))
    }

    #[test]
    fn refuses_malformed_headers() {
        assert!(err(b"GGML\x03\0\0\0").contains("magic"));
        assert!(err(&header(1, 0, 0)).contains("version 1"));
        assert!(err(&header(3u32.swap_bytes(), 0, 0)).contains("big-endian"));
        assert!(err(&header(3, u64::MAX, 0)).contains("tensor count"));
        assert!(err(&header(3, 0, 1 << 40)).contains("metadata count"));
        assert!(err(&b"GGUF\x03\0"[..]).contains("truncated"));
    }

    #[test]
    fn refuses_strings_and_arrays_past_the_end() {
        let mut b = header(3, 0, 1);
        b.extend(u64::MAX.to_le_bytes());
        b.extend([0u8; 16]);
        assert!(err(&b).contains("past the end"));
        let mut b = header(3, 0, 1);
        b.extend(1u64.to_le_bytes());
        b.push(b'k');
        b.extend(9u32.to_le_bytes());
        b.extend(4u32.to_le_bytes());
        b.extend((1u64 << 60).to_le_bytes());
        assert!(err(&b).contains("length of metadata 'k'"));
    }

    #[test]
    fn reads_an_empty_file_with_metadata() {
        let mut b = header(3, 0, 1);
        b.extend(3u64.to_le_bytes());
        b.extend(b"a.b");
        b.extend(8u32.to_le_bytes());
        b.extend(2u64.to_le_bytes());
        b.extend(b"hi");
        let (version, meta, tensors, alignment) = parse(&b).unwrap();
        assert_eq!((version, tensors.len(), alignment), (3, 0, 32));
        assert_eq!(meta["a.b"], Value::Str("hi".into()));
    }
}

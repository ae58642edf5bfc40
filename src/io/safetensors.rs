//! Named tensors in the safetensors format (Hugging Face's: a JSON header, then raw
//! little-endian data). Reading memory-maps the file; writing is atomic.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context, Result};
use safetensors::{Dtype, SafeTensors, View};
use tch::{Device, Kind, Tensor};

use super::replace_atomic;

fn to_dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::Half => Dtype::F16,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Int64 => Dtype::I64,
        Kind::Int => Dtype::I32,
        Kind::Int16 => Dtype::I16,
        Kind::Int8 => Dtype::I8,
        Kind::Uint8 => Dtype::U8,
        Kind::Bool => Dtype::BOOL,
        other => bail!("cannot store a tensor of kind {other:?} in safetensors"),
    })
}

/// The libtorch kind of a safetensors dtype.
pub fn kind_of(dtype: Dtype) -> Result<Kind> {
    Ok(match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F64 => Kind::Double,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
        other => bail!("safetensors dtype {other:?} is not supported"),
    })
}

/// A tensor on the host, contiguous, ready to serialise: a CPU tensor that already is contiguous
/// is used in place (no copy), so that saving a large tensor needs no second copy of it.
struct HostTensor {
    dtype: Dtype,
    shape: Vec<usize>,
    host: Tensor,
    nbytes: usize,
}

impl HostTensor {
    fn new(t: &Tensor) -> Result<HostTensor> {
        let kind = t.f_kind()?;
        let host = t.f_detach()?.f_to_device(Device::Cpu)?.f_contiguous()?;
        let nbytes = host.numel() * kind.elt_size_in_bytes();
        let shape = host.size().iter().map(|d| *d as usize).collect();
        Ok(HostTensor { dtype: to_dtype(kind)?, shape, host, nbytes })
    }

    fn bytes(&self) -> &[u8] {
        if self.nbytes == 0 {
            return &[];
        }
        // SAFETY: `host` is a contiguous CPU tensor of `nbytes` bytes that this struct keeps
        // alive (and nothing writes to it while it is being saved).
        unsafe { std::slice::from_raw_parts(self.host.data_ptr() as *const u8, self.nbytes) }
    }
}

impl View for &HostTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(self.bytes())
    }
    fn data_len(&self) -> usize {
        self.nbytes
    }
}

/// A name a tensor can have in a file: not `__metadata__`, the format's place for metadata.
pub fn check_name(name: &str) -> Result<()> {
    if name == "__metadata__" {
        bail!("'__metadata__' is the safetensors format's place for metadata, not a tensor name: name the tensor otherwise");
    }
    Ok(())
}

/// Writes named tensors (and optional string metadata) to `path`, atomically.
pub fn save_safetensors(path: &Path, tensors: &BTreeMap<String, Tensor>, metadata: Option<std::collections::HashMap<String, String>>) -> Result<()> {
    for name in tensors.keys() {
        check_name(name)?;
    }
    let host = tensors
        .iter()
        .map(|(name, t)| Ok((name.clone(), HostTensor::new(t).with_context(|| format!("tensor '{name}'"))?)))
        .collect::<Result<Vec<_>>>()?;
    replace_atomic(path, |tmp| Ok(safetensors::serialize_to_file(host.iter().map(|(n, h)| (n.as_str(), h)), metadata, tmp)?))
}

/// Reads every tensor of a safetensors file onto `device`.
pub fn load_safetensors(path: &Path, device: Device) -> Result<BTreeMap<String, Tensor>> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: the map is read-only and lives only for this call; the file is not ours to change.
    let mmap = unsafe { memmap2::Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
    parse_safetensors(&mmap, device).with_context(|| format!("{} is not a valid safetensors file", path.display()))
}

/// The header of safetensors bytes, checked against the data (offsets, dtypes, shapes); its
/// faults in plain words.
pub fn read_header(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes).map_err(|e| anyhow::anyhow!("{}", crate::io::plain_words(&e.to_string())))
}

/// Every tensor of safetensors bytes, onto `device` (what `load_safetensors` reads, and what
/// the coverage-guided fuzz target feeds arbitrary bytes to).
pub fn parse_safetensors(bytes: &[u8], device: Device) -> Result<BTreeMap<String, Tensor>> {
    let st = read_header(bytes)?;
    let mut out = BTreeMap::new();
    for (name, view) in st.iter() {
        let kind = kind_of(view.dtype()).with_context(|| format!("tensor '{name}'"))?;
        let shape: Vec<i64> = view.shape().iter().map(|d| *d as i64).collect();
        let t = Tensor::f_from_data_size(view.data(), &shape, kind)?.f_to_device(device)?;
        out.insert(name.to_string(), t);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_dtypes_and_rejects_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let mut map = BTreeMap::new();
        map.insert("a".to_string(), Tensor::from_slice(&[1.5f32, -2.0]).reshape([2, 1]));
        map.insert("b".to_string(), Tensor::from_slice(&[7i64, 8, 9]).to_kind(Kind::BFloat16));
        save_safetensors(&path, &map, None).unwrap();
        let back = load_safetensors(&path, Device::Cpu).unwrap();
        for (k, v) in &map {
            assert!(back[k].equal(v), "{k}");
            assert_eq!(back[k].kind(), v.kind());
        }
        std::fs::write(&path, b"not a safetensors file").unwrap();
        let err = load_safetensors(&path, Device::Cpu).unwrap_err();
        assert!(format!("{err:#}").contains("not a valid safetensors"), "{err:#}");
    }
}

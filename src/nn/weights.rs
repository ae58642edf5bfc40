//! Checkpoint tensors from a Hugging Face directory: `model.safetensors` or the shards listed in
//! `model.safetensors.index.json`, memory-mapped and converted tensor by tensor (to the asked
//! dtype, onto the asked device), so that no second full copy of the model is ever held.
//! Pickle checkpoints (`pytorch_model.bin`) are refused: moontune never unpickles.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use tch::{Device, Kind, Tensor};

use crate::gguf::GgmlType;
use crate::io::safetensors::kind_of;
use crate::tensor::dtype::is_floating;
use crate::tensor::headroom;

/// The safetensors files of a model directory.
pub fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.exists() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).with_context(|| format!("cannot read {}", index.display()))?;
        let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", index.display()))?;
        let map = json["weight_map"].as_object().with_context(|| format!("{} has no weight_map", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    for pickle in ["pytorch_model.bin", "pytorch_model.bin.index.json"] {
        if dir.join(pickle).exists() {
            bail!("{} holds only a pickle checkpoint ({pickle}); moontune never unpickles. Convert it to safetensors (in Python: model.save_pretrained(dir, safe_serialization=True))", dir.display());
        }
    }
    bail!("{} has no model.safetensors or model.safetensors.index.json", dir.display())
}

/// How a parameter starts in a freshly made model (transformers' `_init_weights`).
#[derive(Clone, Copy)]
pub enum Init {
    /// N(0, initializer_range²): linear and embedding weights.
    Normal,
    Zeros,
    Ones,
}

/// Where parameters come from while a model is built: a checkpoint (each tensor taken once, by
/// name, with its shape checked) or fresh initialisation.
pub struct Weights {
    tensors: Option<BTreeMap<String, Tensor>>,
    /// Linear weights kept quantised (a GGUF loaded with `quantized`): their ggml type and raw
    /// blocks, uint8 (rows, bytes per row).
    quantized: BTreeMap<String, (GgmlType, Tensor)>,
    kind: Kind,
    device: Device,
    init_std: f64,
    /// Fresh weights: the host memory there was to fill, and how much they take so far.
    budget: Option<u64>,
    used: u64,
}

impl Weights {
    /// Reads every tensor of `dir`; floating-point ones become `kind` (if given) and all go to
    /// `device`.
    pub fn load(dir: &Path, kind: Option<Kind>, device: Device) -> Result<Weights> {
        let mut tensors = BTreeMap::new();
        let mut first_kind = None;
        for file in checkpoint_files(dir)? {
            let f = File::open(&file).with_context(|| format!("cannot open {}", file.display()))?;
            // SAFETY: read-only map, dropped before this function returns.
            let mmap = unsafe { memmap2::Mmap::map(&f) }.with_context(|| format!("cannot map {}", file.display()))?;
            let st = crate::io::safetensors::read_header(&mmap).with_context(|| format!("{} is not a valid safetensors file (truncated or corrupt?)", file.display()))?;
            for (name, view) in st.iter() {
                let source_kind = kind_of(view.dtype()).with_context(|| format!("tensor '{name}' in {}", file.display()))?;
                let shape: Vec<i64> = view.shape().iter().map(|d| *d as i64).collect();
                let mut t = Tensor::f_from_data_size(view.data(), &shape, source_kind)?;
                if is_floating(source_kind) {
                    first_kind.get_or_insert(source_kind);
                    if let Some(k) = kind {
                        t = t.f_to_kind(k)?;
                    }
                }
                tensors.insert(name.to_string(), t.f_to_device(device)?);
            }
        }
        Ok(Weights::from_tensors(tensors, kind.or(first_kind).unwrap_or(Kind::Float), device))
    }

    /// Weights from tensors already read (a GGUF file's, de-quantised and renamed), whose
    /// floating-point parameters load as `kind`.
    pub fn from_tensors(tensors: BTreeMap<String, Tensor>, kind: Kind, device: Device) -> Weights {
        Weights { tensors: Some(tensors), quantized: BTreeMap::new(), kind, device, init_std: 0.0, budget: None, used: 0 }
    }

    /// Adds linear weights that stay quantised (`Linear` takes them with `take_quantized`).
    pub fn with_quantized(mut self, quantized: BTreeMap<String, (GgmlType, Tensor)>) -> Weights {
        self.quantized = quantized;
        self
    }

    /// The quantised blocks of weight `name`, if it was kept quantised, checked to hold an
    /// (out, in) matrix; they never require gradients.
    pub fn take_quantized(&mut self, name: &str, out_features: i64, in_features: i64) -> Result<Option<(GgmlType, Tensor)>> {
        let Some((ty, blocks)) = self.quantized.remove(name) else { return Ok(None) };
        let block = ty.block_size() as i64;
        let expected = [out_features, in_features / block * ty.type_size() as i64];
        if in_features % block != 0 || blocks.size() != expected {
            bail!("quantised tensor '{name}' ({}) has {:?} bytes, which do not hold a ({out_features}, {in_features}) matrix", ty.name(), blocks.size());
        }
        Ok(Some((ty, blocks)))
    }

    /// The dtype floating-point weights load as (and quantised ones compute in).
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Fresh parameters of `kind` on `device`, normal ones drawn with standard deviation `std`.
    pub fn fresh(kind: Kind, device: Device, std: f64) -> Weights {
        let budget = if device == Device::Cpu { headroom::available_bytes() } else { None };
        Weights { tensors: None, quantized: BTreeMap::new(), kind, device, init_std: std, budget, used: 0 }
    }

    /// Whether the checkpoint has tensor `name` (always false for fresh weights).
    pub fn has(&self, name: &str) -> bool {
        self.tensors.as_ref().is_some_and(|t| t.contains_key(name)) || self.quantized.contains_key(name)
    }

    /// Renames checkpoint tensors that start with `from` (and that `rename` accepts) to start
    /// with `to` instead: the same weights saved from another class carry other prefixes
    /// (`bert.` in task models, no `transformer.` in OpenAI's GPT-2 conversions).
    pub fn rename_prefix(&mut self, from: &str, to: &str, rename: impl Fn(&str) -> bool) {
        if let Some(tensors) = &mut self.tensors {
            let names: Vec<String> = tensors.keys().filter(|k| k.starts_with(from) && rename(k)).cloned().collect();
            for name in names {
                if let Some(t) = tensors.remove(&name) {
                    tensors.insert(format!("{to}{}", &name[from.len()..]), t);
                }
            }
        }
    }

    pub fn is_fresh(&self) -> bool {
        self.tensors.is_none()
    }

    /// Parameter `name` of `shape`: taken from the checkpoint (an error naming the tensor if it
    /// is missing, mis-shaped or not floating-point) or made fresh, in the weights' dtype; it
    /// requires gradients.
    pub fn param(&mut self, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let t = match &mut self.tensors {
            Some(tensors) => {
                let Some(t) = tensors.remove(name) else {
                    bail!("the checkpoint lacks tensor '{name}' (expected shape {shape:?})");
                };
                if t.size() != shape {
                    bail!("tensor '{name}' has shape {:?}, expected {shape:?}", t.size());
                }
                if !is_floating(t.kind()) {
                    bail!("tensor '{name}' is {}; a model's weights must be floating-point", crate::tensor::dtype_name(t.kind()));
                }
                // A checkpoint that mixes floating dtypes loads as one, as transformers does.
                if t.kind() != self.kind {
                    t.f_to_kind(self.kind)?
                } else {
                    t
                }
            }
            None => {
                let options = (self.kind, self.device);
                self.used = self.used.saturating_add(headroom::tensor_bytes(shape, self.kind));
                if let Some(budget) = self.budget.filter(|b| self.used > *b) {
                    bail!("out of memory: the model's parameters need more than the {} available (reached at '{name}')", headroom::human(budget));
                }
                match init {
                    Init::Normal => Tensor::f_randn(shape, options)?.f_mul_scalar(self.init_std)?,
                    Init::Zeros => Tensor::f_zeros(shape, options)?,
                    Init::Ones => Tensor::f_ones(shape, options)?,
                }
            }
        };
        Ok(t.f_set_requires_grad(true)?)
    }

    /// Checkpoint tensors nobody took, except those `ignorable` says are expected leftovers.
    pub fn untaken(&self, ignorable: impl Fn(&str) -> bool) -> Vec<String> {
        self.tensors.iter().flat_map(|t| t.keys()).chain(self.quantized.keys()).filter(|k| !ignorable(k)).cloned().collect()
    }
}

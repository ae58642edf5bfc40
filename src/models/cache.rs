//! The key/value cache of causal attention: per layer, the keys and values of every position seen
//! so far, (B, kv_heads, S, head_dim), grown by concatenation. A cache may start from given keys
//! and values (prefix tuning's virtual tokens), which then take part in autograd.

use anyhow::{bail, Result};
use tch::Tensor;

#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(layers: usize) -> KvCache {
        KvCache { layers: (0..layers).map(|_| None).collect() }
    }

    /// A cache holding `prefix[i] = (keys, values)` for layer i, each (B, kv_heads, P, head_dim).
    pub fn with_prefix(prefix: Vec<(Tensor, Tensor)>) -> Result<KvCache> {
        let mut length = None;
        for (i, (k, v)) in prefix.iter().enumerate() {
            if k.dim() != 4 || k.size() != v.size() {
                bail!("prefix of layer {i}: keys {:?} and values {:?} must both be (batch, kv_heads, length, head_dim)", k.size(), v.size());
            }
            if *length.get_or_insert(k.size()[2]) != k.size()[2] {
                bail!("prefix of layer {i} has length {}, layer 0 has {}", k.size()[2], length.unwrap_or(0));
            }
        }
        Ok(KvCache { layers: prefix.into_iter().map(Some).collect() })
    }

    /// Positions already cached.
    pub fn len(&self) -> i64 {
        match self.layers.first() {
            Some(Some((k, _))) => k.size()[2],
            _ => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Fails unless the cache has one slot per layer of a model with `layers` layers.
    pub fn check_layers(&self, layers: usize) -> Result<()> {
        if self.layers.len() != layers {
            bail!("the cache has {} layers and this model {layers}: use a cache made by this model (model:new_cache())", self.layers.len());
        }
        Ok(())
    }

    /// Appends new keys and values for `layer` and returns all of them.
    pub fn update(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let Some(slot) = self.layers.get_mut(layer) else { bail!("the cache has no layer {layer} (it has {})", self.layers.len()) };
        let (k, v) = match slot.as_ref() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::f_cat(&[pk, &k], 2)?, Tensor::f_cat(&[pv, &v], 2)?),
        };
        *slot = Some((k.shallow_clone(), v.shallow_clone()));
        Ok((k, v))
    }
}

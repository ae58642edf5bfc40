//! The key/value cache of causal attention: per layer, the keys and values of every position seen
//! so far, (B, kv_heads, S, head_dim), grown by concatenation.

use anyhow::Result;
use tch::Tensor;

#[derive(Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    pub fn new(layers: usize) -> KvCache {
        KvCache { layers: (0..layers).map(|_| None).collect() }
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

    /// Appends new keys and values for `layer` and returns all of them.
    pub fn update(&mut self, layer: usize, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let (k, v) = match self.layers[layer].take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::f_cat(&[&pk, &k], 2)?, Tensor::f_cat(&[&pv, &v], 2)?),
        };
        self.layers[layer] = Some((k.shallow_clone(), v.shallow_clone()));
        Ok((k, v))
    }
}

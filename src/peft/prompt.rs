//! Prompt tuning (Lester et al. 2021) and prefix tuning (Li & Liang 2021), as PEFT 0.21's
//! `PromptEmbedding` and `PrefixEncoder`: learned virtual tokens before the input, at a causal
//! LM's `prompt_encoder` point. Prompt tuning learns n input embeddings; prefix tuning learns
//! keys and values for every layer — an (n, layers·2·kv_dim) table, optionally produced by a
//! two-layer tanh MLP from smaller embeddings during training (`projection`), which saving folds
//! away as PEFT does.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use crate::module_children;
use crate::nn::attach::PromptAdapter;
use crate::nn::init::{kaiming_uniform_, uniform_fan_in_};
use crate::nn::module::{Module, Owner};

pub struct PromptTuning {
    pub owner: String,
    /// (n, hidden)
    pub embedding: Tensor,
}

impl PromptTuning {
    /// Virtual tokens drawn from N(0, 1) (nn.Embedding's init), or copied from `init` (n, hidden).
    pub fn new(owner: &str, n: i64, hidden: i64, init: Option<Tensor>, kind: Kind, device: Device) -> Result<PromptTuning> {
        let embedding = match init {
            Some(t) => t.f_detach_copy()?.f_to_kind(kind)?,
            None => Tensor::f_randn([n, hidden], (kind, device))?,
        };
        Ok(PromptTuning { owner: owner.to_string(), embedding: embedding.f_set_requires_grad(true)? })
    }
}

impl Module for PromptTuning {
    fn class_name(&self) -> &'static str {
        "PromptEmbedding"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![("embedding.weight", &self.embedding)]
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    fn extra_repr(&self) -> String {
        format!("num_virtual_tokens={}", self.embedding.size()[0])
    }
    module_children!();
}

impl PromptAdapter for PromptTuning {
    fn num_virtual_tokens(&self) -> i64 {
        self.embedding.size()[0]
    }

    fn embeddings(&self, batch: i64) -> Result<Option<Tensor>> {
        let size = self.embedding.size();
        Ok(Some(self.embedding.f_unsqueeze(0)?.f_expand([batch, size[0], size[1]], false)?))
    }
}

/// The MLP of a projected prefix: embedding (n, token_dim) → tanh(· W1ᵀ + b1) W2ᵀ + b2.
pub struct Projection {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

pub struct PrefixTuning {
    pub owner: String,
    /// (n, layers·2·kv_dim), or (n, token_dim) under a projection.
    pub embedding: Tensor,
    pub projection: Option<Projection>,
    pub layers: i64,
    pub kv_heads: i64,
    pub head_dim: i64,
}

impl PrefixTuning {
    /// A new prefix for a model of `layers` layers with `kv_heads` × `head_dim` keys: the table
    /// drawn from N(0, 1), the MLP (hidden `encoder_hidden`) as `torch.nn.Linear` starts.
    pub fn new(owner: &str, n: i64, (layers, kv_heads, head_dim): (i64, i64, i64), projection: Option<(i64, i64)>, kind: Kind, device: Device) -> Result<PrefixTuning> {
        let opts = (kind, device);
        let out = layers * 2 * kv_heads * head_dim;
        let (embedding, projection) = match projection {
            None => (Tensor::f_randn([n, out], opts)?, None),
            Some((token_dim, hidden)) => {
                let _guard = tch::no_grad_guard();
                let mut w1 = Tensor::f_empty([hidden, token_dim], opts)?;
                let mut b1 = Tensor::f_empty([hidden], opts)?;
                let mut w2 = Tensor::f_empty([out, hidden], opts)?;
                let mut b2 = Tensor::f_empty([out], opts)?;
                kaiming_uniform_(&mut w1, 5f64.sqrt())?;
                uniform_fan_in_(&mut b1, token_dim)?;
                kaiming_uniform_(&mut w2, 5f64.sqrt())?;
                uniform_fan_in_(&mut b2, hidden)?;
                let p = Projection { w1: w1.f_set_requires_grad(true)?, b1: b1.f_set_requires_grad(true)?, w2: w2.f_set_requires_grad(true)?, b2: b2.f_set_requires_grad(true)? };
                (Tensor::f_randn([n, token_dim], opts)?, Some(p))
            }
        };
        Ok(PrefixTuning { owner: owner.to_string(), embedding: embedding.f_set_requires_grad(true)?, projection, layers, kv_heads, head_dim })
    }

    /// The (n, layers·2·kv_dim) table: the embedding, through the MLP if there is one.
    pub fn table(&self) -> Result<Tensor> {
        match &self.projection {
            None => Ok(self.embedding.shallow_clone()),
            Some(p) => Ok(self.embedding.f_linear(&p.w1, Some(&p.b1))?.f_tanh()?.f_linear(&p.w2, Some(&p.b2))?),
        }
    }
}

impl Module for PrefixTuning {
    fn class_name(&self) -> &'static str {
        "PrefixEncoder"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out = vec![("embedding.weight", &self.embedding)];
        if let Some(p) = &self.projection {
            out.extend([("transform.0.weight", &p.w1), ("transform.0.bias", &p.b1), ("transform.2.weight", &p.w2), ("transform.2.bias", &p.b2)]);
        }
        out
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    fn extra_repr(&self) -> String {
        format!("num_virtual_tokens={}, projection={}", self.embedding.size()[0], self.projection.is_some())
    }
    module_children!();
}

impl PromptAdapter for PrefixTuning {
    fn num_virtual_tokens(&self) -> i64 {
        self.embedding.size()[0]
    }

    fn prefix(&self, batch: i64) -> Result<Option<Vec<(Tensor, Tensor)>>> {
        let table = self.table()?;
        let n = table.size()[0];
        if table.size()[1] != self.layers * 2 * self.kv_heads * self.head_dim {
            bail!("the prefix table has {} columns, the model needs {}", table.size()[1], self.layers * 2 * self.kv_heads * self.head_dim);
        }
        // (n, L·2·H·D) → (L·2, B, H, n, D), as PEFT's get_prompt.
        let kv = table.f_unsqueeze(0)?.f_expand([batch, n, table.size()[1]], false)?.f_reshape([batch, n, self.layers * 2, self.kv_heads, self.head_dim])?.f_permute([2, 0, 3, 1, 4])?;
        let mut out = Vec::with_capacity(self.layers as usize);
        for l in 0..self.layers {
            out.push((kv.f_select(0, 2 * l)?, kv.f_select(0, 2 * l + 1)?));
        }
        Ok(Some(out))
    }
}

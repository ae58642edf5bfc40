//! LoRA as AdapterHub's `adapters` 1.3 builds it (`LoRAConfig`, `LoRALinear`,
//! `LoRAMergedLinear`), the LoRA branch of its unions (UniPELT): on the attention's query, key
//! and value projections (`attn_matrices`); `y = W x + s · B A dropout(x)` with s = alpha / r,
//! or with `use_gating` `y = W x + g · B A dropout(x)` where g = mean over the sequence of
//! sigmoid(Linear(x → 1)) replaces the scaling. On a fused q/k/v projection (GPT-2's `c_attn`)
//! one A and one B hold a block per adapted matrix (`r` rows of A and `out/3` rows of B each,
//! applied group by group, with a gate output per block) and the other thirds are left alone.

use std::cell::RefCell;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use super::bottleneck::Dense;
use crate::module_children;
use crate::nn::attach::LinearAdapter;
use crate::nn::hooks::Ctx;
use crate::nn::init::kaiming_uniform_;
use crate::nn::linear::Linear;
use crate::nn::module::{Module, Owner};

/// AdapterHub's `LoRAConfig` for the attention matrices.
#[derive(Clone, Debug, PartialEq)]
pub struct HubLoraConfig {
    pub r: i64,
    pub alpha: f64,
    pub dropout: f64,
    /// Among "q", "k", "v".
    pub attn_matrices: Vec<String>,
    pub leave_out: Vec<i64>,
    /// "lora" (kaiming-uniform A, zero B) or "bert" (both from N(0, 0.02)).
    pub init_weights: String,
    pub use_gating: bool,
}

const OPTIONS: &[&str] = &["r", "alpha", "dropout", "attn_matrices", "leave_out", "init_weights", "use_gating", "selfattn_lora", "intermediate_lora", "output_lora", "composition_mode", "use_dora"];

impl Default for HubLoraConfig {
    fn default() -> Self {
        HubLoraConfig { r: 8, alpha: 8.0, dropout: 0.0, attn_matrices: vec!["q".into(), "v".into()], leave_out: Vec::new(), init_weights: "lora".into(), use_gating: false }
    }
}

impl HubLoraConfig {
    /// `self` with a recipe's options applied (unknown names refused).
    pub fn with_options(mut self, o: &Map<String, Value>) -> Result<HubLoraConfig> {
        if let Some(unknown) = o.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            bail!("unknown option '{unknown}' for LoRA in a union (options: {})", OPTIONS.join(", "));
        }
        let flag = |k: &str, v: &Value| v.as_bool().ok_or_else(|| anyhow!("{k} must be true or false, got {v}"));
        for (k, v) in o {
            match k.as_str() {
                "r" => self.r = v.as_i64().filter(|r| *r > 0).ok_or_else(|| anyhow!("r must be a whole number > 0, got {v}"))?,
                "alpha" => self.alpha = v.as_f64().ok_or_else(|| anyhow!("alpha must be a number, got {v}"))?,
                "dropout" => self.dropout = v.as_f64().filter(|p| (0.0..1.0).contains(p)).ok_or_else(|| anyhow!("dropout must be a number in [0, 1), got {v}"))?,
                "init_weights" => self.init_weights = v.as_str().filter(|s| ["lora", "bert"].contains(s)).ok_or_else(|| anyhow!("init_weights must be \"lora\" or \"bert\", got {v}"))?.to_string(),
                "use_gating" => self.use_gating = flag(k, v)?,
                "attn_matrices" => {
                    let list = v.as_array().ok_or_else(|| anyhow!("attn_matrices must be a list of \"q\", \"k\", \"v\", got {v}"))?;
                    let names: Vec<String> = list.iter().map(|x| x.as_str().filter(|s| ["q", "k", "v"].contains(s)).map(str::to_string).ok_or_else(|| anyhow!("attn_matrices holds \"q\", \"k\" or \"v\", got {x}"))).collect::<Result<_>>()?;
                    if names.is_empty() {
                        bail!("attn_matrices names no matrix");
                    }
                    self.attn_matrices = names;
                }
                "leave_out" => {
                    let list = v.as_array().ok_or_else(|| anyhow!("leave_out must be a list of layer numbers, got {v}"))?;
                    self.leave_out = list.iter().map(|x| x.as_i64().ok_or_else(|| anyhow!("leave_out must hold layer numbers, got {x}"))).collect::<Result<_>>()?;
                }
                "selfattn_lora" if v != &json!(true) => bail!("selfattn_lora must be true: LoRA in a union adapts the attention matrices"),
                "intermediate_lora" | "output_lora" if v != &json!(false) => bail!("{k} is not built by moontune: LoRA in a union adapts the attention matrices only (use mt.peft.lora for other layers)"),
                "composition_mode" if v != &json!("add") => bail!("composition_mode must be \"add\", got {v}"),
                "use_dora" if v != &json!(false) => bail!("use_dora is not built for LoRA in a union (use mt.peft.lora with use_dora)"),
                _ => {}
            }
        }
        Ok(self)
    }

    /// From AdapterHub's config object (`"architecture": "lora"`).
    pub fn from_adapterhub(config: &Map<String, Value>) -> Result<HubLoraConfig> {
        for key in ["vera_d", "vera_b"] {
            if config.get(key).is_some_and(|v| !v.is_null()) {
                bail!("the adapter is a VeRA adapter ({key}), which moontune does not read from AdapterHub's files");
            }
        }
        let known: Map<String, Value> = config.iter().filter(|(k, _)| OPTIONS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        HubLoraConfig::default().with_options(&known)
    }

    pub fn to_adapterhub(&self) -> Value {
        let alpha = if self.alpha.fract() == 0.0 { json!(self.alpha as i64) } else { json!(self.alpha) };
        json!({
            "alpha": alpha,
            "architecture": "lora",
            "attn_matrices": self.attn_matrices,
            "composition_mode": "add",
            "dropout": self.dropout,
            "dtype": null,
            "init_weights": self.init_weights,
            "init_weights_seed": null,
            "intermediate_lora": false,
            "leave_out": self.leave_out,
            "output_lora": false,
            "r": self.r,
            "selfattn_lora": true,
            "use_dora": false,
            "use_gating": self.use_gating,
            "vera_b": null,
            "vera_d": null,
        })
    }
}

/// One LoRA layer of a union on a projection.
pub struct HubLora {
    pub owner: String,
    /// (blocks · r, in)
    lora_a: Tensor,
    /// (blocks · part, r)
    lora_b: Tensor,
    gate: Option<Dense>,
    scaling: f64,
    dropout: f64,
    /// For a fused projection: which thirds of the output the blocks write (in order); empty
    /// when the projection is one matrix.
    thirds: Vec<i64>,
    /// The gate (B, blocks) of the last forward, for `model:gates()`.
    pub last_gate: RefCell<Option<Tensor>>,
}

impl HubLora {
    /// On `base`; `thirds` lists the q/k/v thirds (0, 1, 2) it adapts when `base` computes all three.
    pub fn new(owner: &str, base: &Linear, config: &HubLoraConfig, thirds: Vec<i64>, kind: Kind, device: Device) -> Result<HubLora> {
        let _guard = tch::no_grad_guard();
        let blocks = thirds.len().max(1) as i64;
        let part = if thirds.is_empty() { base.out_features } else { base.out_features / 3 };
        let mut a = Tensor::f_zeros([blocks * config.r, base.in_features], (kind, device))?;
        let mut b = Tensor::f_zeros([blocks * part, config.r], (kind, device))?;
        if config.init_weights == "bert" {
            let _ = a.f_normal_(0.0, 0.02)?;
            let _ = b.f_normal_(0.0, 0.02)?;
        } else {
            kaiming_uniform_(&mut a, 5f64.sqrt())?;
        }
        let gate = if config.use_gating { Some(Dense::gate(base.in_features, blocks, kind, device)?) } else { None };
        Ok(HubLora {
            owner: owner.to_string(),
            lora_a: a.f_set_requires_grad(true)?,
            lora_b: b.f_set_requires_grad(true)?,
            gate,
            scaling: config.alpha / config.r as f64,
            dropout: config.dropout,
            thirds,
            last_gate: RefCell::new(None),
        })
    }
}

impl Module for HubLora {
    fn class_name(&self) -> &'static str {
        if self.thirds.is_empty() {
            "LoRALinear"
        } else {
            "LoRAMergedLinear"
        }
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out = vec![("lora_A", &self.lora_a), ("lora_B", &self.lora_b)];
        if let Some(g) = &self.gate {
            out.push(("gate.weight", &g.weight));
            out.push(("gate.bias", &g.bias));
        }
        out
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    fn extra_repr(&self) -> String {
        format!("r={}, gated={}", self.lora_b.size()[1], self.gate.is_some())
    }
    module_children!();
}

impl LinearAdapter for HubLora {
    fn forward(&self, ctx: &Ctx, _base: &Linear, x: &Tensor, base_out: Tensor) -> Result<Tensor> {
        let kind = self.lora_a.kind();
        let x = x.f_to_kind(kind)?;
        let xd = if ctx.training && self.dropout > 0.0 { x.f_dropout(self.dropout, true)? } else { x.shallow_clone() };
        let blocks = self.thirds.len().max(1) as i64;
        let r = self.lora_b.size()[1];
        let after_a = xd.f_linear(&self.lora_a, None::<Tensor>)?;
        // (…, blocks, part): block g of B on block g of A's output.
        let mut lead = after_a.size();
        lead.pop();
        let grouped = after_a.f_view([lead.clone(), vec![blocks, r]].concat().as_slice())?;
        let b = self.lora_b.f_view([blocks, -1, r])?;
        let mut delta = Tensor::f_einsum("...gr,gpr->...gp", &[grouped, b], None::<i64>)?;
        match &self.gate {
            Some(gate) => {
                // sigmoid(gate(x)) averaged over the sequence: (B, blocks) → (B, 1…, blocks, 1).
                let g = gate.forward(&x)?.f_sigmoid()?.f_mean_dim(1, false, None)?;
                *self.last_gate.borrow_mut() = Some(g.f_detach()?);
                let mut shape = vec![g.size()[0]];
                shape.extend(std::iter::repeat_n(1, lead.len() - 1));
                shape.extend([blocks, 1]);
                delta = delta.f_mul(&g.f_view(shape.as_slice())?)?;
            }
            None => delta = delta.f_mul_scalar(self.scaling)?,
        }
        let delta = if self.thirds.is_empty() {
            delta.f_squeeze_dim(-2)?
        } else {
            let part = delta.size()[delta.dim() - 1];
            let pieces = (0..3)
                .map(|third| match self.thirds.iter().position(|t| *t == third) {
                    Some(g) => delta.f_select(-2, g as i64),
                    None => Tensor::f_zeros([lead.clone(), vec![part]].concat().as_slice(), (kind, delta.device())),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::f_cat(&pieces, -1)?
        };
        Ok(base_out.f_add(&delta.f_to_kind(base_out.kind())?)?)
    }
}

//! Prefix tuning as AdapterHub's `adapters` 1.3 builds it (`PrefixTuningConfig`,
//! `PrefixTuningPool`, `PrefixTuningLayer`): one pool per adapter, shared by every layer, turns
//! `prefix_length` learned embeddings through a two-layer MLP (`control_trans`; with `flat` a
//! plain table) into keys and values for all layers at once; each layer's attention puts its
//! share before its own keys and values (after RoPE, with no positions of their own, visible to
//! every query). With `use_gating` (UniPELT) each layer scales them by a gate
//! sigmoid(Linear(h → 1, or 2 for keys and values apart)) averaged over the sequence. Unlike
//! PEFT's prefix tuning (peft/prompt.rs) the real tokens keep their positions.

use std::cell::RefCell;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use super::bottleneck::{activation, Dense};
use crate::module_children;
use crate::nn::attach::{KvPrefix, PrefixSource};
use crate::nn::functional::dropout;
use crate::nn::hooks::Ctx;
use crate::nn::module::{Module, Owner};

/// AdapterHub's `PrefixTuningConfig` (the encoder-decoder options aside).
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixTuningConfig {
    pub prefix_length: i64,
    pub bottleneck_size: i64,
    pub non_linearity: String,
    pub dropout: f64,
    pub flat: bool,
    pub leave_out: Vec<i64>,
    pub use_gating: bool,
    pub shared_gating: bool,
}

const OPTIONS: &[&str] = &["prefix_length", "bottleneck_size", "non_linearity", "dropout", "flat", "leave_out", "use_gating", "shared_gating"];

impl Default for PrefixTuningConfig {
    fn default() -> Self {
        PrefixTuningConfig { prefix_length: 30, bottleneck_size: 512, non_linearity: "tanh".into(), dropout: 0.0, flat: false, leave_out: Vec::new(), use_gating: false, shared_gating: true }
    }
}

impl PrefixTuningConfig {
    /// `base` with a recipe's options applied (unknown names refused).
    pub fn with_options(mut self, options: &Map<String, Value>) -> Result<PrefixTuningConfig> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            bail!("unknown option '{unknown}' for prefix tuning (options: {})", OPTIONS.join(", "));
        }
        self.apply(options)?;
        self.check()?;
        Ok(self)
    }

    /// From AdapterHub's config object (`"architecture": "prefix_tuning"`).
    pub fn from_adapterhub(config: &Map<String, Value>) -> Result<PrefixTuningConfig> {
        let known: Map<String, Value> = config.iter().filter(|(k, _)| OPTIONS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        PrefixTuningConfig::default().with_options(&known)
    }

    fn apply(&mut self, o: &Map<String, Value>) -> Result<()> {
        let flag = |k: &str, v: &Value| v.as_bool().ok_or_else(|| anyhow!("{k} must be true or false, got {v}"));
        let size = |k: &str, v: &Value| v.as_i64().filter(|n| *n > 0).ok_or_else(|| anyhow!("{k} must be a whole number > 0, got {v}"));
        for (k, v) in o {
            match k.as_str() {
                "prefix_length" => self.prefix_length = size(k, v)?,
                "bottleneck_size" => self.bottleneck_size = size(k, v)?,
                "non_linearity" => self.non_linearity = v.as_str().ok_or_else(|| anyhow!("non_linearity must be a name, got {v}"))?.to_string(),
                "dropout" => self.dropout = v.as_f64().ok_or_else(|| anyhow!("dropout must be a number, got {v}"))?,
                "flat" => self.flat = flag(k, v)?,
                "use_gating" => self.use_gating = flag(k, v)?,
                "shared_gating" => self.shared_gating = flag(k, v)?,
                "leave_out" => {
                    let list = v.as_array().ok_or_else(|| anyhow!("leave_out must be a list of layer numbers, got {v}"))?;
                    self.leave_out = list.iter().map(|x| x.as_i64().ok_or_else(|| anyhow!("leave_out must hold layer numbers, got {x}"))).collect::<Result<_>>()?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        let _ = activation(&self.non_linearity, &Tensor::zeros([1], (Kind::Float, Device::Cpu)))?;
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout must be in [0, 1), got {}", self.dropout);
        }
        Ok(())
    }

    /// The config as AdapterHub writes it.
    pub fn to_adapterhub(&self) -> Value {
        json!({
            "architecture": "prefix_tuning",
            "bottleneck_size": self.bottleneck_size,
            "cross_prefix": true,
            "dropout": self.dropout,
            "encoder_prefix": true,
            "flat": self.flat,
            "init_weights_seed": null,
            "leave_out": self.leave_out,
            "non_linearity": self.non_linearity,
            "prefix_length": self.prefix_length,
            "shared_gating": self.shared_gating,
            "use_gating": self.use_gating,
        })
    }
}

/// The shape of the keys and values a pool makes: layers with a prefix, kv heads, head size.
#[derive(Clone, Copy, Debug)]
pub struct KvShape {
    pub layers: i64,
    pub heads: i64,
    pub head_dim: i64,
}

/// What makes the keys and values: an MLP over learned embeddings, or the values themselves.
enum Source {
    Mlp { wte: Tensor, hidden: Dense, out: Dense },
    Flat { control_trans: Tensor },
}

/// One adapter's prefix pool (at `<base model>.prefix_tuning.<name>`).
pub struct PrefixPool {
    pub owner: String,
    source: Source,
    shape: KvShape,
    prefix_length: i64,
    non_linearity: String,
    dropout: f64,
}

impl PrefixPool {
    /// As `adapters` starts it: embeddings from N(0, 1) and nn.Linear's init, or (flat) the
    /// values from N(0, 1).
    pub fn new(owner: &str, config: &PrefixTuningConfig, hidden: i64, shape: KvShape, kind: Kind, device: Device) -> Result<PrefixPool> {
        let width = shape.layers * 2 * shape.heads * shape.head_dim;
        let source = if config.flat {
            Source::Flat { control_trans: Tensor::f_randn([config.prefix_length * width], (kind, device))?.f_set_requires_grad(true)? }
        } else {
            let hidden_layer = Dense::new(hidden, config.bottleneck_size, kind, device)?.trainable()?;
            let out = Dense::new(config.bottleneck_size, width, kind, device)?.trainable()?;
            Source::Mlp { wte: Tensor::f_randn([config.prefix_length, hidden], (kind, device))?.f_set_requires_grad(true)?, hidden: hidden_layer, out }
        };
        Ok(PrefixPool { owner: owner.to_string(), source, shape, prefix_length: config.prefix_length, non_linearity: config.non_linearity.clone(), dropout: config.dropout })
    }
}

impl PrefixSource for PrefixPool {
    /// Per layer with a prefix: keys and values, each (B, kv_heads, prefix_length, head_dim).
    fn states(&self, ctx: &Ctx, batch: i64) -> Result<Vec<(Tensor, Tensor)>> {
        let KvShape { layers, heads, head_dim } = self.shape;
        let table = match &self.source {
            Source::Mlp { wte, hidden, out } => out.forward(&activation(&self.non_linearity, &hidden.forward(wte)?)?)?,
            Source::Flat { control_trans } => control_trans.shallow_clone(),
        };
        let kv = table.f_view([1, self.prefix_length, layers * 2, heads, head_dim])?.f_expand([batch, self.prefix_length, layers * 2, heads, head_dim], false)?;
        let kv = dropout(&kv, self.dropout, ctx.training)?.f_permute([2, 0, 3, 1, 4])?;
        (0..layers).map(|l| Ok((kv.f_select(0, 2 * l)?, kv.f_select(0, 2 * l + 1)?))).collect()
    }
}

impl Module for PrefixPool {
    fn class_name(&self) -> &'static str {
        match self.source {
            Source::Mlp { .. } => "PrefixTuning",
            Source::Flat { .. } => "FlatPrefixTuning",
        }
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        match &self.source {
            Source::Mlp { wte, hidden, out } => vec![
                ("wte.weight", wte),
                ("control_trans.0.weight", &hidden.weight),
                ("control_trans.0.bias", &hidden.bias),
                ("control_trans.2.weight", &out.weight),
                ("control_trans.2.bias", &out.bias),
            ],
            Source::Flat { control_trans } => vec![("control_trans", control_trans)],
        }
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    fn extra_repr(&self) -> String {
        format!("{} tokens × {} layers", self.prefix_length, self.shape.layers)
    }
    module_children!();
}

/// One layer's share of a pool (at `<attention>.prefix_gates.<name>`): which of the pool's
/// layers it takes, and its gate if gated.
pub struct LayerPrefix {
    pub owner: String,
    index: usize,
    gate: Option<Dense>,
    /// The gate (B, 1 or 2) of the last forward, for `model:gates()`.
    pub last_gate: RefCell<Option<Tensor>>,
}

impl LayerPrefix {
    /// AdapterHub's gate: nn.Linear(hidden → 1, or 2 without `shared_gating`), weight from N(0, 0.02).
    pub fn new(owner: &str, index: usize, config: &PrefixTuningConfig, hidden: i64, kind: Kind, device: Device) -> Result<LayerPrefix> {
        let gate = if config.use_gating { Some(Dense::gate(hidden, if config.shared_gating { 1 } else { 2 }, kind, device)?) } else { None };
        Ok(LayerPrefix { owner: owner.to_string(), index, gate, last_gate: RefCell::new(None) })
    }
}

impl KvPrefix for LayerPrefix {
    fn pool_index(&self) -> usize {
        self.index
    }

    fn gated(&self, x: &Tensor, keys: Tensor, values: Tensor) -> Result<(Tensor, Tensor)> {
        let Some(gate) = &self.gate else { return Ok((keys, values)) };
        let g = gate.forward(&x.f_to_kind(gate.weight.kind())?)?.f_sigmoid()?.f_mean_dim(1, false, None)?;
        *self.last_gate.borrow_mut() = Some(g.f_detach()?);
        let n = g.size()[1];
        let scale = |i: i64| -> Result<Tensor> { Ok(g.f_select(1, i)?.f_view([-1, 1, 1, 1])?) };
        Ok((keys.f_mul(&scale(0)?)?, values.f_mul(&scale(n - 1)?)?))
    }
}

impl Module for LayerPrefix {
    fn class_name(&self) -> &'static str {
        "PrefixTuningLayer"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        match &self.gate {
            Some(g) => vec![("weight", &g.weight), ("bias", &g.bias)],
            None => Vec::new(),
        }
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    module_children!();
}

//! Bottleneck adapters as AdapterHub's `adapters` 1.3 builds them (`Adapter`, `ParallelAdapter`,
//! `NICECouplingBlock`): a down-projection, a non-linearity and an up-projection at the residual
//! points of each layer, placed by the configuration's options — `original_ln_before/after`,
//! `residual_before_ln`, `ln_before/after`, `adapter_residual_before_ln`, parallel adapters
//! (He et al. 2021) reading the sublayer's residual, a scaling (fixed, learned or per channel), a
//! gate (UniPELT) — and, with `inv_adapter = "nice"`, an invertible adapter on the embeddings.
//! The config is AdapterHub's `BnConfig` with its option names and presets (`seq_bn`,
//! `double_seq_bn`, `par_bn`, `scaled_par_bn`, `seq_bn_inv`, `double_seq_bn_inv`).

use std::cell::RefCell;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use crate::module_children;
use crate::nn::attach::{InvertibleAdapter, Norm, ResidualAdapter};
use crate::nn::functional::{dropout, layer_norm, linear};
use crate::nn::hooks::Ctx;
use crate::nn::init::{kaiming_uniform_, uniform_fan_in_};
use crate::nn::module::{Module, Owner};

/// `residual_before_ln`: where the adapter's residual is taken.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResidualBeforeLn {
    Yes,
    No,
    /// After the sublayer's residual add, before the norm.
    PostAdd,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Scaling {
    Fixed(f64),
    /// One learned number, starting at 1.
    Learned,
    /// A learned vector over the hidden size, starting at 1.
    Channel,
}

/// AdapterHub's `BnConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct BnConfig {
    pub mh_adapter: bool,
    pub output_adapter: bool,
    /// A number, or per layer ("0", "1", …) with a "default".
    pub reduction_factor: Value,
    pub non_linearity: String,
    pub original_ln_before: bool,
    pub original_ln_after: bool,
    pub ln_before: bool,
    pub ln_after: bool,
    pub init_weights: String,
    pub init_weights_seed: Option<i64>,
    pub is_parallel: bool,
    pub scaling: Scaling,
    pub use_gating: bool,
    pub residual_before_ln: ResidualBeforeLn,
    pub adapter_residual_before_ln: bool,
    pub inv_adapter: Option<String>,
    pub inv_adapter_reduction_factor: Option<f64>,
    pub leave_out: Vec<i64>,
    pub dropout: f64,
}

/// The option names a bottleneck config takes (AdapterHub's), besides `config` and `name`.
const OPTIONS: &[&str] = &[
    "mh_adapter", "output_adapter", "reduction_factor", "non_linearity", "original_ln_before", "original_ln_after", "ln_before", "ln_after", "init_weights", "init_weights_seed",
    "is_parallel", "scaling", "use_gating", "residual_before_ln", "adapter_residual_before_ln", "inv_adapter", "inv_adapter_reduction_factor", "leave_out", "dropout",
];

pub const PRESETS: &[&str] = &["seq_bn", "double_seq_bn", "par_bn", "scaled_par_bn", "seq_bn_inv", "double_seq_bn_inv"];

impl BnConfig {
    /// A preset by AdapterHub's name.
    pub fn preset(name: &str) -> Result<BnConfig> {
        let seq = BnConfig {
            mh_adapter: false,
            output_adapter: true,
            reduction_factor: json!(16),
            non_linearity: "relu".into(),
            original_ln_before: true,
            original_ln_after: true,
            ln_before: false,
            ln_after: false,
            init_weights: "bert".into(),
            init_weights_seed: None,
            is_parallel: false,
            scaling: Scaling::Fixed(1.0),
            use_gating: false,
            residual_before_ln: ResidualBeforeLn::Yes,
            adapter_residual_before_ln: false,
            inv_adapter: None,
            inv_adapter_reduction_factor: None,
            leave_out: Vec::new(),
            dropout: 0.0,
        };
        let double = BnConfig { original_ln_before: false, mh_adapter: true, non_linearity: "swish".into(), ..seq.clone() };
        let par = BnConfig { original_ln_before: false, reduction_factor: json!(2), init_weights: "mam_adapter".into(), is_parallel: true, scaling: Scaling::Fixed(4.0), ..seq.clone() };
        let inv = |c: BnConfig| BnConfig { inv_adapter: Some("nice".into()), inv_adapter_reduction_factor: Some(2.0), ..c };
        Ok(match name {
            "seq_bn" | "pfeiffer" => seq,
            "double_seq_bn" | "houlsby" => double,
            "par_bn" | "parallel" => par,
            "scaled_par_bn" => BnConfig { scaling: Scaling::Learned, ..par },
            "seq_bn_inv" | "pfeiffer+inv" => inv(seq),
            "double_seq_bn_inv" | "houlsby+inv" => inv(double),
            other => bail!("unknown bottleneck config '{other}' (known: {})", PRESETS.join(", ")),
        })
    }

    /// From a recipe's options: `config` (a preset name, default "seq_bn") and any option to
    /// override.
    pub fn from_options(mut options: Map<String, Value>) -> Result<BnConfig> {
        let preset = match options.remove("config") {
            None | Some(Value::Null) => "seq_bn".to_string(),
            Some(Value::String(s)) => s,
            Some(other) => bail!("config must be a preset name ({}), got {other}", PRESETS.join(", ")),
        };
        BnConfig::preset(&preset)?.with_options(&options)
    }

    /// This config with a recipe's options applied (unknown names refused).
    pub fn with_options(mut self, options: &Map<String, Value>) -> Result<BnConfig> {
        if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
            bail!("unknown option '{unknown}' for a bottleneck adapter (options: config, name, {})", OPTIONS.join(", "));
        }
        self.apply(options)?;
        self.check()?;
        Ok(self)
    }

    /// From AdapterHub's adapter_config.json `config` object.
    pub fn from_adapterhub(config: &Map<String, Value>) -> Result<BnConfig> {
        match config.get("architecture").and_then(|v| v.as_str()) {
            None | Some("bottleneck") => {}
            Some(other) => bail!("the adapter is a '{other}' adapter, not a bottleneck adapter"),
        }
        for key in ["phm_layer", "cross_adapter"] {
            if config.get(key).is_some_and(|v| v != &json!(false)) {
                bail!("the adapter uses '{key}' = {}, which moontune does not build", config[key]);
            }
        }
        if config.get("stochastic_depth").and_then(|v| v.as_f64()).is_some_and(|p| p > 0.0) {
            bail!("the adapter uses stochastic_depth, which moontune does not build");
        }
        let mut c = BnConfig::preset("seq_bn")?;
        let known: Map<String, Value> = config.iter().filter(|(k, _)| OPTIONS.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect();
        c.apply(&known)?;
        c.check()?;
        Ok(c)
    }

    fn apply(&mut self, o: &Map<String, Value>) -> Result<()> {
        let flag = |k: &str, v: &Value| v.as_bool().ok_or_else(|| anyhow!("{k} must be true or false, got {v}"));
        let number = |k: &str, v: &Value| v.as_f64().ok_or_else(|| anyhow!("{k} must be a number, got {v}"));
        for (k, v) in o {
            match k.as_str() {
                "mh_adapter" => self.mh_adapter = flag(k, v)?,
                "output_adapter" => self.output_adapter = flag(k, v)?,
                "original_ln_before" => self.original_ln_before = flag(k, v)?,
                "original_ln_after" => self.original_ln_after = flag(k, v)?,
                "ln_before" => self.ln_before = flag(k, v)?,
                "ln_after" => self.ln_after = flag(k, v)?,
                "is_parallel" => self.is_parallel = flag(k, v)?,
                "use_gating" => self.use_gating = flag(k, v)?,
                "adapter_residual_before_ln" => self.adapter_residual_before_ln = flag(k, v)?,
                "reduction_factor" => self.reduction_factor = v.clone(),
                "non_linearity" => self.non_linearity = v.as_str().ok_or_else(|| anyhow!("non_linearity must be a name, got {v}"))?.to_string(),
                "init_weights" => self.init_weights = v.as_str().ok_or_else(|| anyhow!("init_weights must be \"bert\", \"houlsby\" or \"mam_adapter\", got {v}"))?.to_string(),
                "init_weights_seed" => self.init_weights_seed = if v.is_null() { None } else { Some(v.as_i64().ok_or_else(|| anyhow!("init_weights_seed must be an integer, got {v}"))?) },
                "scaling" => {
                    self.scaling = match v {
                        Value::String(s) if s == "learned" => Scaling::Learned,
                        Value::String(s) if s == "channel" => Scaling::Channel,
                        Value::Number(n) => Scaling::Fixed(n.as_f64().unwrap_or(1.0)),
                        other => bail!("scaling must be a number, \"learned\" or \"channel\", got {other}"),
                    }
                }
                "residual_before_ln" => {
                    self.residual_before_ln = match v {
                        Value::Bool(true) => ResidualBeforeLn::Yes,
                        Value::Bool(false) => ResidualBeforeLn::No,
                        Value::String(s) if s == "post_add" => ResidualBeforeLn::PostAdd,
                        other => bail!("residual_before_ln must be true, false or \"post_add\", got {other}"),
                    }
                }
                "inv_adapter" => self.inv_adapter = if v.is_null() { None } else { Some(v.as_str().ok_or_else(|| anyhow!("inv_adapter must be \"nice\", got {v}"))?.to_string()) },
                "inv_adapter_reduction_factor" => self.inv_adapter_reduction_factor = if v.is_null() { None } else { Some(number(k, v)?) },
                "leave_out" => {
                    let list = v.as_array().ok_or_else(|| anyhow!("leave_out must be a list of layer numbers, got {v}"))?;
                    self.leave_out = list.iter().map(|x| x.as_i64().ok_or_else(|| anyhow!("leave_out must hold layer numbers, got {x}"))).collect::<Result<_>>()?;
                }
                "dropout" => self.dropout = number(k, v)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<()> {
        if !["bert", "houlsby", "mam_adapter"].contains(&self.init_weights.as_str()) {
            bail!("init_weights must be \"bert\", \"houlsby\" or \"mam_adapter\", got '{}'", self.init_weights);
        }
        let _ = activation(&self.non_linearity, &Tensor::zeros([1], (Kind::Float, Device::Cpu)))?;
        if !(0.0..1.0).contains(&self.dropout) {
            bail!("dropout must be in [0, 1), got {}", self.dropout);
        }
        match self.inv_adapter.as_deref() {
            None | Some("nice") => {}
            Some("glow") => bail!("inv_adapter \"glow\" is not built by moontune; use \"nice\""),
            Some(other) => bail!("inv_adapter must be \"nice\", got '{other}'"),
        }
        if self.inv_adapter.is_some() && !self.inv_adapter_reduction_factor.is_some_and(|r| r > 0.0) {
            bail!("an invertible adapter needs inv_adapter_reduction_factor > 0");
        }
        match &self.reduction_factor {
            Value::Number(n) if n.as_f64().is_some_and(|r| r > 0.0) => {}
            Value::Object(m) => {
                for (k, v) in m {
                    if k != "default" && k.parse::<i64>().is_err() {
                        bail!("reduction_factor's keys must be layer numbers or \"default\", got '{k}'");
                    }
                    if !v.as_f64().is_some_and(|r| r > 0.0) {
                        bail!("reduction_factor for '{k}' must be a number > 0, got {v}");
                    }
                }
            }
            other => bail!("reduction_factor must be a number > 0 or a map from layer numbers (and \"default\") to numbers, got {other}"),
        }
        if !self.mh_adapter && !self.output_adapter && self.inv_adapter.is_none() {
            bail!("the adapter would sit nowhere: mh_adapter and output_adapter are both false");
        }
        Ok(())
    }

    /// The bottleneck width at layer `layer` for hidden size `hidden`: hidden // factor, at least 1.
    pub fn bottleneck(&self, layer: i64, hidden: i64) -> Result<i64> {
        let factor = match &self.reduction_factor {
            Value::Object(m) => m.get(&layer.to_string()).or_else(|| m.get("default")).and_then(|v| v.as_f64()).ok_or_else(|| {
                anyhow!("reduction_factor gives no value for layer {layer} and no \"default\"; give one like {{ [\"1\"] = 16, default = 16 }}")
            })?,
            v => v.as_f64().unwrap_or(16.0),
        };
        Ok(((hidden as f64 / factor).floor() as i64).max(1))
    }

    /// The config as AdapterHub writes it in adapter_config.json (every key of `BnConfig`).
    pub fn to_adapterhub(&self) -> Value {
        json!({
            "adapter_residual_before_ln": self.adapter_residual_before_ln,
            "cross_adapter": false,
            "dropout": self.dropout,
            "factorized_phm_W": true,
            "factorized_phm_rule": false,
            "hypercomplex_nonlinearity": "glorot-uniform",
            "init_weights": self.init_weights,
            "init_weights_seed": self.init_weights_seed,
            "inv_adapter": self.inv_adapter,
            "inv_adapter_reduction_factor": self.inv_adapter_reduction_factor,
            "is_parallel": self.is_parallel,
            "learn_phm": true,
            "leave_out": self.leave_out,
            "ln_after": self.ln_after,
            "ln_before": self.ln_before,
            "mh_adapter": self.mh_adapter,
            "non_linearity": self.non_linearity,
            "original_ln_after": self.original_ln_after,
            "original_ln_before": self.original_ln_before,
            "output_adapter": self.output_adapter,
            "phm_bias": true,
            "phm_c_init": "normal",
            "phm_dim": 4,
            "phm_init_range": 0.0001,
            "phm_layer": false,
            "phm_rank": 1,
            "reduction_factor": self.reduction_factor,
            "residual_before_ln": match self.residual_before_ln { ResidualBeforeLn::Yes => json!(true), ResidualBeforeLn::No => json!(false), ResidualBeforeLn::PostAdd => json!("post_add") },
            "scaling": match self.scaling { Scaling::Fixed(s) => json!(s), Scaling::Learned => json!("learned"), Scaling::Channel => json!("channel") },
            "shared_W_phm": false,
            "shared_phm_rule": true,
            "stochastic_depth": 0.0,
            "use_gating": self.use_gating,
        })
    }
}

/// transformers' activation by name (AdapterHub's `Activation_Function_Class`).
pub fn activation(name: &str, x: &Tensor) -> Result<Tensor> {
    Ok(match name.to_lowercase().as_str() {
        "relu" => x.f_relu()?,
        "gelu" => x.f_gelu("none")?,
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => x.f_gelu("tanh")?,
        "quick_gelu" => x.f_mul(&x.f_mul_scalar(1.702)?.f_sigmoid()?)?,
        "swish" | "silu" => x.f_silu()?,
        "tanh" => x.f_tanh()?,
        "sigmoid" => x.f_sigmoid()?,
        "leakyrelu" => x.f_leaky_relu()?,
        "relu6" => x.f_clamp(0.0, 6.0)?,
        "mish" => x.f_mish()?,
        "linear" | "identity" => x.shallow_clone(),
        other => bail!("unknown non_linearity '{other}' (relu, gelu, gelu_new, quick_gelu, swish, silu, tanh, sigmoid, leakyrelu, relu6, mish, linear)"),
    })
}

/// A linear layer's weight (out, in) and bias.
pub struct Dense {
    pub weight: Tensor,
    pub bias: Tensor,
}

impl Dense {
    /// As `torch.nn.Linear` starts: kaiming-uniform weight, bias uniform in ±1/√in.
    pub(super) fn new(n_in: i64, n_out: i64, kind: Kind, device: Device) -> Result<Dense> {
        let mut weight = Tensor::f_empty([n_out, n_in], (kind, device))?;
        let mut bias = Tensor::f_empty([n_out], (kind, device))?;
        kaiming_uniform_(&mut weight, 5f64.sqrt())?;
        uniform_fan_in_(&mut bias, n_in)?;
        Ok(Dense { weight, bias })
    }

    /// A learned gate as AdapterHub makes one (UniPELT's): nn.Linear's init, then the weight
    /// from N(0, 0.02); trainable.
    pub(super) fn gate(n_in: i64, n_out: i64, kind: Kind, device: Device) -> Result<Dense> {
        let mut d = Dense::new(n_in, n_out, kind, device)?;
        let _ = d.weight.f_normal_(0.0, 0.02)?;
        d.trainable()
    }

    /// The same layer with both tensors requiring gradients.
    pub(super) fn trainable(self) -> Result<Dense> {
        Ok(Dense { weight: self.weight.f_set_requires_grad(true)?, bias: self.bias.f_set_requires_grad(true)? })
    }

    /// BERT's init: weight from N(0, 0.02), bias zero.
    pub(super) fn bert(mut self) -> Result<Dense> {
        let _ = self.weight.f_normal_(0.0, 0.02)?;
        let _ = self.bias.f_zero_()?;
        Ok(self)
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        linear(x, &self.weight, Some(&self.bias))
    }
}

/// `torch.nn.init.trunc_normal_(t, 0, std, -2·std, 2·std)` (inverse-CDF sampling, as torch).
fn trunc_normal_(t: &mut Tensor, std: f64) -> Result<()> {
    let cdf = |x: f64| (1.0 + erf(x / 2f64.sqrt())) / 2.0;
    let (lo, hi) = (cdf(-2.0), cdf(2.0));
    let _ = t.f_uniform_(2.0 * lo - 1.0, 2.0 * hi - 1.0)?;
    let _ = t.f_erfinv_()?;
    let _ = t.f_mul_scalar_(std * 2f64.sqrt())?;
    let _ = t.f_clamp_(-2.0 * std, 2.0 * std)?;
    Ok(())
}

/// The error function (libtorch's).
fn erf(x: f64) -> f64 {
    Tensor::from(x).erf().double_value(&[])
}

/// One bottleneck adapter at one residual point.
pub struct Bottleneck {
    pub owner: String,
    pub config: BnConfig,
    pub norm_before: Option<(Tensor, Tensor)>,
    pub down: Dense,
    pub up: Dense,
    /// A learned scaling (one number or one per channel); a fixed one is in the config.
    pub scaling: Option<Tensor>,
    pub norm_after: Option<(Tensor, Tensor)>,
    pub gate: Option<Dense>,
    /// The gate's values over the last forward, (batch, 1, 1), for `model:gates()`.
    pub last_gate: RefCell<Option<Tensor>>,
    down_names: [String; 2],
}

impl Bottleneck {
    /// A new adapter of width `bottleneck` over `hidden`, initialised as the config says.
    pub fn new(owner: &str, config: &BnConfig, hidden: i64, bottleneck: i64, kind: Kind, device: Device) -> Result<Bottleneck> {
        let _guard = tch::no_grad_guard();
        if let Some(seed) = config.init_weights_seed.filter(|s| *s != 0) {
            tch::manual_seed(seed);
        }
        let norm = || -> Result<(Tensor, Tensor)> { Ok((Tensor::f_ones([hidden], (kind, device))?, Tensor::f_zeros([hidden], (kind, device))?)) };
        let mut down = Dense::new(hidden, bottleneck, kind, device)?;
        let mut up = Dense::new(bottleneck, hidden, kind, device)?;
        let scaling = match config.scaling {
            Scaling::Fixed(_) => None,
            Scaling::Learned => Some(Tensor::f_ones([1], (kind, device))?),
            Scaling::Channel => Some(Tensor::f_ones([hidden], (kind, device))?),
        };
        let norm_after = if config.ln_after { Some(norm()?) } else { None };
        let mut gate = if config.use_gating { Some(Dense::new(hidden, 1, kind, device)?) } else { None };
        match config.init_weights.as_str() {
            "bert" => {
                down = down.bert()?;
                up = up.bert()?;
                gate = gate.map(Dense::bert).transpose()?;
            }
            "mam_adapter" => {
                kaiming_uniform_(&mut down.weight, 5f64.sqrt())?;
                let _ = down.bias.f_zero_()?;
                let _ = up.weight.f_zero_()?;
                let _ = up.bias.f_zero_()?;
                gate = gate.map(Dense::bert).transpose()?;
            }
            _ => {
                trunc_normal_(&mut down.weight, 1e-2)?;
                let _ = down.bias.f_zero_()?;
                trunc_normal_(&mut up.weight, 1e-2)?;
                let _ = up.bias.f_zero_()?;
            }
        }
        let i = if config.ln_before { 1 } else { 0 };
        let trainable = |t: Tensor| t.f_set_requires_grad(true);
        Ok(Bottleneck {
            owner: owner.to_string(),
            config: config.clone(),
            norm_before: if config.ln_before { let (w, b) = norm()?; Some((trainable(w)?, trainable(b)?)) } else { None },
            down: down.trainable()?,
            up: up.trainable()?,
            scaling: scaling.map(trainable).transpose()?,
            norm_after: norm_after.map(|(w, b)| Ok::<_, anyhow::Error>((trainable(w)?, trainable(b)?))).transpose()?,
            gate: gate.map(Dense::trainable).transpose()?,
            last_gate: RefCell::new(None),
            down_names: [format!("adapter_down.{i}.weight"), format!("adapter_down.{i}.bias")],
        })
    }

    fn scaled(&self, up: Tensor) -> Result<Tensor> {
        match (&self.scaling, &self.config.scaling) {
            (Some(s), _) => Ok(up.f_mul(s)?),
            // A scale of 1 (most configs) changes nothing: no multiply, forward or backward.
            (None, Scaling::Fixed(s)) if *s == 1.0 => Ok(up),
            (None, Scaling::Fixed(s)) => Ok(up.f_mul_scalar(*s)?),
            (None, _) => Ok(up),
        }
    }
}

impl Module for Bottleneck {
    fn class_name(&self) -> &'static str {
        if self.config.is_parallel {
            "ParallelAdapter"
        } else {
            "Adapter"
        }
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out: Vec<(&str, &Tensor)> = Vec::new();
        if let Some(s) = &self.scaling {
            out.push(("scaling", s));
        }
        if let Some((w, b)) = &self.norm_before {
            out.push(("adapter_down.0.weight", w));
            out.push(("adapter_down.0.bias", b));
        }
        out.push((&self.down_names[0], &self.down.weight));
        out.push((&self.down_names[1], &self.down.bias));
        out.push(("adapter_up.weight", &self.up.weight));
        out.push(("adapter_up.bias", &self.up.bias));
        if let Some((w, b)) = &self.norm_after {
            out.push(("adapter_norm_after.weight", w));
            out.push(("adapter_norm_after.bias", b));
        }
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
        format!("{} → {} → {}", self.down.weight.size()[1], self.down.weight.size()[0], self.up.weight.size()[0])
    }
    module_children!();
}

fn norm_of(x: &Tensor, (w, b): &(Tensor, Tensor)) -> Result<Tensor> {
    layer_norm(x, &[w.size()[0]], Some(w), Some(b), 1e-5)
}

impl ResidualAdapter for Bottleneck {
    fn pre(&self, ctx: &Ctx, output: &Tensor, residual: &Tensor, norm: Option<&dyn Norm>, query_before_ln: Option<bool>) -> Result<(Tensor, Option<Tensor>, Tensor)> {
        if self.config.is_parallel {
            // A parallel adapter reads the sublayer's residual.
            return Ok((residual.shallow_clone(), query_before_ln.map(|_| residual.shallow_clone()), residual.shallow_clone()));
        }
        let c = &self.config;
        let mut adapter_residual = (c.residual_before_ln == ResidualBeforeLn::Yes).then(|| output.shallow_clone());
        let query = (query_before_ln == Some(true)).then(|| output.shallow_clone());
        let mut h = output.shallow_clone();
        if c.original_ln_before {
            h = h.f_add(residual)?;
            if let Some(norm) = norm {
                if c.residual_before_ln == ResidualBeforeLn::PostAdd {
                    adapter_residual = Some(h.shallow_clone());
                }
                h = norm.forward(ctx, &h)?;
            }
        }
        let adapter_residual = match adapter_residual {
            Some(r) if c.residual_before_ln != ResidualBeforeLn::No => r,
            _ => h.shallow_clone(),
        };
        let query = match query_before_ln {
            Some(false) => Some(h.shallow_clone()),
            _ => query,
        };
        Ok((h, query, adapter_residual))
    }

    fn forward(&self, ctx: &Ctx, x: &Tensor, adapter_residual: &Tensor) -> Result<(Tensor, Tensor)> {
        let mut down = match &self.norm_before {
            Some(n) => norm_of(x, n)?,
            None => x.shallow_clone(),
        };
        down = activation(&self.config.non_linearity, &self.down.forward(&down)?)?;
        let up = self.scaled(self.up.forward(&down)?)?;
        let mut out = dropout(&up, self.config.dropout, ctx.training)?;
        if let Some(g) = &self.gate {
            let gate = g.forward(x)?.f_sigmoid()?.f_mean_dim(1, false, None)?.f_unsqueeze(-1)?;
            out = out.f_mul(&gate)?;
            *self.last_gate.borrow_mut() = Some(gate.f_detach()?);
        }
        if self.config.is_parallel {
            if let Some(n) = &self.norm_after {
                out = norm_of(&out, n)?;
            }
            return Ok((out, up));
        }
        if self.config.adapter_residual_before_ln {
            out = out.f_add(adapter_residual)?;
        }
        if let Some(n) = &self.norm_after {
            out = norm_of(&out, n)?;
        }
        if !self.config.adapter_residual_before_ln {
            out = out.f_add(adapter_residual)?;
        }
        Ok((out, up))
    }

    fn post(&self, ctx: &Ctx, h: Tensor, output: &Tensor, residual: &Tensor, norm: Option<&dyn Norm>) -> Result<Tensor> {
        let h = if self.config.is_parallel { h.f_add(output)? } else { h };
        if !self.config.original_ln_after {
            return Ok(h);
        }
        let h = h.f_add(residual)?;
        match norm {
            Some(n) => n.forward(ctx, &h),
            None => Ok(h),
        }
    }
}

/// The NICE coupling block (Dinh et al. 2015) AdapterHub puts on the embeddings: the hidden
/// vector split in halves x1, x2; y1 = x1 + F(x2), y2 = x2 + G(y1), each of F and G a small MLP.
pub struct NiceCoupling {
    pub owner: String,
    pub non_linearity: String,
    /// F: (Linear, Linear) over the second half → first half.
    pub f: (Dense, Dense),
    /// G: over the first half → second half.
    pub g: (Dense, Dense),
    split: i64,
}

impl NiceCoupling {
    /// A new block over `hidden`, weights as AdapterHub's (`init_bert_weights`).
    pub fn new(owner: &str, hidden: i64, non_linearity: &str, reduction_factor: f64, kind: Kind, device: Device) -> Result<NiceCoupling> {
        let _guard = tch::no_grad_guard();
        let (len1, len2) = (hidden / 2, hidden - hidden / 2);
        let subnet = |n_in: i64, n_out: i64| -> Result<(Dense, Dense)> {
            let mid = ((n_in as f64 / reduction_factor).floor() as i64).max(1);
            Ok((Dense::new(n_in, mid, kind, device)?.bert()?.trainable()?, Dense::new(mid, n_out, kind, device)?.bert()?.trainable()?))
        };
        Ok(NiceCoupling { owner: owner.to_string(), non_linearity: non_linearity.to_string(), f: subnet(len2, len1)?, g: subnet(len1, len2)?, split: len1 })
    }

    fn mlp(&self, (a, b): &(Dense, Dense), x: &Tensor) -> Result<Tensor> {
        b.forward(&activation(&self.non_linearity, &a.forward(x)?)?)
    }

    fn halves(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = x.size().last().copied().context("hidden states without dimensions")?;
        Ok((x.f_narrow(-1, 0, self.split)?, x.f_narrow(-1, self.split, n - self.split)?))
    }
}

impl Module for NiceCoupling {
    fn class_name(&self) -> &'static str {
        "NICECouplingBlock"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        vec![
            ("F.0.weight", &self.f.0.weight),
            ("F.0.bias", &self.f.0.bias),
            ("F.2.weight", &self.f.1.weight),
            ("F.2.bias", &self.f.1.bias),
            ("G.0.weight", &self.g.0.weight),
            ("G.0.bias", &self.g.0.bias),
            ("G.2.weight", &self.g.1.weight),
            ("G.2.bias", &self.g.1.bias),
        ]
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    module_children!();
}

impl InvertibleAdapter for NiceCoupling {
    fn forward(&self, _ctx: &Ctx, h: &Tensor) -> Result<Tensor> {
        let (x1, x2) = self.halves(h)?;
        let y1 = x1.f_add(&self.mlp(&self.f, &x2)?)?;
        let y2 = x2.f_add(&self.mlp(&self.g, &y1)?)?;
        Ok(Tensor::f_cat(&[y1, y2], -1)?)
    }

    fn inverse(&self, _ctx: &Ctx, h: &Tensor) -> Result<Tensor> {
        let (x1, x2) = self.halves(h)?;
        let y2 = x2.f_sub(&self.mlp(&self.g, &x1)?)?;
        let y1 = x1.f_sub(&self.mlp(&self.f, &y2)?)?;
        Ok(Tensor::f_cat(&[y1, y2], -1)?)
    }
}

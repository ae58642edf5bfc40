//! AdapterFusion (Pfeiffer et al. 2021) as AdapterHub's `BertFusion`: at each residual point, an
//! attention whose query is the layer's hidden state and whose keys and values are the
//! up-projections of the fused bottleneck adapters; a softmax over the adapters weighs their
//! outputs. Configs `dynamic` (query, key and value projections, the value starting as the
//! identity) and `static` (no value projection), with AdapterHub's option names; with
//! `temperature` the softmax starts at T = 50 and anneals by T/1000 per forward down to 1.

use std::cell::{Cell, RefCell};

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use tch::{Device, Kind, Tensor};

use super::bottleneck::Dense;
use crate::module_children;
use crate::nn::attach::FusionAdapter;
use crate::nn::functional::{dropout, linear};
use crate::nn::hooks::Ctx;
use crate::nn::module::{Module, Owner};

/// AdapterHub's `AdapterFusionConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct FusionConfig {
    pub key: bool,
    pub query: bool,
    pub value: bool,
    pub query_before_ln: bool,
    pub regularization: bool,
    pub residual_before: bool,
    pub temperature: bool,
    /// Where AdapterHub applies the value projection, before or after the weighted sum over
    /// adapters: kept for its files; without a bias the two give the same function.
    pub value_before_softmax: bool,
    pub value_initialized: bool,
    /// The dropout on attention scores (None: the model's attention dropout).
    pub dropout_prob: Option<f64>,
}

const FLAGS: &[&str] = &["key", "query", "value", "query_before_ln", "regularization", "residual_before", "temperature", "value_before_softmax", "value_initialized"];

impl FusionConfig {
    pub fn preset(name: &str) -> Result<FusionConfig> {
        let static_ = FusionConfig {
            key: true,
            query: true,
            value: false,
            query_before_ln: false,
            regularization: false,
            residual_before: false,
            temperature: false,
            value_before_softmax: true,
            value_initialized: false,
            dropout_prob: None,
        };
        Ok(match name {
            "static" => static_,
            "dynamic" => FusionConfig { value: true, regularization: true, value_initialized: true, ..static_ },
            other => bail!("unknown fusion config '{other}' (known: dynamic, static)"),
        })
    }

    /// From a recipe's options: `config` (a preset, default "dynamic") and overrides by name.
    pub fn from_options(mut options: Map<String, Value>) -> Result<FusionConfig> {
        let preset = match options.remove("config") {
            None | Some(Value::Null) => "dynamic".to_string(),
            Some(Value::String(s)) => s,
            Some(other) => bail!("config must be \"dynamic\" or \"static\", got {other}"),
        };
        let mut c = FusionConfig::preset(&preset)?;
        c.apply(&options)?;
        Ok(c)
    }

    /// From AdapterHub's adapter_fusion_config.json `config` object.
    pub fn from_adapterhub(config: &Map<String, Value>) -> Result<FusionConfig> {
        let mut c = FusionConfig::preset("dynamic")?;
        c.apply(config)?;
        Ok(c)
    }

    fn apply(&mut self, o: &Map<String, Value>) -> Result<()> {
        for (k, v) in o {
            if k == "dropout_prob" {
                self.dropout_prob = if v.is_null() { None } else { Some(v.as_f64().filter(|p| (0.0..1.0).contains(p)).ok_or_else(|| anyhow!("dropout_prob must be a number in [0, 1), got {v}"))?) };
                continue;
            }
            let on = v.as_bool().ok_or_else(|| anyhow!("{k} must be true or false, got {v}"));
            match k.as_str() {
                "key" => self.key = on?,
                "query" => self.query = on?,
                "value" => self.value = on?,
                "query_before_ln" => self.query_before_ln = on?,
                "regularization" => self.regularization = on?,
                "residual_before" => self.residual_before = on?,
                "temperature" => self.temperature = on?,
                "value_before_softmax" => self.value_before_softmax = on?,
                "value_initialized" => self.value_initialized = on?,
                other => bail!("unknown fusion option '{other}' (options: config, dropout_prob, {})", FLAGS.join(", ")),
            }
        }
        Ok(())
    }

    pub fn to_adapterhub(&self) -> Value {
        json!({
            "dropout_prob": self.dropout_prob,
            "key": self.key,
            "query": self.query,
            "query_before_ln": self.query_before_ln,
            "regularization": self.regularization,
            "residual_before": self.residual_before,
            "temperature": self.temperature,
            "value": self.value,
            "value_before_softmax": self.value_before_softmax,
            "value_initialized": self.value_initialized,
        })
    }
}

/// A fusion added to a model: its name ("a,b,c"), the adapters it fuses and its config.
#[derive(Clone, Debug)]
pub struct Fusion {
    pub name: String,
    pub adapters: Vec<String>,
    pub config: FusionConfig,
}

/// One fusion layer at one residual point.
pub struct FusionLayer {
    pub owner: String,
    pub config: FusionConfig,
    pub query: Option<Dense>,
    pub key: Option<Dense>,
    /// (hidden, hidden), no bias.
    pub value: Option<Tensor>,
    /// AdapterHub's unused `dense` (hidden → 1), made when there is no query, key or value.
    pub dense: Option<Dense>,
    dropout: f64,
    temperature: Cell<f64>,
    reduction: f64,
    /// The attention weights of the last forward, averaged over batch and positions (adapters).
    pub last_weights: RefCell<Option<Tensor>>,
}

impl FusionLayer {
    pub fn new(owner: &str, config: &FusionConfig, hidden: i64, attention_dropout: f64, kind: Kind, device: Device) -> Result<FusionLayer> {
        let _guard = tch::no_grad_guard();
        let train = |t: Tensor| t.f_set_requires_grad(true);
        let dense = |n_out: i64| -> Result<Dense> { Dense::new(hidden, n_out, kind, device)?.bert()?.trainable() };
        let value = if config.value {
            let w = if config.value_initialized {
                Tensor::f_eye(hidden, (kind, device))?.f_mul_scalar(1.0 - 1e-6)?.f_add_scalar(1e-6)?
            } else {
                Tensor::f_empty([hidden, hidden], (kind, device))?.f_normal_(0.0, 0.02)?
            };
            Some(train(w)?)
        } else {
            None
        };
        let t = if config.temperature { 50.0 } else { 1.0 };
        Ok(FusionLayer {
            owner: owner.to_string(),
            config: config.clone(),
            query: if config.query { Some(dense(hidden)?) } else { None },
            key: if config.key { Some(dense(hidden)?) } else { None },
            value,
            dense: if !config.query && !config.key && !config.value { Some(dense(1)?) } else { None },
            dropout: config.dropout_prob.unwrap_or(attention_dropout),
            temperature: Cell::new(t),
            reduction: t / 1000.0,
            last_weights: RefCell::new(None),
        })
    }

    /// The softmax temperature the next forward uses.
    pub fn temperature(&self) -> f64 {
        self.temperature.get()
    }

    /// Sets the temperature (a checkpoint puts back where annealing had reached).
    pub fn set_temperature(&self, t: f64) {
        self.temperature.set(t);
    }
}

impl Module for FusionLayer {
    fn class_name(&self) -> &'static str {
        "BertFusion"
    }
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        let mut out: Vec<(&str, &Tensor)> = Vec::new();
        if let Some(d) = &self.dense {
            out.extend([("dense.weight", &d.weight), ("dense.bias", &d.bias)]);
        }
        if let Some(q) = &self.query {
            out.extend([("query.weight", &q.weight), ("query.bias", &q.bias)]);
        }
        if let Some(k) = &self.key {
            out.extend([("key.weight", &k.weight), ("key.bias", &k.bias)]);
        }
        if let Some(v) = &self.value {
            out.push(("value.weight", v));
        }
        out
    }
    fn owner(&self) -> Owner {
        Owner::Adapter(self.owner.clone())
    }
    module_children!();
}

impl FusionAdapter for FusionLayer {
    fn query_before_ln(&self) -> bool {
        self.config.query_before_ln
    }

    /// AdapterHub's BertFusion computed with the projections moved to the side with one row per
    /// position instead of one per adapter: the key enters only through q·(W_k u + b_k) =
    /// (q W_k)·u + q·b_k, and the bias-free value commutes with the weighted sum over adapters,
    /// Σ_a p_a W_v u_a = W_v Σ_a p_a u_a. The same function and gradients, with two projections
    /// per position where AdapterHub makes 2·adapters + 1.
    fn forward(&self, ctx: &Ctx, query: &Tensor, ups: &Tensor, residual: &Tensor) -> Result<Tensor> {
        // AdapterHub adds the residual in place to the tensor it passes as both key and value.
        let values = if self.config.residual_before { ups.f_add(&residual.f_unsqueeze(2)?)? } else { ups.shallow_clone() };
        let q = match &self.query {
            Some(d) => d.forward(query)?,
            None => query.shallow_clone(),
        };
        let q_keyed = match &self.key {
            Some(d) => q.f_matmul(&d.weight)?,
            None => q.shallow_clone(),
        };
        let mut scores = values.f_matmul(&q_keyed.f_unsqueeze(-1)?)?.f_squeeze_dim(-1)?;
        if let Some(d) = &self.key {
            // q·b_k is the same for every adapter: the softmax ignores it and adding it would
            // only cost precision, but dropout on the scores does not ignore it. Without
            // dropout it enters times zero, so that b_k still gets its (zero) gradient.
            let shift = q.f_matmul(&d.bias)?.f_unsqueeze(-1)?;
            let dropping = ctx.training && self.dropout > 0.0;
            scores = scores.f_add(&if dropping { shift } else { shift.f_mul_scalar(0.0)? })?;
        }
        let scores = dropout(&scores, self.dropout, ctx.training)?;
        let t = self.temperature.get();
        let probs = scores.f_div_scalar(t)?.f_softmax(-1, scores.kind())?;
        self.temperature.set((t - self.reduction).max(1.0));
        let mut out = probs.f_unsqueeze(2)?.f_matmul(&values)?.f_squeeze_dim(2)?;
        if let Some(w) = &self.value {
            out = linear(&out, w, None)?;
        }
        if !self.config.residual_before {
            out = out.f_add(residual)?;
        }
        let n = probs.size().last().copied().unwrap_or(0);
        *self.last_weights.borrow_mut() = Some(probs.f_detach()?.f_reshape([-1, n])?.f_mean_dim(0, false, Some(Kind::Float))?);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::hooks::Hooks;

    #[test]
    fn temperature_anneals_per_forward_and_weights_sum_to_one() {
        let config = FusionConfig { temperature: true, ..FusionConfig::preset("dynamic").unwrap() };
        let layer = FusionLayer::new("a,b", &config, 4, 0.0, Kind::Float, Device::Cpu).unwrap();
        let hooks = Hooks::default();
        let ctx = Ctx { training: false, hooks: &hooks, adapters_off: false, checkpoint: None, setup: None, prefixes: None };
        let (q, ups, r) = (Tensor::randn([2, 3, 4], (Kind::Float, Device::Cpu)), Tensor::randn([2, 3, 2, 4], (Kind::Float, Device::Cpu)), Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu)));
        assert_eq!(layer.temperature.get(), 50.0);
        for i in 1..=3 {
            let _ = layer.forward(&ctx, &q, &ups, &r).unwrap();
            assert!((layer.temperature.get() - (50.0 - 0.05 * i as f64)).abs() < 1e-9, "T falls by T0/1000 per forward");
            let w = layer.last_weights.borrow().as_ref().unwrap().shallow_clone();
            assert!((w.sum(Kind::Double).double_value(&[]) - 1.0).abs() < 1e-6);
        }
        let steady = FusionLayer::new("a,b", &FusionConfig::preset("static").unwrap(), 4, 0.0, Kind::Float, Device::Cpu).unwrap();
        let _ = steady.forward(&ctx, &q, &ups, &r).unwrap();
        assert_eq!(steady.temperature.get(), 1.0, "without temperature T stays 1");
    }

    /// BertFusion as AdapterHub writes it: keys and values projected per adapter.
    fn adapterhub_forward(layer: &FusionLayer, training: bool, query: &Tensor, ups: &Tensor, residual: &Tensor) -> Tensor {
        let c = &layer.config;
        let value = if c.residual_before { ups + residual.unsqueeze(2) } else { ups.shallow_clone() };
        let q = layer.query.as_ref().map_or_else(|| query.shallow_clone(), |d| d.forward(query).unwrap());
        let k = layer.key.as_ref().map_or_else(|| value.shallow_clone(), |d| d.forward(&value).unwrap());
        let v = match (&layer.value, c.value_before_softmax) {
            (Some(w), true) => value.linear(w, None::<Tensor>),
            _ => value,
        };
        let scores = q.unsqueeze(2).matmul(&k.transpose(-2, -1)).squeeze_dim(2).dropout(layer.dropout, training);
        let probs = scores.softmax(-1, Kind::Double);
        let mut out = probs.unsqueeze(2).matmul(&v).squeeze_dim(2);
        if let (Some(w), false) = (&layer.value, c.value_before_softmax) {
            out = out.linear(w, None::<Tensor>);
        }
        if c.residual_before { out } else { out + residual }
    }

    #[test]
    fn reordered_projections_equal_adapterhubs_order_with_and_without_dropout() {
        let hooks = Hooks::default();
        let dynamic = FusionConfig::preset("dynamic").unwrap();
        let configs = [
            dynamic.clone(),
            FusionConfig::preset("static").unwrap(),
            FusionConfig { residual_before: true, value_before_softmax: false, value_initialized: false, ..dynamic.clone() },
            FusionConfig { key: false, query: false, ..dynamic },
        ];
        for (i, config) in configs.iter().enumerate() {
            for (training, p) in [(false, 0.0), (true, 0.0), (true, 0.3)] {
                let layer = FusionLayer::new("a,b,c", config, 6, p, Kind::Double, Device::Cpu).unwrap();
                let ctx = Ctx { training, hooks: &hooks, adapters_off: false, checkpoint: None, setup: None, prefixes: None };
                let _ = tch::manual_seed(i as i64);
                let opts = (Kind::Double, Device::Cpu);
                let (q, ups, r) = (Tensor::randn([2, 5, 6], opts), Tensor::randn([2, 5, 3, 6], opts), Tensor::randn([2, 5, 6], opts));
                let w = Tensor::randn([2, 5, 6], opts);
                let params = || layer.own_parameters().into_iter().map(|(_, t)| t.shallow_clone()).collect::<Vec<_>>();
                let run = |ours: bool| {
                    let _ = tch::manual_seed(100);
                    let out = if ours { layer.forward(&ctx, &q, &ups, &r).unwrap() } else { adapterhub_forward(&layer, training, &q, &ups, &r) };
                    let grads = Tensor::run_backward(&[(&out * &w).sum(Kind::Double)], &params(), false, false);
                    (out, grads)
                };
                let ((ours, our_grads), (theirs, their_grads)) = (run(true), run(false));
                let what = format!("config {i}, training {training}, dropout {p}");
                assert!(ours.allclose(&theirs, 1e-12, 1e-12, false), "{what}: outputs differ");
                for (g, h) in our_grads.iter().zip(&their_grads) {
                    assert!(g.allclose(h, 1e-10, 1e-12, false), "{what}: gradients differ by {}", (g - h).abs().max().double_value(&[]));
                }
            }
        }
    }
}

//! Rotary position embeddings (Su et al., 2021, RoFormer) as transformers computes them
//! (`LlamaRotaryEmbedding`, `rotate_half` layout), with `rope_scaling` of type `linear` and
//! `llama3` (`_compute_llama3_parameters`). Frequencies are float32, as in transformers.

use std::f64::consts::PI;

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::config::HfConfig;

#[derive(Clone, Debug)]
pub enum RopeScaling {
    Default,
    Linear { factor: f64 },
    Llama3 { factor: f64, low_freq_factor: f64, high_freq_factor: f64, original_max_position_embeddings: f64 },
}

#[derive(Clone, Debug)]
pub struct RopeConfig {
    pub theta: f64,
    pub scaling: RopeScaling,
}

impl RopeConfig {
    /// Reads `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (earlier).
    pub fn parse(cfg: &HfConfig) -> Result<RopeConfig> {
        let params = cfg.object("rope_parameters").or_else(|| cfg.object("rope_scaling"));
        let theta = params
            .and_then(|p| p.get("rope_theta"))
            .and_then(|v| v.as_f64())
            .map(Ok)
            .unwrap_or_else(|| cfg.float_or("rope_theta", 10000.0))?;
        let Some(p) = params else { return Ok(RopeConfig { theta, scaling: RopeScaling::Default }) };
        let kind = p.get("rope_type").or_else(|| p.get("type")).and_then(|v| v.as_str()).unwrap_or("default");
        let num = |key: &str| -> Result<f64> {
            match p.get(key).and_then(|v| v.as_f64()) {
                Some(v) => Ok(v),
                None => bail!("rope scaling of type '{kind}' needs '{key}'"),
            }
        };
        let scaling = match kind {
            "default" => RopeScaling::Default,
            "linear" => RopeScaling::Linear { factor: num("factor")? },
            "llama3" => RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            },
            other => bail!("rope scaling of type '{other}' is not supported (supported: default, linear, llama3)"),
        };
        Ok(RopeConfig { theta, scaling })
    }
}

pub struct Rope {
    /// (head_dim / 2) float32 inverse frequencies.
    inv_freq: Tensor,
}

impl Rope {
    pub fn new(config: &RopeConfig, head_dim: i64, device: Device) -> Result<Rope> {
        let exponents = Tensor::f_arange_start_step(0, head_dim, 2, (Kind::Float, device))?.f_div_scalar(head_dim as f64)?;
        let mut inv_freq = Tensor::f_pow_scalar(config.theta, &exponents)?.f_reciprocal()?;
        match config.scaling {
            RopeScaling::Default => {}
            RopeScaling::Linear { factor } => inv_freq = inv_freq.f_div_scalar(factor)?,
            RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position_embeddings: old } => {
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                let wavelen = inv_freq.f_reciprocal()?.f_mul_scalar(2.0 * PI)?;
                let scaled = inv_freq.f_div_scalar(factor)?;
                let llama = scaled.f_where_self(&wavelen.f_gt(low_wavelen)?, &inv_freq)?;
                let smooth = wavelen.f_reciprocal()?.f_mul_scalar(old)?.f_sub_scalar(low_freq_factor)?.f_div_scalar(high_freq_factor - low_freq_factor)?;
                let smooth_complement = smooth.f_neg()?.f_add_scalar(1.0)?;
                let smoothed = smooth_complement.f_mul(&llama)?.f_div_scalar(factor)?.f_add(&smooth.f_mul(&llama)?)?;
                let medium = wavelen.f_lt(high_wavelen)?.f_logical_not()?.f_logical_and(&wavelen.f_gt(low_wavelen)?.f_logical_not()?)?;
                inv_freq = smoothed.f_where_self(&medium, &llama)?;
            }
        }
        Ok(Rope { inv_freq })
    }

    /// cos and sin, each (B, T, head_dim), for int64 `positions` (B, T), cast to `kind`.
    pub fn cos_sin(&self, positions: &Tensor, kind: Kind) -> Result<(Tensor, Tensor)> {
        let inv_freq = self.inv_freq.f_to_device(positions.device())?;
        let freqs = positions.f_unsqueeze(-1)?.f_to_kind(Kind::Float)?.f_mul(&inv_freq)?;
        let emb = Tensor::f_cat(&[&freqs, &freqs], -1)?;
        Ok((emb.f_cos()?.f_to_kind(kind)?, emb.f_sin()?.f_to_kind(kind)?))
    }
}


//! Text generation for causal LMs with a key/value cache, following transformers' `generate`:
//! greedy decoding or sampling with temperature, top-k and top-p, a repetition penalty, stop
//! ids, stop strings, left-padded batches (positions counted over real tokens), finished rows
//! filled with the pad id, and a callback per new token. A seed gives sampling a generator of
//! its own, so that generating inside a recipe leaves the training's random stream alone.

use anyhow::{bail, Result};
use serde::Deserialize;
use tch::{Kind, Tensor};

use super::config::HfConfig;
use super::mask;
use super::model::Model;
use crate::tensor::shim::Generator;
use crate::tokenizer::Tok;

/// What a caller asks of `generate`; `resolve` fills in the model's generation_config.json and
/// transformers' defaults (greedy unless `do_sample`; when sampling, temperature 1, top-k 50,
/// top-p 1). Unknown keys are errors.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    /// New tokens at most (default 20).
    pub max_new_tokens: Option<i64>,
    /// Sample instead of greedy decoding (default: the generation config's, else false; as in
    /// transformers, temperature, top_k and top_p alone do not switch sampling on).
    pub do_sample: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    /// Penalty > 1 discourages tokens already present (transformers' repetition_penalty).
    pub repetition_penalty: Option<f64>,
    /// Token ids that end a row (default: eos_token_id of the generation config, else of config.json).
    pub stop_ids: Option<Vec<i64>>,
    /// Strings that end a row once its generated text contains one (needs a tokenizer).
    pub stop_strings: Option<Vec<String>>,
    /// Fills finished rows (default: pad_token_id as for stop_ids, else the first stop id, else 0).
    pub pad_id: Option<i64>,
    /// Samples from a generator of its own seeded with this (the global stream is untouched).
    pub seed: Option<i64>,
}

/// Everything `generate` needs, resolved.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: i64,
    pub do_sample: bool,
    pub temperature: f64,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub repetition_penalty: Option<f64>,
    pub stop_ids: Vec<i64>,
    pub stop_strings: Vec<String>,
    pub pad_id: i64,
    pub seed: Option<i64>,
}

/// An id or list of ids a config.json gives under `key`.
fn config_ids(config: &HfConfig, key: &str) -> Vec<i64> {
    match config.json.get(key) {
        Some(serde_json::Value::Number(n)) => n.as_i64().into_iter().collect(),
        Some(serde_json::Value::Array(a)) => a.iter().filter_map(|v| v.as_i64()).collect(),
        _ => Vec::new(),
    }
}

impl GenerateRequest {
    /// Resolves the request against config.json and, if the model has one, its
    /// generation_config.json (whose values win over config.json's).
    pub fn resolve(self, config: &HfConfig, generation: Option<&HfConfig>) -> Result<GenerateOptions> {
        let gen_float = |key: &str| generation.and_then(|g| g.json.get(key)).and_then(|v| v.as_f64());
        let gen_int = |key: &str| generation.and_then(|g| g.json.get(key)).and_then(|v| v.as_i64());
        let ids = |key: &str| {
            let from_generation = generation.map(|g| config_ids(g, key)).unwrap_or_default();
            if from_generation.is_empty() { config_ids(config, key) } else { from_generation }
        };
        let temperature = self.temperature.or_else(|| gen_float("temperature")).unwrap_or(1.0);
        let top_k = self.top_k.or_else(|| gen_int("top_k")).unwrap_or(50);
        let top_p = self.top_p.or_else(|| gen_float("top_p")).unwrap_or(1.0);
        if temperature < 0.0 || !(0.0..=1.0).contains(&top_p) || top_k < 0 {
            bail!("need temperature ≥ 0, top_p in [0, 1] and top_k ≥ 0 (0 = no top-k)");
        }
        let max_new_tokens = self.max_new_tokens.or_else(|| gen_int("max_new_tokens")).unwrap_or(20);
        if max_new_tokens < 0 {
            bail!("max_new_tokens must be ≥ 0");
        }
        let do_sample = self.do_sample.or_else(|| generation.and_then(|g| g.json.get("do_sample")).and_then(|v| v.as_bool())).unwrap_or(false);
        let stop_ids = self.stop_ids.unwrap_or_else(|| ids("eos_token_id"));
        let pad_id = self.pad_id.or_else(|| ids("pad_token_id").first().copied()).or_else(|| stop_ids.first().copied()).unwrap_or(0);
        let repetition_penalty = self.repetition_penalty.or_else(|| gen_float("repetition_penalty")).filter(|p| *p != 1.0);
        Ok(GenerateOptions {
            max_new_tokens,
            do_sample: do_sample && temperature > 0.0,
            temperature,
            top_k: (top_k > 0).then_some(top_k),
            top_p: (top_p < 1.0).then_some(top_p),
            repetition_penalty,
            stop_ids,
            stop_strings: self.stop_strings.unwrap_or_default(),
            pad_id,
            seed: self.seed,
        })
    }
}

/// transformers' RepetitionPenaltyLogitsProcessor: scores of tokens already in `ids` are divided
/// by the penalty if positive, multiplied if negative.
fn repetition_penalty(scores: &Tensor, ids: &Tensor, penalty: f64) -> Result<Tensor> {
    let picked = scores.f_gather(1, ids, false)?;
    let penalised = picked.f_mul_scalar(penalty)?.f_where_self(&picked.f_lt(0.0)?, &picked.f_div_scalar(penalty)?)?;
    Ok(scores.f_scatter(1, ids, &penalised)?)
}

/// TopKLogitsWarper: scores below the k-th largest become -inf.
fn top_k(scores: &Tensor, k: i64) -> Result<Tensor> {
    let k = k.min(scores.size()[1]);
    let (values, _) = scores.f_topk(k, -1, true, true)?;
    let threshold = values.f_narrow(1, k - 1, 1)?;
    Ok(scores.f_masked_fill(&scores.f_lt_tensor(&threshold)?, f64::NEG_INFINITY)?)
}

/// TopPLogitsWarper: keep the smallest set of tokens whose probability reaches `p` (at least one).
fn top_p(scores: &Tensor, p: f64) -> Result<Tensor> {
    let (sorted, indices) = scores.f_sort(-1, false)?;
    let cumulative = sorted.f_softmax(-1, Kind::Float)?.f_cumsum(-1, Kind::Float)?;
    let remove = cumulative.f_le(1.0 - p)?;
    let last = remove.size()[1] - 1;
    let _ = remove.f_narrow(1, last, 1)?.f_fill_(0)?;
    let remove = remove.f_scatter(1, &indices, &remove.shallow_clone())?;
    Ok(scores.f_masked_fill(&remove, f64::NEG_INFINITY)?)
}

fn next_tokens(scores: &Tensor, sequences: &Tensor, o: &GenerateOptions, generator: Option<&mut Generator>) -> Result<Tensor> {
    let mut scores = scores.f_to_kind(Kind::Float)?;
    if let Some(p) = o.repetition_penalty {
        scores = repetition_penalty(&scores, sequences, p)?;
    }
    if !o.do_sample {
        return Ok(scores.f_argmax(-1, false)?);
    }
    if o.temperature != 1.0 {
        scores = scores.f_div_scalar(o.temperature)?;
    }
    if let Some(k) = o.top_k {
        scores = top_k(&scores, k)?;
    }
    if let Some(p) = o.top_p {
        scores = top_p(&scores, p)?;
    }
    let probs = scores.f_softmax(-1, Kind::Float)?;
    let drawn = match generator {
        Some(g) => g.multinomial(&probs)?,
        None => probs.f_multinomial(1, false)?,
    };
    Ok(drawn.f_squeeze_dim(1)?)
}

/// Generates up to `max_new_tokens` after `input_ids` (B, T). Stop strings are looked for in
/// each row's generated text, decoded with `tokenizer`; `on_token(step, tokens)` sees each
/// step's (B) tokens and may return false to stop. Returns (B, T + generated).
pub fn generate(
    model: &Model,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    o: &GenerateOptions,
    tokenizer: Option<&Tok>,
    on_token: &mut dyn FnMut(i64, &Tensor) -> Result<bool>,
) -> Result<Tensor> {
    crate::tensor::guard::catch(|| generate_unguarded(model, input_ids, attention_mask, o, tokenizer, on_token))
}

fn generate_unguarded(
    model: &Model,
    input_ids: &Tensor,
    attention_mask: Option<&Tensor>,
    o: &GenerateOptions,
    tokenizer: Option<&Tok>,
    on_token: &mut dyn FnMut(i64, &Tensor) -> Result<bool>,
) -> Result<Tensor> {
    let Some(mut cache) = model.new_cache() else { bail!("{} cannot generate: it is not a causal language model", model.architecture) };
    let size = input_ids.size();
    if size.len() != 2 || size[1] == 0 {
        bail!("input_ids must be (batch, seq) with seq > 0, got shape {size:?}");
    }
    let stop_strings = match (o.stop_strings.is_empty(), tokenizer) {
        (true, _) => None,
        (false, Some(tok)) => Some(tok),
        (false, None) => bail!("stop_strings needs a tokenizer"),
    };
    let (b, t) = (size[0], size[1]);
    let device = input_ids.device();
    let mut generator = match o.seed {
        Some(seed) if o.do_sample => Some(Generator::new(device, seed as u64)?),
        _ => None,
    };
    let _guard = tch::no_grad_guard();
    let mut padding = attention_mask.map(|m| m.shallow_clone());
    let positions = mask::positions(b, t, 0, padding.as_ref(), device)?;
    let mut logits = model.causal_logits(input_ids, padding.as_ref(), Some(&positions), Some(&mut cache))?;
    let mut next_position = positions.f_narrow(1, t - 1, 1)?.f_add_scalar(1)?;
    let mut sequences = input_ids.shallow_clone();
    let mut unfinished = Tensor::f_ones([b], (Kind::Bool, device))?;
    let stop_ids = Tensor::f_from_slice(&o.stop_ids)?.f_to_device(device)?;
    for step in 0..o.max_new_tokens {
        let last = logits.f_select(1, -1)?;
        let chosen = next_tokens(&last, &sequences, o, generator.as_mut())?;
        let pad = Tensor::f_full_like(&chosen, o.pad_id)?;
        let tokens = chosen.f_where_self(&unfinished, &pad)?;
        sequences = Tensor::f_cat(&[&sequences, &tokens.f_unsqueeze(1)?], 1)?;
        if !on_token(step, &tokens)? {
            break;
        }
        if !o.stop_ids.is_empty() {
            unfinished = unfinished.f_logical_and(&Tensor::f_isin(&tokens, &stop_ids, false, false)?.f_logical_not()?)?;
        }
        if let Some(tok) = stop_strings {
            let rows: Vec<i64> = Vec::<i64>::try_from(&sequences.f_to_device(tch::Device::Cpu)?.f_reshape([-1])?)?;
            let flags = Vec::<bool>::try_from(&unfinished.f_to_device(tch::Device::Cpu)?)?;
            let width = sequences.size()[1] as usize;
            let mut still = Vec::with_capacity(b as usize);
            for (row, alive) in flags.iter().enumerate() {
                let text = tok.decode_ids(&rows[row * width + t as usize..(row + 1) * width], true)?;
                still.push(*alive && !o.stop_strings.iter().any(|s| text.contains(s.as_str())));
            }
            unfinished = Tensor::f_from_slice(&still)?.f_to_device(device)?;
        }
        if step + 1 == o.max_new_tokens || !bool::try_from(&unfinished.f_any()?)? {
            break;
        }
        if let Some(p) = &padding {
            padding = Some(Tensor::f_cat(&[p, &Tensor::f_ones([b, 1], (p.kind(), device))?], 1)?);
        }
        logits = model.causal_logits(&tokens.f_unsqueeze(1)?, padding.as_ref(), Some(&next_position), Some(&mut cache))?;
        next_position = next_position.f_add_scalar(1)?;
    }
    Ok(sequences)
}

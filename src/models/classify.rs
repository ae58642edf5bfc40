//! Sequence classification heads, as transformers': `LlamaForSequenceClassification` (and
//! Mistral's, Qwen2's, Qwen3's), a bias-free `score` layer (hidden → num_labels) on the hidden
//! state of each row's last token that is not padding (found from `pad_token_id` in the ids);
//! `BertForSequenceClassification`, dropout and a `classifier` layer on the pooler output of
//! the `bert` trunk. Both take the loss their `problem_type` says: mean squared error for one
//! label (regression), cross-entropy for integer labels, binary cross-entropy with logits for
//! float multi-labels.

use anyhow::{bail, Result};
use tch::{Device, Kind, Tensor};

use super::bert::{BertConfig, BertModel};
use super::config::HfConfig;
use super::input::Tokens;
use super::llama::{LlamaConfig, LlamaModel, Variant};
use crate::module_children;
use crate::nn::hooks::Ctx;
use crate::nn::linear::{Layout, Linear};
use crate::nn::module::Module;
use crate::nn::weights::Weights;

/// What the head's loss is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    Regression,
    SingleLabel,
    MultiLabel,
}

#[derive(Clone, Debug)]
pub struct ClassifierConfig {
    pub num_labels: i64,
    /// From config.json's `problem_type`; None: decided by the labels, as transformers does.
    pub problem: Option<Problem>,
    /// `classifier_dropout` (BERT's head; None: its `hidden_dropout_prob`).
    pub dropout: Option<f64>,
}

impl ClassifierConfig {
    pub fn parse(cfg: &HfConfig) -> Result<ClassifierConfig> {
        let from_labels = cfg.object("id2label").map(|m| m.len() as i64);
        let num_labels = match (cfg.opt_int("num_labels")?, from_labels) {
            (Some(n), _) => n,
            (None, Some(n)) => n,
            (None, None) => 2,
        };
        if !(1..=100_000).contains(&num_labels) {
            bail!("num_labels must be between 1 and 100000, got {num_labels}");
        }
        let problem = match cfg.str_or("problem_type", "")? {
            "" => None,
            "regression" => Some(Problem::Regression),
            "single_label_classification" => Some(Problem::SingleLabel),
            "multi_label_classification" => Some(Problem::MultiLabel),
            other => bail!("problem_type '{other}' is not one of regression, single_label_classification, multi_label_classification"),
        };
        let dropout = match cfg.float_or("classifier_dropout", -1.0)? {
            p if p < 0.0 => None,
            p if p < 1.0 => Some(p),
            p => bail!("classifier_dropout must be below 1, got {p}"),
        };
        Ok(ClassifierConfig { num_labels, problem, dropout })
    }

    /// The loss of `logits` (B, num_labels) for `labels`, as transformers' `problem_type`.
    pub fn loss(&self, logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
        let n = self.num_labels;
        let problem = self.problem.unwrap_or(if n == 1 {
            Problem::Regression
        } else if matches!(labels.kind(), Kind::Int64 | Kind::Int) {
            Problem::SingleLabel
        } else {
            Problem::MultiLabel
        });
        let logits = logits.f_to_kind(Kind::Float)?;
        Ok(match problem {
            Problem::Regression => {
                let (x, y) = if n == 1 { (logits.f_squeeze()?, labels.f_squeeze()?) } else { (logits, labels.shallow_clone()) };
                x.f_mse_loss(&y.f_to_kind(Kind::Float)?, tch::Reduction::Mean)?
            }
            Problem::SingleLabel => {
                if !matches!(labels.kind(), Kind::Int64 | Kind::Int) {
                    bail!("single-label classification takes integer labels (class numbers), got {}", crate::tensor::dtype_name(labels.kind()));
                }
                logits.f_view([-1, n])?.f_cross_entropy_loss(&labels.f_view([-1])?.f_to_kind(Kind::Int64)?, None::<Tensor>, tch::Reduction::Mean, -100, 0.0)?
            }
            Problem::MultiLabel => logits.f_binary_cross_entropy_with_logits(&labels.f_to_kind(Kind::Float)?, None::<Tensor>, None::<Tensor>, tch::Reduction::Mean)?,
        })
    }
}

pub struct LlamaForSequenceClassification {
    pub config: LlamaConfig,
    pub head: ClassifierConfig,
    pub model: LlamaModel,
    pub score: Linear,
}

impl LlamaForSequenceClassification {
    pub fn load(w: &mut Weights, config: LlamaConfig, head: ClassifierConfig, device: Device) -> Result<Self> {
        let model = LlamaModel::load(w, &config, device)?;
        let score = Linear::load(w, "score", config.hidden_size, head.num_labels, false, Layout::OutIn)?;
        Ok(LlamaForSequenceClassification { config, head, model, score })
    }

    pub fn ignorable(&self, name: &str) -> bool {
        name.ends_with("rotary_emb.inv_freq")
    }

    /// Logits (B, num_labels) at each row's last token that is not padding.
    pub fn logits(&self, ctx: &Ctx, tokens: &Tokens, padding: Option<&Tensor>, positions: Option<&Tensor>) -> Result<Tensor> {
        let (b, t) = tokens.batch_and_length()?;
        let hidden = self.model.forward(ctx, tokens, padding, positions, None)?;
        let all = self.score.forward(ctx, &hidden)?;
        let device = all.device();
        let last = match (tokens, self.config.pad_token_id) {
            (Tokens::Ids(ids), Some(pad)) => {
                let real = ids.f_ne(pad)?.f_to_kind(Kind::Int64)?;
                Tensor::f_arange(t, (Kind::Int64, device))?.f_mul(&real)?.f_argmax(-1, false)?
            }
            (_, None) if b != 1 => bail!("the model has no pad_token_id, so it cannot find the last token of each row of a batch (set pad_token_id in config.json)"),
            _ => Tensor::f_full([b], t - 1, (Kind::Int64, device))?,
        };
        Ok(all.f_index(&[Some(Tensor::f_arange(b, (Kind::Int64, device))?), Some(last)])?)
    }
}

impl Module for LlamaForSequenceClassification {
    fn class_name(&self) -> &'static str {
        match self.config.variant {
            Variant::Llama => "LlamaForSequenceClassification",
            Variant::Mistral => "MistralForSequenceClassification",
            Variant::Qwen2 => "Qwen2ForSequenceClassification",
            Variant::Qwen3 => "Qwen3ForSequenceClassification",
        }
    }
    module_children!("model" => model, "score" => score);
}

pub struct BertForSequenceClassification {
    pub head: ClassifierConfig,
    pub bert: BertModel,
    pub classifier: Linear,
    dropout: f64,
}

impl BertForSequenceClassification {
    pub fn load(w: &mut Weights, config: BertConfig, head: ClassifierConfig) -> Result<Self> {
        let (hidden, dropout) = (config.hidden_size, head.dropout.unwrap_or(config.hidden_dropout));
        let bert = BertModel::load(w, config, "bert.")?;
        if bert.pooler.is_none() {
            bail!("the checkpoint has no bert.pooler.dense weights, which the classifier reads");
        }
        let classifier = Linear::load(w, "classifier", hidden, head.num_labels, true, Layout::OutIn)?;
        Ok(BertForSequenceClassification { head, bert, classifier, dropout })
    }

    pub fn ignorable(&self, name: &str) -> bool {
        self.bert.ignorable(name)
    }

    /// Logits (B, num_labels) from the pooler output ([CLS] through `pooler.dense` and tanh).
    pub fn logits(&self, ctx: &Ctx, tokens: &Tokens, attention_mask: Option<&Tensor>, token_type_ids: Option<&Tensor>, position_ids: Option<&Tensor>) -> Result<Tensor> {
        let (_, pooled) = self.bert.forward(ctx, tokens, attention_mask, token_type_ids, position_ids)?;
        let pooled = pooled.ok_or_else(|| anyhow::anyhow!("BertForSequenceClassification needs the pooler"))?;
        self.classifier.forward(ctx, &pooled.f_dropout(self.dropout, ctx.training)?)
    }
}

impl Module for BertForSequenceClassification {
    fn class_name(&self) -> &'static str {
        "BertForSequenceClassification"
    }
    module_children!("bert" => bert, "classifier" => classifier);
}

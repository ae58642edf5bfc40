//! Evaluation metrics, equal to the reference implementations users compare with: BLEU and chrF
//! as sacrebleu computes them, ROUGE as rouge-score, classification metrics as scikit-learn's;
//! and token-weighted perplexity. Each takes predictions
//! first and references second (as sacrebleu), and has a streaming form that adds batches and
//! computes at the end over everything added.

pub mod bleu;
pub mod chrf;
pub mod classification;
pub mod perplexity;
pub mod porter;
pub mod rouge;
pub mod text;

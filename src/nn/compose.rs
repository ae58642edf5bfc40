//! Compositions of adapters at a residual point, as AdapterHub's composition blocks: `Stack`
//! (one after another), `Fuse` (AdapterFusion's attention over their outputs), `Parallel` (the
//! batch repeated, one copy per adapter), `BatchSplit` (rows of the batch through different
//! adapters, by sizes) and `Average` (a weighted mean of their outputs), nested as AdapterHub
//! allows. The model's active setup reaches the points through the forward context.
//!
//! The walk is AdapterHub's (`ComposableAdapterLayerBase.compose` and `BottleneckLayer`): a state
//! of the hidden states, the sublayer's residual, the adapter residual and the last
//! up-projection goes through the blocks; the first adapter of a block prepares it (`pre`), the
//! last one finishes the layer (`post`). Names not attached at a point are skipped there (a layer
//! left out, an adapter only after the feed-forward block).

use anyhow::{bail, Result};
use tch::Tensor;

use super::attach::{plain_residual, Norm, ResidualPoint};
use super::hooks::Ctx;

/// An adapter setup: one adapter, or a block of setups.
#[derive(Clone, Debug, PartialEq)]
pub enum Setup {
    Name(String),
    Stack(Vec<Setup>),
    Fuse(Vec<Setup>),
    Parallel(Vec<Setup>),
    /// Children and the number of rows each takes, in order.
    BatchSplit(Vec<Setup>, Vec<i64>),
    /// Children and their weights (normalised to sum to 1).
    Average(Vec<Setup>, Vec<f64>),
}

impl Setup {
    pub fn children(&self) -> &[Setup] {
        match self {
            Setup::Name(_) => &[],
            Setup::Stack(c) | Setup::Fuse(c) | Setup::Parallel(c) | Setup::BatchSplit(c, _) | Setup::Average(c, _) => c,
        }
    }

    /// The block's name as AdapterHub spells it (an adapter's own name for a leaf).
    pub fn kind(&self) -> &'static str {
        match self {
            Setup::Name(_) => "adapter",
            Setup::Stack(_) => "Stack",
            Setup::Fuse(_) => "Fuse",
            Setup::Parallel(_) => "Parallel",
            Setup::BatchSplit(..) => "BatchSplit",
            Setup::Average(..) => "Average",
        }
    }

    /// Every adapter named, first seen first.
    pub fn flatten(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        self.walk(&mut |s| {
            if let Setup::Name(n) = s {
                if !out.contains(&n.as_str()) {
                    out.push(n);
                }
            }
        });
        out
    }

    fn walk<'a>(&'a self, f: &mut impl FnMut(&'a Setup)) {
        f(self);
        for c in self.children() {
            c.walk(f);
        }
    }

    pub fn first(&self) -> &str {
        match self {
            Setup::Name(n) => n,
            other => other.children().first().map(|c| c.first()).unwrap_or(""),
        }
    }

    pub fn last(&self) -> &str {
        match self {
            Setup::Name(n) => n,
            other => other.children().last().map(|c| c.last()).unwrap_or(""),
        }
    }

    /// A `Fuse` block's name: its children's (the last adapter of a nested block) joined by
    /// commas, as AdapterHub names fusion layers.
    pub fn fuse_name(children: &[Setup]) -> String {
        children.iter().map(|c| c.last()).collect::<Vec<_>>().join(",")
    }

    /// Every `Fuse` block in the setup: its name and its children's names.
    pub fn fusions(&self) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        self.walk(&mut |s| {
            if let Setup::Fuse(c) = s {
                out.push((Setup::fuse_name(c), c.iter().map(|c| c.last().to_string()).collect()));
            }
        });
        out
    }

    /// The number of copies of the batch a top-level `Parallel` needs (in a `Stack` too).
    pub fn parallel_channels(&self) -> Option<i64> {
        match self {
            Setup::Parallel(c) => Some(c.len() as i64),
            Setup::Stack(c) => c.iter().find_map(|c| if let Setup::Parallel(p) = c { Some(p.len() as i64) } else { None }),
            _ => None,
        }
    }

    /// Checks the nesting as AdapterHub's `validate_composition` and `check_composition_valid`
    /// do, and that each block has children and the sizes or weights it needs.
    pub fn check(&self) -> Result<()> {
        self.check_at(0)
    }

    fn check_at(&self, level: usize) -> Result<()> {
        if level > 1 && !matches!(self, Setup::Name(_) | Setup::Stack(_)) {
            bail!("the adapter setup is too deep: {} cannot be at nesting level {level}", self.kind());
        }
        if let Setup::Name(n) = self {
            if n.is_empty() {
                bail!("an adapter name in the setup is empty");
            }
            return Ok(());
        }
        let children = self.children();
        if children.is_empty() {
            bail!("a {} block needs at least one adapter", self.kind());
        }
        match self {
            Setup::BatchSplit(c, sizes) if sizes.len() != c.len() => bail!("BatchSplit has {} children but {} batch sizes", c.len(), sizes.len()),
            Setup::BatchSplit(_, sizes) if sizes.iter().any(|s| *s < 0) => bail!("BatchSplit's batch sizes must not be negative (got {sizes:?})"),
            Setup::Average(c, w) if w.len() != c.len() => bail!("Average has {} children but {} weights", c.len(), w.len()),
            Setup::Average(_, w) if w.iter().any(|w| !w.is_finite()) => bail!("Average's weights must be finite numbers (got {w:?})"),
            _ => {}
        }
        for child in children {
            let allowed: &[&str] = match self {
                Setup::Stack(_) => &["adapter", "Fuse", "Parallel", "BatchSplit", "Average"],
                Setup::Fuse(_) => &["adapter", "Stack"],
                Setup::Parallel(_) => &["adapter", "Stack", "BatchSplit", "Average"],
                Setup::BatchSplit(..) => &["adapter", "Stack", "BatchSplit", "Average"],
                Setup::Average(..) => &["adapter", "Stack", "BatchSplit"],
                Setup::Name(_) => &[],
            };
            if !allowed.contains(&child.kind()) {
                bail!("cannot nest {} inside {}; {} may hold: {}", child.kind(), self.kind(), self.kind(), allowed.join(", "));
            }
            if matches!(self, Setup::Stack(_)) && level >= 1 && !matches!(child, Setup::Name(_)) {
                bail!("the adapter setup is too deep: a Stack inside another block may only hold adapters, not {}", child.kind());
            }
            child.check_at(level + 1)?;
        }
        Ok(())
    }
}

/// What flows through the blocks (AdapterHub's `BottleneckState`).
struct State {
    hidden: Tensor,
    /// The sublayer's residual.
    input: Tensor,
    adapter_residual: Tensor,
    /// The last adapter's up-projection (what a fusion attends over).
    up: Option<Tensor>,
    last: Option<String>,
}

impl State {
    fn rows(&self, start: i64, len: i64) -> Result<State> {
        let r = |t: &Tensor| t.f_narrow(0, start, len);
        Ok(State { hidden: r(&self.hidden)?, input: r(&self.input)?, adapter_residual: r(&self.adapter_residual)?, up: self.up.as_ref().map(r).transpose()?, last: self.last.clone() })
    }

    fn concat(states: Vec<State>) -> Result<State> {
        let cat = |f: &dyn Fn(&State) -> Tensor| Tensor::f_cat(&states.iter().map(f).collect::<Vec<_>>(), 0);
        let up = if states.iter().all(|s| s.up.is_some()) { Some(cat(&|s| s.up.as_ref().map(|u| u.shallow_clone()).unwrap_or_default())?) } else { None };
        Ok(State { hidden: cat(&|s| s.hidden.shallow_clone())?, input: cat(&|s| s.input.shallow_clone())?, adapter_residual: cat(&|s| s.adapter_residual.shallow_clone())?, up, last: states.last().and_then(|s| s.last.clone()) })
    }

    /// Another handle on the same tensors.
    fn share(&self) -> State {
        State { hidden: self.hidden.shallow_clone(), input: self.input.shallow_clone(), adapter_residual: self.adapter_residual.shallow_clone(), up: self.up.as_ref().map(|u| u.shallow_clone()), last: self.last.clone() }
    }
}

struct Walk<'a> {
    point: &'a ResidualPoint,
    ctx: &'a Ctx<'a>,
    norm: Option<&'a dyn Norm>,
}

/// The layer's hidden states after `setup` at `point`.
pub fn run(point: &ResidualPoint, ctx: &Ctx, setup: &Setup, output: Tensor, residual: &Tensor, norm: Option<&dyn Norm>) -> Result<Tensor> {
    if !setup.flatten().iter().any(|n| point.adapter(n).is_some()) {
        return plain_residual(ctx, output, residual, norm);
    }
    let walk = Walk { point, ctx, norm };
    let state = State { hidden: output.shallow_clone(), input: residual.shallow_clone(), adapter_residual: residual.shallow_clone(), up: None, last: None };
    let state = walk.block(setup, state, 0)?;
    match state.last.as_deref().and_then(|n| point.adapter(n)) {
        Some(last) => last.post(ctx, state.hidden, &output, &state.input, norm),
        None => plain_residual(ctx, output, residual, norm),
    }
}

impl Walk<'_> {
    fn block(&self, setup: &Setup, state: State, lvl: usize) -> Result<State> {
        match setup {
            Setup::Name(n) => self.single(n, state),
            Setup::Stack(children) => {
                let mut state = state;
                for child in children {
                    state = match child {
                        Setup::Name(n) if self.point.adapter(n).is_some() => {
                            let prepared = self.pre(n, state)?;
                            self.single(n, prepared)?
                        }
                        Setup::Name(_) => state,
                        block => self.block(block, state, lvl + 1)?,
                    };
                }
                Ok(state)
            }
            Setup::Fuse(children) => self.fuse(children, state, lvl),
            Setup::BatchSplit(children, sizes) => {
                let batch = state.hidden.size()[0];
                if sizes.iter().sum::<i64>() != batch {
                    bail!("BatchSplit: the batch has {batch} rows but the sizes {sizes:?} add up to {}", sizes.iter().sum::<i64>());
                }
                let state = self.pre(setup.first(), state)?;
                let mut start = 0;
                let mut parts = Vec::new();
                for (child, size) in children.iter().zip(sizes) {
                    parts.push(self.child(child, state.rows(start, *size)?, lvl)?);
                    start += size;
                }
                State::concat(parts)
            }
            Setup::Parallel(children) => {
                let (batch, n) = (state.hidden.size()[0], children.len() as i64);
                if batch % n != 0 {
                    bail!("Parallel: the batch of {batch} rows is not {n} copies of the input");
                }
                let state = self.pre(setup.first(), state)?;
                let rows = batch / n;
                let parts = children.iter().enumerate().map(|(i, child)| self.child(child, state.rows(i as i64 * rows, rows)?, lvl)).collect::<Result<Vec<_>>>()?;
                State::concat(parts)
            }
            Setup::Average(children, weights) => {
                let state = self.pre(setup.first(), state)?;
                let parts = children.iter().map(|child| self.child(child, state.share(), lvl)).collect::<Result<Vec<_>>>()?;
                let hidden = parts.iter().map(|p| p.hidden.shallow_clone()).collect::<Vec<_>>();
                let w = Tensor::f_from_slice(weights)?.f_to_kind(state.hidden.kind())?.f_to_device(state.hidden.device())?.f_view([-1, 1, 1, 1])?;
                let mean = Tensor::f_stack(&hidden, 0)?.f_mul(&w)?.f_mean_dim(0, false, None)?;
                Ok(State { hidden: mean, input: state.input, adapter_residual: state.adapter_residual, up: state.up, last: parts.last().and_then(|p| p.last.clone()) })
            }
        }
    }

    /// A child of a block that is not a Stack: an adapter runs without its own `pre`.
    fn child(&self, child: &Setup, state: State, lvl: usize) -> Result<State> {
        match child {
            Setup::Name(n) if self.point.adapter(n).is_some() => self.single(n, state),
            Setup::Name(_) => Ok(state),
            block => self.block(block, state, lvl + 1),
        }
    }

    /// The first adapter of a block prepares the state (residual, layer norm).
    fn pre(&self, first: &str, state: State) -> Result<State> {
        let Some(adapter) = self.point.adapter(first) else { return Ok(state) };
        let (hidden, _, adapter_residual) = adapter.pre(self.ctx, &state.hidden, &state.input, self.norm, None)?;
        Ok(State { hidden, adapter_residual, ..state })
    }

    fn single(&self, name: &str, state: State) -> Result<State> {
        let Some(adapter) = self.point.adapter(name) else { return Ok(state) };
        let (hidden, up) = adapter.forward(self.ctx, &state.hidden, &state.adapter_residual)?;
        Ok(State { hidden, up: Some(up), last: Some(name.to_string()), ..state })
    }

    fn fuse(&self, children: &[Setup], state: State, lvl: usize) -> Result<State> {
        let name = Setup::fuse_name(children);
        let last = children.last().map(|c| c.last()).unwrap_or_default();
        let Some(last_adapter) = self.point.adapter(last) else { return Ok(state) };
        let Some(fusion) = self.point.fusion_layer(&name) else { bail!("no fusion layer over '{name}' here; add it with mt.peft.fusion(model, {{...}})") };
        let (hidden, query, adapter_residual) = last_adapter.pre(self.ctx, &state.hidden, &state.input, self.norm, Some(fusion.query_before_ln()))?;
        let state = State { hidden, adapter_residual, ..state };
        let mut ups = Vec::new();
        for child in children {
            let s = self.child(child, state.share(), lvl)?;
            if let Some(up) = s.up.filter(|_| s.last.is_some()) {
                ups.push(up);
            }
        }
        if ups.is_empty() {
            return Ok(State { last: Some(last.to_string()), ..state });
        }
        let query = query.unwrap_or_else(|| state.hidden.shallow_clone());
        let ups = Tensor::f_stack(&ups, 2)?;
        let hidden = fusion.forward(self.ctx, &query, &ups, &state.adapter_residual)?;
        Ok(State { hidden, last: Some(last.to_string()), ..state })
    }
}

#[cfg(test)]
mod tests {
    use super::Setup;

    fn n(s: &str) -> Setup {
        Setup::Name(s.into())
    }

    #[test]
    fn nesting_follows_adapterhub() {
        assert!(Setup::Stack(vec![n("lang"), Setup::Fuse(vec![n("a"), n("b")])]).check().is_ok());
        assert!(Setup::Fuse(vec![n("a"), Setup::Parallel(vec![n("b")])]).check().unwrap_err().to_string().contains("cannot nest Parallel inside Fuse"));
        assert!(Setup::Stack(vec![Setup::Stack(vec![n("a")])]).check().unwrap_err().to_string().contains("cannot nest Stack inside Stack"));
        assert!(Setup::BatchSplit(vec![n("a"), n("b")], vec![1]).check().is_err());
        assert!(Setup::Parallel(vec![]).check().is_err());
        assert_eq!(Setup::Fuse(vec![n("a"), Setup::Stack(vec![n("x"), n("y")])]).fusions()[0].0, "a,y");
        assert_eq!(Setup::Stack(vec![n("a"), Setup::Fuse(vec![n("b"), n("a")])]).flatten(), vec!["a", "b"]);
    }
}

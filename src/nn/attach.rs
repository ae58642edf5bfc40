//! Attachment points: where adapters hang on a model (DESIGN.md, "where adapters attach").
//! A point holds named adapters, each active or not, in the order they were attached; while
//! none is attached it is no child of its module and its forward is the plain computation.
//!
//! - [`LinearPoint`], on every `Linear`: an adapter maps (x, base output) to a new output
//!   (LoRA and its variants, IA3, methods written in Lua).
//! - [`ResidualPoint`], after attention and after the feed-forward block of each layer: it sees
//!   the sublayer's output, the residual and the layer's norm, and does the add and norm
//!   itself, so that AdapterHub's placements (`original_ln_before/after`, `residual_before_ln`,
//!   parallel adapters), fusion layers and compositions (nn::compose) are built on it.
//! - [`InvertiblePoint`], after the embeddings and before the output head (invertible adapters).
//! - [`PromptPoint`] (`prompt_encoder`), at a causal LM's root: virtual tokens before the input
//!   (prompt tuning's embeddings, prefix tuning's keys and values through the KV cache).
//! - [`PrefixPoolPoint`] (`prefix_tuning`), at the base model: AdapterHub's prefix pools, which
//!   make every layer's prefix keys and values once per forward ([`PrefixStates`], carried by
//!   the forward context), and [`PrefixPoint`] (`prefix_gates`), in each attention: the
//!   layer's share, gated or not, put before its keys and values.

use anyhow::{bail, Result};
use tch::Tensor;

use super::hooks::Ctx;
use super::linear::Linear;
use super::module::Module;

/// Applied on a `Linear`: the new output for input `x`, given the base layer and its output.
pub trait LinearAdapter: Module {
    fn forward(&self, ctx: &Ctx, base: &Linear, x: &Tensor, base_out: Tensor) -> Result<Tensor>;

    /// The input the base layer sees instead of `x` (IA3 on a feed-forward layer scales it).
    fn input(&self, _x: &Tensor) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// The base weight (out, in) and bias with this adapter folded in (`merge_adapter`).
    fn merge(&mut self, _weight: &Tensor, _bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        bail!("a {} adapter cannot be merged into its layer", self.class_name())
    }

    /// The inverse of `merge`.
    fn unmerge(&mut self, _weight: &Tensor, _bias: Option<&Tensor>) -> Result<(Tensor, Option<Tensor>)> {
        bail!("a {} adapter cannot be unmerged from its layer", self.class_name())
    }
}

/// A layer norm as a residual point sees it.
pub trait Norm {
    fn forward(&self, ctx: &Ctx, x: &Tensor) -> Result<Tensor>;
}

/// Applied at a residual point, in AdapterHub's three steps (its `pre_forward`, `forward` and
/// `post_forward`), so that a composition (nn::compose) can run several adapters between them.
/// `output` is the sublayer's output, `residual` what it is added to, `norm` the layer's norm
/// after the add (post-norm layers, as BERT's) or None (pre-norm).
pub trait ResidualAdapter: Module {
    /// (what the adapter reads, the fusion query, the adapter's own residual); `query_before_ln`
    /// is given when a fusion asks for its query.
    fn pre(&self, ctx: &Ctx, output: &Tensor, residual: &Tensor, norm: Option<&dyn Norm>, query_before_ln: Option<bool>) -> Result<(Tensor, Option<Tensor>, Tensor)>;

    /// (the adapter's output, its up-projection before the residual: what a fusion attends over).
    fn forward(&self, ctx: &Ctx, x: &Tensor, adapter_residual: &Tensor) -> Result<(Tensor, Tensor)>;

    /// The layer's hidden states from the (composed) adapters' output `h`; `output` is the
    /// sublayer's output as it came in.
    fn post(&self, ctx: &Ctx, h: Tensor, output: &Tensor, residual: &Tensor, norm: Option<&dyn Norm>) -> Result<Tensor>;
}

/// Attention over the outputs of several adapters at a residual point (AdapterFusion).
pub trait FusionAdapter: Module {
    /// Whether the query is taken before the layer's norm.
    fn query_before_ln(&self) -> bool;

    /// The fused output from the query (batch, seq, hidden), the adapters' up-projections
    /// (batch, seq, adapters, hidden) and the adapter residual.
    fn forward(&self, ctx: &Ctx, query: &Tensor, ups: &Tensor, residual: &Tensor) -> Result<Tensor>;
}

/// Applied after the embeddings (`forward`) and before the output head (`inverse`).
pub trait InvertibleAdapter: Module {
    fn forward(&self, ctx: &Ctx, h: &Tensor) -> Result<Tensor>;
    fn inverse(&self, ctx: &Ctx, h: &Tensor) -> Result<Tensor>;
}

/// An AdapterHub prefix pool: every layer's prefix keys and values for a batch.
pub trait PrefixSource: Module {
    /// Per layer with a prefix: (keys, values), each (batch, kv_heads, length, head_dim).
    fn states(&self, ctx: &Ctx, batch: i64) -> Result<Vec<(Tensor, Tensor)>>;
}

/// One attention layer's share of a prefix pool.
pub trait KvPrefix: Module {
    /// Which of the pool's layers this attention takes.
    fn pool_index(&self) -> usize;
    /// The keys and values after this layer's gate (if any) on the attention input `x`.
    fn gated(&self, x: &Tensor, keys: Tensor, values: Tensor) -> Result<(Tensor, Tensor)>;
}

/// The prefix keys and values of one forward, by adapter.
pub type PrefixStates = std::collections::BTreeMap<String, Vec<(Tensor, Tensor)>>;

/// Virtual tokens before the input, at a causal LM's root (`prompt_encoder`): prompt tuning's
/// embeddings prepended to the input, or prefix tuning's keys and values per layer.
pub trait PromptAdapter: Module {
    fn num_virtual_tokens(&self) -> i64;

    /// Embeddings (batch, n, hidden) to put before the input's (prompt tuning).
    fn embeddings(&self, _batch: i64) -> Result<Option<Tensor>> {
        Ok(None)
    }

    /// Keys and values (batch, kv_heads, n, head_dim) per layer (prefix tuning).
    fn prefix(&self, _batch: i64) -> Result<Option<Vec<(Tensor, Tensor)>>> {
        Ok(None)
    }
}

/// One attached adapter.
pub struct Slot<A: ?Sized> {
    pub name: String,
    pub adapter: Box<A>,
    pub active: bool,
    /// Folded into the base weights (`merge_adapter`): the forward skips it.
    pub merged: bool,
}

/// The adapters of a point, as a module whose children are the adapters by name.
pub struct AdapterDict<A: ?Sized> {
    pub slots: Vec<Slot<A>>,
}

/// A point: no dict while nothing is attached.
pub struct Point<A: ?Sized> {
    pub dict: Option<AdapterDict<A>>,
}

impl<A: ?Sized> Default for Point<A> {
    fn default() -> Self {
        Point { dict: None }
    }
}

impl<A: ?Sized> Point<A> {
    pub fn is_empty(&self) -> bool {
        self.dict.is_none()
    }

    /// Attaches `adapter` as `name`, active.
    pub fn attach(&mut self, name: &str, adapter: Box<A>) -> Result<()> {
        let dict = self.dict.get_or_insert_with(|| AdapterDict { slots: Vec::new() });
        if dict.slots.iter().any(|s| s.name == name) {
            bail!("an adapter named '{name}' is already attached here");
        }
        dict.slots.push(Slot { name: name.to_string(), adapter, active: true, merged: false });
        Ok(())
    }

    /// Removes the adapter `name` and returns it.
    pub fn detach(&mut self, name: &str) -> Result<Box<A>> {
        let Some(dict) = &mut self.dict else { bail!("no adapter named '{name}' is attached here") };
        let Some(i) = dict.slots.iter().position(|s| s.name == name) else { bail!("no adapter named '{name}' is attached here") };
        let slot = dict.slots.remove(i);
        if dict.slots.is_empty() {
            self.dict = None;
        }
        Ok(slot.adapter)
    }

    /// Makes exactly the adapters in `names` active (the others stay attached, inactive).
    pub fn set_active(&mut self, names: &[&str]) -> Result<()> {
        let slots = self.dict.as_mut().map(|d| d.slots.as_mut_slice()).unwrap_or_default();
        if let Some(unknown) = names.iter().find(|n| !slots.iter().any(|s| s.name == **n)) {
            bail!("no adapter named '{unknown}' is attached here");
        }
        for s in slots {
            s.active = names.contains(&s.name.as_str());
        }
        Ok(())
    }

    /// The active adapters not merged into the base, in attachment order.
    pub fn active(&self) -> impl Iterator<Item = &A> {
        self.dict.iter().flat_map(|d| d.slots.iter()).filter(|s| s.active && !s.merged).map(|s| &*s.adapter)
    }

    /// Every attached adapter.
    pub fn slots_mut(&mut self) -> &mut [Slot<A>] {
        self.dict.as_mut().map(|d| d.slots.as_mut_slice()).unwrap_or_default()
    }

    pub fn slots(&self) -> &[Slot<A>] {
        self.dict.as_ref().map(|d| d.slots.as_slice()).unwrap_or_default()
    }

    /// Whether the forward has nothing to apply here (none attached, or adapters switched off).
    pub fn is_idle(&self, ctx: &Ctx) -> bool {
        self.dict.is_none() || ctx.adapters_off
    }
}

/// Implements `Module` for the dict of one adapter trait (its children are the adapters).
macro_rules! adapter_dict_module {
    ($adapter:ident) => {
        impl Module for AdapterDict<dyn $adapter> {
            fn class_name(&self) -> &'static str {
                "AdapterDict"
            }
            fn children(&self) -> Vec<(String, &dyn Module)> {
                self.slots.iter().map(|s| (s.name.clone(), &*s.adapter as &dyn Module)).collect()
            }
            fn children_mut(&mut self) -> Vec<(String, &mut dyn Module)> {
                self.slots.iter_mut().map(|s| (s.name.clone(), &mut *s.adapter as &mut dyn Module)).collect()
            }
            fn as_any(&self) -> &dyn std::any::Any {
                self
            }
            fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
                self
            }
        }
    };
}

adapter_dict_module!(LinearAdapter);
adapter_dict_module!(ResidualAdapter);
adapter_dict_module!(InvertibleAdapter);
adapter_dict_module!(FusionAdapter);
adapter_dict_module!(PromptAdapter);
adapter_dict_module!(PrefixSource);
adapter_dict_module!(KvPrefix);

pub type LinearPoint = Point<dyn LinearAdapter>;
pub type InvertiblePoint = Point<dyn InvertibleAdapter>;
pub type FusionPoint = Point<dyn FusionAdapter>;
pub type PromptPoint = Point<dyn PromptAdapter>;
pub type PrefixPoolPoint = Point<dyn PrefixSource>;
pub type PrefixPoint = Point<dyn KvPrefix>;

impl PrefixPoolPoint {
    /// The active pools' keys and values for a batch of `batch` rows, or None when none applies.
    pub fn states(&self, ctx: &Ctx, batch: i64) -> Result<Option<PrefixStates>> {
        if self.is_idle(ctx) {
            return Ok(None);
        }
        let mut out = PrefixStates::new();
        for slot in self.slots().iter().filter(|s| s.active) {
            out.insert(slot.name.clone(), slot.adapter.states(ctx, batch)?);
        }
        Ok(if out.is_empty() { None } else { Some(out) })
    }
}

impl PrefixPoint {
    /// Keys and values (B, kv_heads, S, hd) with the active adapters' prefixes before them (in
    /// the order of the active setup, else of attachment; each later one before the earlier, as
    /// AdapterHub's Stack), and how many positions they added. `x` is the attention's input.
    pub fn apply(&self, ctx: &Ctx, x: &Tensor, mut keys: Tensor, mut values: Tensor) -> Result<(Tensor, Tensor, i64)> {
        let Some(states) = ctx.prefixes.filter(|_| !self.is_idle(ctx)) else { return Ok((keys, values, 0)) };
        let order: Vec<&str> = match ctx.setup {
            Some(setup) => setup.flatten(),
            None => self.slots().iter().map(|s| s.name.as_str()).collect(),
        };
        let mut added = 0;
        for name in order {
            let (Some(slot), Some(layers)) = (self.slots().iter().find(|s| s.name == name && s.active), states.get(name)) else { continue };
            let Some((k, v)) = layers.get(slot.adapter.pool_index()) else { bail!("prefix '{name}' has no keys for this layer") };
            let (k, v) = slot.adapter.gated(x, k.f_to_kind(keys.kind())?, v.f_to_kind(values.kind())?)?;
            added += k.size()[2];
            keys = Tensor::f_cat(&[k, keys], 2)?;
            values = Tensor::f_cat(&[v, values], 2)?;
        }
        Ok((keys, values, added))
    }
}

impl LinearPoint {
    /// The input the base layer sees: `x`, or what the active adapters make of it.
    pub fn input(&self, x: &Tensor) -> Result<Option<Tensor>> {
        let mut changed: Option<Tensor> = None;
        for adapter in self.active() {
            if let Some(y) = adapter.input(changed.as_ref().unwrap_or(x))? {
                changed = Some(y);
            }
        }
        Ok(changed)
    }

    /// The output after every active adapter, in order (each sees the previous output).
    pub fn forward(&self, ctx: &Ctx, base: &Linear, x: &Tensor, base_out: Tensor) -> Result<Tensor> {
        let mut out = base_out;
        for adapter in self.active() {
            out = adapter.forward(ctx, base, x, out)?;
        }
        Ok(out)
    }
}

/// A residual point: its bottleneck adapters, and the fusion layers over them (named by the
/// adapters they fuse, "a,b,c", as AdapterHub's `adapter_fusion_layer`).
#[derive(Default)]
pub struct ResidualPoint {
    pub adapters: Point<dyn ResidualAdapter>,
    pub fusion: FusionPoint,
}

impl ResidualPoint {
    /// `norm(output + residual)` (or without norm), or what the active setup makes of it: the
    /// model's composition (`ctx.setup`), else the one active adapter here.
    pub fn forward(&self, ctx: &Ctx, output: Tensor, residual: &Tensor, norm: Option<&dyn Norm>) -> Result<Tensor> {
        if self.adapters.is_idle(ctx) {
            return plain_residual(ctx, output, residual, norm);
        }
        let single;
        let setup = match ctx.setup {
            Some(setup) => setup,
            None => {
                let mut active = self.adapters.slots().iter().filter(|s| s.active && !s.merged);
                let Some(one) = active.next() else { return plain_residual(ctx, output, residual, norm) };
                if active.next().is_some() {
                    bail!("several adapters are active at one residual point; compose them (model:set_active with mt.peft.stack, fuse, ...)");
                }
                let name = one.name.clone();
                single = super::compose::Setup::Stack(vec![super::compose::Setup::Name(name)]);
                &single
            }
        };
        super::compose::run(self, ctx, setup, output, residual, norm)
    }

    /// The attached adapter `name`, if here.
    pub fn adapter(&self, name: &str) -> Option<&dyn ResidualAdapter> {
        self.adapters.slots().iter().find(|s| s.name == name && !s.merged).map(|s| &*s.adapter)
    }

    /// The fusion layer over `name` ("a,b,c"), if here.
    pub fn fusion_layer(&self, name: &str) -> Option<&dyn FusionAdapter> {
        self.fusion.slots().iter().find(|s| s.name == name).map(|s| &*s.adapter)
    }
}

/// The residual add and the layer's norm, with no adapter.
pub fn plain_residual(ctx: &Ctx, output: Tensor, residual: &Tensor, norm: Option<&dyn Norm>) -> Result<Tensor> {
    let h = output.f_add(residual)?;
    match norm {
        Some(n) => n.forward(ctx, &h),
        None => Ok(h),
    }
}

impl PromptPoint {
    /// The active prompt adapter, if any (at most one is active: it is checked when activating).
    pub fn active_one(&self, ctx: &Ctx) -> Option<&dyn PromptAdapter> {
        if self.is_idle(ctx) {
            return None;
        }
        self.active().next()
    }
}

impl InvertiblePoint {
    /// The adapters that apply: under a composition, that of its first adapter (as AdapterHub);
    /// otherwise every active one, in attachment order.
    fn applying(&self, ctx: &Ctx) -> Vec<&dyn InvertibleAdapter> {
        if self.is_idle(ctx) {
            return Vec::new();
        }
        match ctx.setup {
            Some(setup) => self.slots().iter().filter(|s| s.name == setup.first()).map(|s| &*s.adapter).collect(),
            None => self.active().collect(),
        }
    }

    pub fn after_embeddings(&self, ctx: &Ctx, h: Tensor) -> Result<Tensor> {
        let mut h = h;
        for adapter in self.applying(ctx) {
            h = adapter.forward(ctx, &h)?;
        }
        Ok(h)
    }

    /// The inverses, last applied first.
    pub fn before_head(&self, ctx: &Ctx, h: Tensor) -> Result<Tensor> {
        let mut h = h;
        for adapter in self.applying(ctx).into_iter().rev() {
            h = adapter.inverse(ctx, &h)?;
        }
        Ok(h)
    }
}

//! The module tree, as PyTorch's `torch.nn.Module` (STYLE.md 13): every module names its own
//! parameters and its children, so that names (`model.layers.3.self_attn.q_proj.weight`),
//! parameter lists, freezing, moving, state dicts and hooks are all derived from the tree on
//! every call, never kept in a second list. Each parameter has an owner: the base model, or the
//! adapter that added it. A module's typed `forward` lives on its own type; modules whose
//! forward is a function of one tensor also offer it through `forward_tensor`, so that any such
//! submodule can be called by name.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Context, Result};
use tch::{Device, Kind, Tensor};

use super::hooks::Ctx;
use super::names::NameMatcher;
use crate::tensor::dtype::is_floating;

/// Who a parameter belongs to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Owner {
    /// The pretrained model.
    Base,
    /// The adapter of that name.
    Adapter(String),
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Owner::Base => write!(f, "base"),
            Owner::Adapter(name) => write!(f, "{name}"),
        }
    }
}

/// A parameter by its name in the tree, with its owner. The tensor is a shallow copy: it shares
/// the parameter's data, gradient and `requires_grad`.
pub struct NamedParam {
    pub name: String,
    pub tensor: Tensor,
    pub owner: Owner,
    /// The values it stands for: its element count, or for a weight kept quantised the
    /// matrix's (its blocks' bytes are fewer).
    pub elements: i64,
}

pub trait Module {
    /// The class shown when the tree is printed (`LlamaAttention`, `Linear`).
    fn class_name(&self) -> &'static str;

    /// The parameters this module holds itself, by local name (not its children's).
    fn own_parameters(&self) -> Vec<(&str, &Tensor)> {
        Vec::new()
    }

    /// Tensors this module holds besides its parameters that must live on its device (a 4-bit
    /// weight's constants): `to` moves them with the parameters and never converts their dtype.
    fn own_buffers(&self) -> Vec<&Tensor> {
        Vec::new()
    }

    /// The values own parameter `name` stands for (its element count, unless it is stored
    /// packed, as a quantised weight is).
    fn parameter_elements(&self, _name: &str, t: &Tensor) -> i64 {
        t.numel() as i64
    }

    /// Direct children, by local name, in order.
    fn children(&self) -> Vec<(String, &dyn Module)> {
        Vec::new()
    }

    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module)> {
        Vec::new()
    }

    /// Who owns this module's own parameters.
    fn owner(&self) -> Owner {
        Owner::Base
    }

    /// Settings shown beside the class when printed (`in_features=32, out_features=64`).
    fn extra_repr(&self) -> String {
        String::new()
    }

    /// For modules whose forward is a function of one tensor: that forward.
    fn forward_tensor(&self, _ctx: &Ctx, _x: &Tensor) -> Option<Result<Tensor>> {
        None
    }

    /// The module as `Any`, so that code attaching adapters can find the type it needs
    /// (a `Linear`) under a name.
    fn as_any(&self) -> &dyn std::any::Any;
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
}

/// A field that may hold a child: a module, or an optional one.
pub trait ChildSlot {
    fn child(&self) -> Option<&dyn Module>;
    fn child_mut(&mut self) -> Option<&mut dyn Module>;
}

impl<T: Module> ChildSlot for T {
    fn child(&self) -> Option<&dyn Module> {
        Some(self)
    }
    fn child_mut(&mut self) -> Option<&mut dyn Module> {
        Some(self)
    }
}

impl<T: Module> ChildSlot for Option<T> {
    fn child(&self) -> Option<&dyn Module> {
        self.as_ref().map(|m| m as &dyn Module)
    }
    fn child_mut(&mut self) -> Option<&mut dyn Module> {
        self.as_mut().map(|m| m as &mut dyn Module)
    }
}

/// Implements `children`, `children_mut`, `as_any` and `as_any_mut` from `"name" => field`
/// pairs (a field is a module, an optional module, or an attachment point's `dict`, which is
/// a child only while adapters are attached).
#[macro_export]
macro_rules! module_children {
    ($($name:literal => $($field:ident).+),* $(,)?) => {
        fn children(&self) -> Vec<(String, &dyn $crate::nn::module::Module)> {
            #[allow(unused_mut)]
            let mut out: Vec<(String, &dyn $crate::nn::module::Module)> = Vec::new();
            $(if let Some(m) = $crate::nn::module::ChildSlot::child(&self.$($field).+) { out.push((String::from($name), m)); })*
            out
        }
        fn children_mut(&mut self) -> Vec<(String, &mut dyn $crate::nn::module::Module)> {
            #[allow(unused_mut)]
            let mut out: Vec<(String, &mut dyn $crate::nn::module::Module)> = Vec::new();
            $(if let Some(m) = $crate::nn::module::ChildSlot::child_mut(&mut self.$($field).+) { out.push((String::from($name), m)); })*
            out
        }
        fn as_any(&self) -> &dyn std::any::Any {
            self
        }
        fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
            self
        }
    };
}

/// A list of modules named by position ("0", "1", …), as `torch.nn.ModuleList`.
pub struct ModuleList<T> {
    pub items: Vec<T>,
}

impl<T: Module + 'static> Module for ModuleList<T> {
    fn class_name(&self) -> &'static str {
        "ModuleList"
    }
    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.items.iter().enumerate().map(|(i, m)| (i.to_string(), m as &dyn Module)).collect()
    }
    fn children_mut(&mut self) -> Vec<(String, &mut dyn Module)> {
        self.items.iter_mut().enumerate().map(|(i, m)| (i.to_string(), m as &mut dyn Module)).collect()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

/// `(name, module)` for `root` (named "") and every descendant, depth first, in tree order.
pub fn named_modules(root: &dyn Module) -> Vec<(String, &dyn Module)> {
    fn walk<'a>(m: &'a dyn Module, prefix: String, out: &mut Vec<(String, &'a dyn Module)>) {
        let children = m.children();
        out.push((prefix.clone(), m));
        for (name, child) in children {
            walk(child, join(&prefix, &name), out);
        }
    }
    let mut out = Vec::new();
    walk(root, String::new(), &mut out);
    out
}

/// Every parameter under `root` by its dotted name, in tree order, each once.
pub fn named_parameters(root: &dyn Module) -> Vec<NamedParam> {
    let mut out = Vec::new();
    for (prefix, m) in named_modules(root) {
        for (name, t) in m.own_parameters() {
            out.push(NamedParam { name: join(&prefix, name), tensor: t.shallow_clone(), owner: m.owner(), elements: m.parameter_elements(name, t) });
        }
    }
    out
}

/// The module at a dotted path under `root` ("" is `root` itself).
pub fn get_submodule<'a>(root: &'a dyn Module, path: &str) -> Result<&'a dyn Module> {
    let mut m = root;
    let mut walked = String::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let children = m.children();
        let names: Vec<String> = children.iter().map(|(n, _)| n.clone()).collect();
        m = children.into_iter().find(|(n, _)| n == part).map(|(_, c)| c).ok_or_else(|| {
            let here = if walked.is_empty() { "the model".to_string() } else { format!("'{walked}'") };
            anyhow!("{here} has no submodule '{part}' (it has: {})", if names.is_empty() { "none".to_string() } else { names.join(", ") })
        })?;
        walked = join(&walked, part);
    }
    Ok(m)
}

/// What a name is on a module: one of its own parameters, or one of its children.
pub enum Member {
    Parameter(Tensor),
    Child,
}

/// `m.key`: the parameter or child of `m` called `key`, if there is one.
pub fn member(m: &dyn Module, key: &str) -> Option<Member> {
    if let Some((_, t)) = m.own_parameters().into_iter().find(|(n, _)| *n == key) {
        return Some(Member::Parameter(t.shallow_clone()));
    }
    m.children().into_iter().any(|(n, _)| n == key).then_some(Member::Child)
}

/// The names (relative to `root`, `""` for itself) of the modules `matcher` picks, in tree
/// order; none is an error.
pub fn matching_modules(root: &dyn Module, matcher: &NameMatcher) -> Result<Vec<String>> {
    let mut picked = Vec::new();
    for (name, _) in named_modules(root) {
        if matcher.matches(&name)? {
            picked.push(name);
        }
    }
    if picked.is_empty() {
        bail!("{} matched no module", matcher.describe());
    }
    Ok(picked)
}

/// The module at a dotted path, mutably (to attach adapters).
pub fn get_submodule_mut<'a>(root: &'a mut dyn Module, path: &str) -> Result<&'a mut dyn Module> {
    let mut m = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        m = m.children_mut().into_iter().find(|(n, _)| n == part).map(|(_, c)| c).ok_or_else(|| anyhow!("no submodule '{part}' in '{path}'"))?;
    }
    Ok(m)
}

/// Sets `requires_grad` of the floating-point parameters `matcher` picks (by their name or a
/// module holding them); returns how many it set. A matcher that picks none is an error (a mistyped pattern should not pass
/// silently).
pub fn set_trainable(root: &dyn Module, matcher: &NameMatcher, trainable: bool) -> Result<usize> {
    let mut count = 0;
    for p in named_parameters(root) {
        if is_floating(p.tensor.kind()) && matcher.matches_parameter(&p.name)? {
            let mut t = p.tensor;
            let _ = t.f_requires_grad_(trainable)?;
            count += 1;
        }
    }
    if count == 0 && !matches!(matcher, NameMatcher::All) {
        bail!("{} matched no parameter", matcher.describe());
    }
    Ok(count)
}

/// Weights convert to floating-point dtypes only (an integer model could not train or run).
pub fn check_weight_dtype(kind: Option<Kind>) -> Result<()> {
    match kind {
        Some(k) if !is_floating(k) => bail!("the weights' dtype must be floating-point (float32, bfloat16, float16, float64), got {}", crate::tensor::dtype_name(k)),
        _ => Ok(()),
    }
}

/// Converts or moves every parameter in place (each keeps its identity, so optimizers made
/// before still hold it); `kind` applies to floating-point parameters only. The modules' own
/// buffers move with them, in their own dtype.
pub fn to(root: &dyn Module, kind: Option<Kind>, device: Option<Device>) -> Result<()> {
    check_weight_dtype(kind)?;
    let _guard = tch::no_grad_guard();
    for p in named_parameters(root) {
        let k = match kind {
            Some(k) if is_floating(p.tensor.kind()) => k,
            _ => p.tensor.kind(),
        };
        let d = device.unwrap_or(p.tensor.device());
        if (k, d) == (p.tensor.kind(), p.tensor.device()) {
            continue;
        }
        let moved = p.tensor.f_to_dtype_layout((k, d), false, false).with_context(|| format!("moving '{}'", p.name))?;
        let mut target = p.tensor;
        target.f_set_data(&moved)?;
    }
    if let Some(device) = device {
        for (name, m) in named_modules(root) {
            for buffer in m.own_buffers() {
                if buffer.device() != device {
                    let moved = buffer.f_to_device(device).with_context(|| format!("moving a buffer of '{name}'"))?;
                    buffer.shallow_clone().f_set_data(&moved)?;
                }
            }
        }
    }
    Ok(())
}

/// The parameters under `root` by name (tied weights appear once, under the name that owns
/// them). Tensors share the parameters' data.
pub fn state_dict(root: &dyn Module) -> BTreeMap<String, Tensor> {
    named_parameters(root).into_iter().map(|p| (p.name, p.tensor)).collect()
}

/// What `load_state_dict` could not match.
#[derive(Debug, Default, PartialEq)]
pub struct Mismatch {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
}

/// Copies tensors into the parameters of the same name (converted to each parameter's dtype
/// and device), without tracking gradients. With `strict`, missing or unexpected names are an
/// error naming them; shapes must always match.
pub fn load_state_dict(root: &dyn Module, tensors: &BTreeMap<String, Tensor>, strict: bool) -> Result<Mismatch> {
    let own = state_dict(root);
    let missing: Vec<String> = own.keys().filter(|k| !tensors.contains_key(*k)).cloned().collect();
    let unexpected: Vec<String> = tensors.keys().filter(|k| !own.contains_key(*k)).cloned().collect();
    if strict && (!missing.is_empty() || !unexpected.is_empty()) {
        bail!("missing keys {{{}}}, unexpected keys {{{}}}", missing.join(", "), unexpected.join(", "));
    }
    for (name, target) in &own {
        if let Some(src) = tensors.get(name) {
            if src.size() != target.size() {
                bail!("'{name}' has shape {:?} here, {:?} in the state dict", target.size(), src.size());
            }
        }
    }
    let _guard = tch::no_grad_guard();
    for (name, target) in own {
        if let Some(src) = tensors.get(&name) {
            let mut target = target;
            target.f_copy_(src).with_context(|| format!("loading '{name}'"))?;
        }
    }
    Ok(Mismatch { missing, unexpected })
}

/// The tree as PyTorch prints it: `Class(extra)` with children indented under their names.
pub fn format_tree(root: &dyn Module) -> String {
    fn go(m: &dyn Module, out: &mut String, indent: usize) {
        out.push_str(m.class_name());
        out.push('(');
        out.push_str(&m.extra_repr());
        let children = m.children();
        if children.is_empty() {
            out.push(')');
            return;
        }
        out.push('\n');
        for (name, child) in children {
            out.push_str(&"  ".repeat(indent + 1));
            out.push_str(&format!("({name}): "));
            go(child, out, indent + 1);
            out.push('\n');
        }
        out.push_str(&"  ".repeat(indent));
        out.push(')');
    }
    let mut out = String::new();
    go(root, &mut out, 0);
    out
}

/// Parameter counts: (total, trainable) overall and per owner.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamCounts {
    pub total: i64,
    pub trainable: i64,
    /// (owner, total, trainable), the base model first.
    pub by_owner: Vec<(String, i64, i64)>,
}

impl ParamCounts {
    pub fn of(params: &[NamedParam]) -> ParamCounts {
        let mut owners: BTreeMap<Owner, (i64, i64)> = BTreeMap::new();
        for p in params {
            let n = p.elements;
            let slot = owners.entry(p.owner.clone()).or_default();
            slot.0 += n;
            if p.tensor.requires_grad() {
                slot.1 += n;
            }
        }
        let total = owners.values().map(|v| v.0).sum();
        let trainable = owners.values().map(|v| v.1).sum();
        ParamCounts { total, trainable, by_owner: owners.into_iter().map(|(o, (t, tr))| (o.to_string(), t, tr)).collect() }
    }
}

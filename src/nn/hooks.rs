//! Forward hooks and the context a forward pass runs in. A hook sees a named module's input and
//! output (and may replace the output), as PyTorch's `register_forward_hook`; it is registered
//! by module name and removed by the id it was given. Every module's `forward` ends with
//! `ctx.output(name, input, output)`, which returns at once when no hook is registered, so a
//! model without hooks pays one branch per module.

use std::collections::HashMap;

use anyhow::Result;
use tch::Tensor;

/// What a hook is called with.
pub struct HookCall<'a> {
    pub module: &'a str,
    pub input: &'a Tensor,
    pub output: &'a Tensor,
}

/// A hook: returns a tensor to replace the module's output, or None to keep it.
pub type HookFn = Box<dyn Fn(&HookCall) -> Result<Option<Tensor>>>;

#[derive(Default)]
pub struct Hooks {
    by_module: HashMap<String, Vec<(u64, HookFn)>>,
    next_id: u64,
}

impl Hooks {
    pub fn is_empty(&self) -> bool {
        self.by_module.is_empty()
    }

    /// Registers `hook` on the module named `module`; returns its id.
    pub fn add(&mut self, module: &str, hook: HookFn) -> u64 {
        self.next_id += 1;
        self.by_module.entry(module.to_string()).or_default().push((self.next_id, hook));
        self.next_id
    }

    /// Removes the hook with `id`; false if there was none.
    pub fn remove(&mut self, id: u64) -> bool {
        let mut found = false;
        self.by_module.retain(|_, hooks| {
            let before = hooks.len();
            hooks.retain(|(i, _)| *i != id);
            found |= hooks.len() != before;
            !hooks.is_empty()
        });
        found
    }

    /// Whether `module` has a hook.
    pub fn has(&self, module: &str) -> bool {
        self.by_module.contains_key(module)
    }

    /// Runs the hooks of `module` in registration order, each seeing the previous one's output.
    pub fn run(&self, module: &str, input: &Tensor, mut output: Tensor) -> Result<Tensor> {
        if let Some(hooks) = self.by_module.get(module) {
            for (_, hook) in hooks {
                if let Some(replaced) = hook(&HookCall { module, input, output: &output })? {
                    output = replaced;
                }
            }
        }
        Ok(output)
    }
}

/// What every forward pass carries down the tree: training mode (dropout), the hooks, whether
/// adapters are switched off (`model:disable_adapters(fn)`), and the way back to the model when
/// layers are checkpointed (`model:gradient_checkpointing(true)`, in training mode), and the
/// active composition of adapters at residual points (`model:set_active`), if one is set.
#[derive(Clone, Copy)]
pub struct Ctx<'a> {
    pub training: bool,
    pub hooks: &'a Hooks,
    pub adapters_off: bool,
    pub checkpoint: Option<&'a super::checkpoint::Reach>,
    pub setup: Option<&'a super::compose::Setup>,
    /// AdapterHub prefix tuning's keys and values for this forward, made once at the base model.
    pub prefixes: Option<&'a super::attach::PrefixStates>,
}

impl<'a> Ctx<'a> {
    /// The same context carrying `prefixes`. Layers then run without checkpointing: the
    /// prefixes come from outside the layer, which a recomputation could not differentiate to.
    pub fn with_prefixes<'b>(&self, prefixes: Option<&'b super::attach::PrefixStates>) -> Ctx<'b>
    where
        'a: 'b,
    {
        match prefixes {
            Some(p) => Ctx { prefixes: Some(p), checkpoint: None, ..*self },
            None => *self,
        }
    }

    /// The output of the module named `name` after its hooks (if it has any).
    pub fn output(&self, name: &str, input: &Tensor, output: Tensor) -> Result<Tensor> {
        if self.hooks.is_empty() {
            return Ok(output);
        }
        self.hooks.run(name, input, output)
    }
}

//! Gradient checkpointing per layer (`model:gradient_checkpointing(true)`), as
//! torch.utils.checkpoint: a layer's forward runs without building a graph and keeps only its
//! input; the backward runs the layer again with gradients on (same dropout masks, same
//! autocast) and back-propagates through it. Activation memory then grows with the number of
//! layers times one hidden state instead of every intermediate tensor.
//!
//! The recomputation happens later, inside `backward`, so it cannot borrow the layer: it reaches
//! the model again through a [`Reach`] (the model's owner hands one over when checkpointing is
//! switched on), finds the layer by its name and downcasts it. If the model has been freed, or
//! is being changed at that moment, the backward fails with an error that says so. The autograd
//! function itself is C++ (src/tensor/checkpoint.cpp).

use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use anyhow::{anyhow, Result};
use tch::Tensor;
use torch_sys::C_tensor;

use super::hooks::{Ctx, Hooks};
use super::module::{self, Module};

type Handle = *mut C_tensor;
type RunFn = extern "C" fn(state: *mut c_void, input: Handle, output: *mut Handle) -> *mut c_char;
type DropFn = extern "C" fn(state: *mut c_void);

extern "C" {
    fn moontune_checkpoint(input: Handle, params: *const Handle, n_params: i64, run: RunFn, drop: DropFn, state: *mut c_void, result: *mut Handle) -> *mut c_char;
    fn moontune_free_error(message: *mut c_char);
}

/// Runs a function on the model's root module and hooks, if the model still exists and is not
/// being changed.
pub type Reach = Rc<dyn Fn(&mut dyn FnMut(&dyn Module, &Hooks) -> Result<Tensor>) -> Result<Tensor>>;

/// What the C++ function holds: the recomputation of one layer on a new input.
type Recompute = Box<dyn Fn(&Tensor) -> Result<Tensor>>;

/// `layer.forward` on `x` through `f`, checkpointed when gradients are on and `x` or the layer's
/// parameters need them (otherwise plainly). `f` must compute the same thing from the same
/// layer each time it is called; it gets the layer found again by name.
pub fn layer<L: Module + 'static>(reach: &Reach, ctx: &Ctx, layer: &L, name: &str, x: &Tensor, f: impl Fn(&L, &Ctx, &Tensor) -> Result<Tensor> + 'static) -> Result<Tensor> {
    let params: Vec<Tensor> = module::named_parameters(layer).into_iter().filter(|p| p.tensor.requires_grad()).map(|p| p.tensor).collect();
    let (reach, name, training, adapters_off, setup) = (reach.clone(), name.to_string(), ctx.training, ctx.adapters_off, ctx.setup.cloned());
    let recompute: Recompute = Box::new(move |x: &Tensor| {
        reach(&mut |root, hooks| {
            let found = module::get_submodule(root, &name)?;
            let layer = found.as_any().downcast_ref::<L>().ok_or_else(|| anyhow!("checkpoint: '{name}' is no longer the layer that ran forward"))?;
            let ctx = Ctx { training, hooks, adapters_off, checkpoint: None, setup: setup.as_ref(), prefixes: None };
            f(layer, &ctx, x)
        })
    });
    let state = Box::into_raw(Box::new(recompute)) as *mut c_void;
    let handles: Vec<Handle> = params.iter().map(|p| p.as_ptr() as Handle).collect();
    let mut out: Handle = std::ptr::null_mut();
    // SAFETY: the handles are live tensors; the C++ side takes ownership of `state` (dropping it
    // through `drop_state` exactly once) and returns a new tensor handle on success.
    let status = unsafe { moontune_checkpoint(x.as_ptr() as Handle, handles.as_ptr(), handles.len() as i64, run_state, drop_state, state, &mut out) };
    if !status.is_null() {
        // SAFETY: a non-null status is a NUL-terminated message malloc'ed by the C++ side.
        let message = unsafe { std::ffi::CStr::from_ptr(status) }.to_string_lossy().into_owned();
        unsafe { moontune_free_error(status) };
        return Err(anyhow!("{message}"));
    }
    // SAFETY: on success `out` is a new handle that we own.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// The C++ side's call into a recomputation: the output as a new handle, or a malloc'ed message.
extern "C" fn run_state(state: *mut c_void, input: Handle, output: *mut Handle) -> *mut c_char {
    // SAFETY: `state` is the Recompute boxed in `layer`, alive until `drop_state`; `input` is a
    // live tensor handle the C++ side keeps for the call.
    let recompute = unsafe { &*(state as *const Recompute) };
    let x = unsafe { Tensor::clone_from_ptr(input) };
    let message = match catch_unwind(AssertUnwindSafe(|| recompute(&x))) {
        Ok(Ok(mut out)) => {
            // SAFETY: the handle's ownership passes to the C++ side, which deletes it.
            unsafe { *output = out.as_mut_ptr() };
            std::mem::forget(out);
            return std::ptr::null_mut();
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "checkpoint: the layer's recomputation panicked".to_string(),
    };
    let message = CString::new(message.replace('\0', " ")).unwrap_or_default();
    // SAFETY: strdup copies into malloc'ed memory, which the C++ side frees.
    unsafe { libc::strdup(message.as_ptr()) }
}

extern "C" fn drop_state(state: *mut c_void) {
    // SAFETY: called once, by the C++ side, with the pointer `layer` made by Box::into_raw.
    let recompute = unsafe { Box::from_raw(state as *mut Recompute) };
    // No unwinding into C++.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(recompute)));
}

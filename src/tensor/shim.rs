//! Safe Rust over shim.cpp: libtorch calls that tch does not bind. A tensor's identity (its
//! TensorImpl, shared by every shallow copy) and its storage; unsetting a gradient; the
//! `_foreach_*` list ops and the fused Adam/AdamW/SGD kernels the optimizers run on; the output
//! head fused with the cross-entropy loss; whether gradients are on; numbers as
//! libtorch's wrapped scalars; inference mode; and generators of their own, so that seeded sampling does not touch the global random stream.
//! Every call returns libtorch's error as an `anyhow` error; no C++ exception crosses over.

use std::ffi::{c_char, c_int, c_void, CStr};

use anyhow::{anyhow, Result};
use tch::{Device, Tensor};
use torch_sys::C_tensor;

type Handle = *mut C_tensor;

extern "C" {
    fn moontune_free_error(message: *mut c_char);
    fn moontune_version(t: Handle, out: *mut i64) -> *mut c_char;
    fn moontune_identity(t: Handle, tensor_impl: *mut *mut c_void, storage: *mut *mut c_void, nbytes: *mut i64) -> *mut c_char;
    fn moontune_set_grad(t: Handle, g: Handle) -> *mut c_char;
    fn moontune_wrapped_number(f: f64, i: i64, is_int: bool, out: *mut Handle) -> *mut c_char;
    fn moontune_foreach_zero_(ts: *const Handle, n: i64) -> *mut c_char;
    fn moontune_foreach_mul_scalar_(ts: *const Handle, n: i64, s: f64) -> *mut c_char;
    fn moontune_foreach_mul_tensor_(ts: *const Handle, n: i64, s: Handle) -> *mut c_char;
    fn moontune_foreach_add_scalar_(ts: *const Handle, n: i64, s: f64) -> *mut c_char;
    fn moontune_foreach_add_list_(ts: *const Handle, others: *const Handle, n: i64, alpha: f64) -> *mut c_char;
    fn moontune_foreach_add_list(ts: *const Handle, others: *const Handle, n: i64, alpha: f64, out: *mut Handle) -> *mut c_char;
    fn moontune_foreach_lerp_scalar_(ts: *const Handle, ends: *const Handle, n: i64, weight: f64) -> *mut c_char;
    fn moontune_foreach_addcmul_scalar_(ts: *const Handle, t1: *const Handle, t2: *const Handle, n: i64, value: f64) -> *mut c_char;
    fn moontune_foreach_addcdiv_scalars_(ts: *const Handle, t1: *const Handle, t2: *const Handle, n: i64, values: *const f64) -> *mut c_char;
    fn moontune_foreach_div_scalars_(ts: *const Handle, n: i64, values: *const f64) -> *mut c_char;
    fn moontune_foreach_maximum_(ts: *const Handle, others: *const Handle, n: i64) -> *mut c_char;
    fn moontune_foreach_sqrt(ts: *const Handle, n: i64, out: *mut Handle) -> *mut c_char;
    fn moontune_foreach_norm(ts: *const Handle, n: i64, ord: f64, out: *mut Handle) -> *mut c_char;
    #[allow(clippy::too_many_arguments)]
    fn moontune_fused_adam_(
        params: *const Handle,
        grads: *const Handle,
        exp_avgs: *const Handle,
        exp_avg_sqs: *const Handle,
        max_exp_avg_sqs: *const Handle,
        steps: *const Handle,
        n: i64,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        amsgrad: bool,
        decoupled: bool,
    ) -> *mut c_char;
    #[allow(clippy::too_many_arguments)]
    fn moontune_fused_sgd_(
        params: *const Handle,
        grads: *const Handle,
        bufs: *const Handle,
        n: i64,
        weight_decay: f64,
        momentum: f64,
        lr: f64,
        dampening: f64,
        nesterov: bool,
        first_step: bool,
    ) -> *mut c_char;
    fn moontune_inference_mode_enter() -> *mut c_void;
    fn moontune_inference_mode_exit(guard: *mut c_void);
    fn moontune_generator_new(device: i32, seed: u64, out: *mut *mut c_void) -> *mut c_char;
    fn moontune_generator_free(g: *mut c_void);
    fn moontune_rng_state(device: i32, out: *mut Handle) -> *mut c_char;
    fn moontune_set_rng_state(device: i32, state: Handle) -> *mut c_char;
    fn moontune_linear_4bit(x: Handle, bias: Handle, packed: Handle, absmax: Handle, code: Handle, out: i64, n_in: i64, block: i64, compute: c_int, result: *mut Handle) -> *mut c_char;
    fn moontune_autocast_enter(dtype: c_int, was_cpu: *mut bool, was_cpu_dtype: *mut c_int, was_cuda: *mut bool, was_cuda_dtype: *mut c_int) -> *mut c_char;
    fn moontune_autocast_exit(was_cpu: bool, was_cpu_dtype: c_int, was_cuda: bool, was_cuda_dtype: c_int) -> *mut c_char;
    fn moontune_linear_cross_entropy(hidden: Handle, weight: Handle, labels: Handle, chunk: i64, result: *mut Handle) -> *mut c_char;
    fn moontune_rms_norm(x: Handle, weight: Handle, eps: f64, result: *mut Handle) -> *mut c_char;
    fn moontune_rope(x: Handle, cos: Handle, sin: Handle, result: *mut Handle) -> *mut c_char;
    fn moontune_swiglu(gate: Handle, up: Handle, result: *mut Handle) -> *mut c_char;
    fn moontune_grad_enabled() -> bool;
    fn moontune_multinomial(probs: Handle, samples: i64, generator: *mut c_void, out: *mut Handle) -> *mut c_char;
}

/// Turns the shim's status into a Result, freeing the message.
pub(crate) fn check(status: *mut c_char) -> Result<()> {
    if status.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null status is a NUL-terminated string malloc'ed by the shim, freed once here.
    let message = unsafe { CStr::from_ptr(status) }.to_string_lossy().into_owned();
    unsafe { moontune_free_error(status) };
    let first = message.lines().next().unwrap_or("libtorch error").to_string();
    Err(anyhow!(first))
}

fn handles(ts: &[Tensor]) -> Vec<Handle> {
    ts.iter().map(|t| t.as_ptr() as Handle).collect()
}

fn handles_of(ts: &[&Tensor]) -> Vec<Handle> {
    ts.iter().map(|t| t.as_ptr() as Handle).collect()
}

/// Wraps `n` handles the shim wrote (on success every slot is set).
fn take(out: Vec<Handle>) -> Vec<Tensor> {
    // SAFETY: each handle is a new at::Tensor the shim allocated; tch frees it on drop.
    out.into_iter().map(|h| unsafe { Tensor::from_ptr(h) }).collect()
}

fn same_len(what: &str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(anyhow!("{what}: lists of {a} and {b} tensors"));
    }
    Ok(())
}

/// What a tensor is: its TensorImpl (the same for every shallow copy of a parameter, so it names
/// the parameter) and its storage with that storage's size in bytes (shared by views).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub tensor: usize,
    pub storage: usize,
    pub storage_bytes: i64,
}

pub fn identity(t: &Tensor) -> Result<Identity> {
    let (mut tensor, mut storage, mut bytes) = (std::ptr::null_mut(), std::ptr::null_mut(), 0i64);
    // SAFETY: t is a live tch handle; the shim writes the three outputs.
    check(unsafe { moontune_identity(t.as_ptr() as Handle, &mut tensor, &mut storage, &mut bytes) })?;
    Ok(Identity { tensor: tensor as usize, storage: storage as usize, storage_bytes: bytes })
}

/// How many times `t`'s data was changed in place since it was made (`t._version` in PyTorch).
pub fn version(t: &Tensor) -> Result<i64> {
    let mut out = 0i64;
    // SAFETY: t is a live tch handle; the shim writes the output.
    check(unsafe { moontune_version(t.as_ptr() as Handle, &mut out) })?;
    Ok(out)
}

/// `t.grad = g` (same shape, dtype and device), or `t.grad = None`.
/// An integer as a Python int reaches libtorch: a 0-dim CPU tensor that promotes as a scalar
/// (`uint8 + 300` stays uint8).
pub fn wrapped_int(i: i64) -> Result<Tensor> {
    wrapped_number(0.0, i, true)
}

/// A float as a Python float reaches libtorch (`int32 * 2.5` is float32, `half * 2.0` half).
pub fn wrapped_float(f: f64) -> Result<Tensor> {
    wrapped_number(f, 0, false)
}

fn wrapped_number(f: f64, i: i64, is_int: bool) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_wrapped_number(f, i, is_int, &mut out) })?;
    Ok(take(vec![out]).remove(0))
}

pub fn set_grad(t: &Tensor, g: Option<&Tensor>) -> Result<()> {
    let g = g.map(|g| g.as_ptr() as Handle).unwrap_or(std::ptr::null_mut());
    check(unsafe { moontune_set_grad(t.as_ptr() as Handle, g) })
}

pub fn zero_(ts: &[Tensor]) -> Result<()> {
    check(unsafe { moontune_foreach_zero_(handles(ts).as_ptr(), ts.len() as i64) })
}

pub fn mul_scalar_(ts: &[Tensor], s: f64) -> Result<()> {
    check(unsafe { moontune_foreach_mul_scalar_(handles(ts).as_ptr(), ts.len() as i64, s) })
}

/// Multiplies every tensor by the 0-dim tensor `s`.
pub fn mul_tensor_(ts: &[Tensor], s: &Tensor) -> Result<()> {
    check(unsafe { moontune_foreach_mul_tensor_(handles(ts).as_ptr(), ts.len() as i64, s.as_ptr() as Handle) })
}

pub fn add_scalar_(ts: &[Tensor], s: f64) -> Result<()> {
    check(unsafe { moontune_foreach_add_scalar_(handles(ts).as_ptr(), ts.len() as i64, s) })
}

/// `ts[i] += alpha · others[i]`.
pub fn add_list_(ts: &[Tensor], others: &[Tensor], alpha: f64) -> Result<()> {
    same_len("foreach add_", ts.len(), others.len())?;
    check(unsafe { moontune_foreach_add_list_(handles(ts).as_ptr(), handles(others).as_ptr(), ts.len() as i64, alpha) })
}

/// `ts[i] + alpha · others[i]`, new tensors.
pub fn add_list(ts: &[Tensor], others: &[Tensor], alpha: f64) -> Result<Vec<Tensor>> {
    same_len("foreach add", ts.len(), others.len())?;
    let mut out = vec![std::ptr::null_mut(); ts.len()];
    check(unsafe { moontune_foreach_add_list(handles(ts).as_ptr(), handles(others).as_ptr(), ts.len() as i64, alpha, out.as_mut_ptr()) })?;
    Ok(take(out))
}

/// `ts[i] += weight · (ends[i] − ts[i])`.
pub fn lerp_scalar_(ts: &[Tensor], ends: &[Tensor], weight: f64) -> Result<()> {
    same_len("foreach lerp_", ts.len(), ends.len())?;
    check(unsafe { moontune_foreach_lerp_scalar_(handles(ts).as_ptr(), handles(ends).as_ptr(), ts.len() as i64, weight) })
}

/// `ts[i] += value · t1[i] · t2[i]`.
pub fn addcmul_scalar_(ts: &[Tensor], t1: &[Tensor], t2: &[Tensor], value: f64) -> Result<()> {
    same_len("foreach addcmul_", ts.len(), t1.len())?;
    same_len("foreach addcmul_", ts.len(), t2.len())?;
    check(unsafe { moontune_foreach_addcmul_scalar_(handles(ts).as_ptr(), handles(t1).as_ptr(), handles(t2).as_ptr(), ts.len() as i64, value) })
}

/// `ts[i] += values[i] · t1[i] / t2[i]`.
pub fn addcdiv_scalars_(ts: &[Tensor], t1: &[Tensor], t2: &[Tensor], values: &[f64]) -> Result<()> {
    same_len("foreach addcdiv_", ts.len(), t1.len())?;
    same_len("foreach addcdiv_", ts.len(), t2.len())?;
    same_len("foreach addcdiv_", ts.len(), values.len())?;
    check(unsafe { moontune_foreach_addcdiv_scalars_(handles(ts).as_ptr(), handles(t1).as_ptr(), handles(t2).as_ptr(), ts.len() as i64, values.as_ptr()) })
}

/// `ts[i] /= values[i]`.
pub fn div_scalars_(ts: &[Tensor], values: &[f64]) -> Result<()> {
    same_len("foreach div_", ts.len(), values.len())?;
    check(unsafe { moontune_foreach_div_scalars_(handles(ts).as_ptr(), ts.len() as i64, values.as_ptr()) })
}

/// `ts[i] = max(ts[i], others[i])` elementwise.
pub fn maximum_(ts: &[Tensor], others: &[Tensor]) -> Result<()> {
    same_len("foreach maximum_", ts.len(), others.len())?;
    check(unsafe { moontune_foreach_maximum_(handles(ts).as_ptr(), handles(others).as_ptr(), ts.len() as i64) })
}

pub fn sqrt(ts: &[Tensor]) -> Result<Vec<Tensor>> {
    let mut out = vec![std::ptr::null_mut(); ts.len()];
    check(unsafe { moontune_foreach_sqrt(handles(ts).as_ptr(), ts.len() as i64, out.as_mut_ptr()) })?;
    Ok(take(out))
}

/// The `ord`-norm of each tensor, as 0-dim tensors.
pub fn norm(ts: &[Tensor], ord: f64) -> Result<Vec<Tensor>> {
    let mut out = vec![std::ptr::null_mut(); ts.len()];
    check(unsafe { moontune_foreach_norm(handles(ts).as_ptr(), ts.len() as i64, ord, out.as_mut_ptr()) })?;
    Ok(take(out))
}

/// The tensors one fused Adam step works on, all of one device and dtype.
pub struct AdamLists<'a> {
    pub params: Vec<&'a Tensor>,
    pub grads: Vec<Tensor>,
    pub exp_avgs: Vec<&'a Tensor>,
    pub exp_avg_sqs: Vec<&'a Tensor>,
    /// Empty unless amsgrad.
    pub max_exp_avg_sqs: Vec<&'a Tensor>,
    /// float32 0-dim step counts on the parameters' device; incremented by the call.
    pub steps: Vec<&'a Tensor>,
}

/// The settings of one fused Adam step.
#[derive(Clone, Copy, Debug)]
pub struct AdamSettings {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub amsgrad: bool,
    /// AdamW's decoupled weight decay (`_fused_adamw_`) rather than Adam's L2 (`_fused_adam_`).
    pub decoupled: bool,
}

/// `torch._fused_adam_` / `torch._fused_adamw_`.
pub fn fused_adam_(l: &AdamLists, s: &AdamSettings) -> Result<()> {
    let n = l.params.len();
    for (what, len) in [("grads", l.grads.len()), ("exp_avgs", l.exp_avgs.len()), ("exp_avg_sqs", l.exp_avg_sqs.len()), ("steps", l.steps.len())] {
        same_len(&format!("fused adam {what}"), n, len)?;
    }
    if s.amsgrad {
        same_len("fused adam max_exp_avg_sqs", n, l.max_exp_avg_sqs.len())?;
    }
    let grads: Vec<&Tensor> = l.grads.iter().collect();
    let status = unsafe {
        moontune_fused_adam_(
            handles_of(&l.params).as_ptr(),
            handles_of(&grads).as_ptr(),
            handles_of(&l.exp_avgs).as_ptr(),
            handles_of(&l.exp_avg_sqs).as_ptr(),
            handles_of(&l.max_exp_avg_sqs).as_ptr(),
            handles_of(&l.steps).as_ptr(),
            n as i64,
            s.lr,
            s.beta1,
            s.beta2,
            s.weight_decay,
            s.eps,
            s.amsgrad,
            s.decoupled,
        )
    };
    check(status)
}

/// The settings of one fused SGD step.
#[derive(Clone, Copy, Debug)]
pub struct SgdSettings {
    pub lr: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
}

/// `torch._fused_sgd_`. With momentum, `bufs` has one buffer per parameter; when `first_step`
/// they are uninitialised and the kernel fills them.
pub fn fused_sgd_(params: &[&Tensor], grads: &[Tensor], bufs: &[&Tensor], s: &SgdSettings, first_step: bool) -> Result<()> {
    same_len("fused sgd grads", params.len(), grads.len())?;
    if s.momentum != 0.0 {
        same_len("fused sgd momentum buffers", params.len(), bufs.len())?;
    }
    let grads: Vec<&Tensor> = grads.iter().collect();
    let status = unsafe {
        moontune_fused_sgd_(
            handles_of(params).as_ptr(),
            handles_of(&grads).as_ptr(),
            handles_of(bufs).as_ptr(),
            params.len() as i64,
            s.weight_decay,
            s.momentum,
            s.lr,
            s.dampening,
            s.nesterov,
            first_step,
        )
    };
    check(status)
}

/// libtorch's inference mode (`torch.inference_mode()`: no autograd and no version counting)
/// while the guard lives.
pub struct InferenceMode {
    guard: *mut c_void,
}

impl InferenceMode {
    #[allow(clippy::new_without_default)]
    pub fn new() -> InferenceMode {
        // SAFETY: the shim returns a heap guard, freed once by Drop on this thread.
        InferenceMode { guard: unsafe { moontune_inference_mode_enter() } }
    }
}

impl Drop for InferenceMode {
    fn drop(&mut self) {
        unsafe { moontune_inference_mode_exit(self.guard) }
    }
}

/// A random generator of its own (`torch.Generator(device).manual_seed(seed)`).
pub struct Generator {
    handle: *mut c_void,
}

impl Generator {
    pub fn new(device: Device, seed: u64) -> Result<Generator> {
        let index = device_index(device)?;
        let mut handle = std::ptr::null_mut();
        check(unsafe { moontune_generator_new(index, seed, &mut handle) })?;
        Ok(Generator { handle })
    }

    /// One draw per row of `probs` (B, V) (`torch.multinomial(probs, 1, generator=g)`), (B, 1).
    pub fn multinomial(&mut self, probs: &Tensor) -> Result<Tensor> {
        let mut out = std::ptr::null_mut();
        check(unsafe { moontune_multinomial(probs.as_ptr() as Handle, 1, self.handle, &mut out) })?;
        Ok(take(vec![out]).remove(0))
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        // SAFETY: the handle came from moontune_generator_new and is freed once.
        unsafe { moontune_generator_free(self.handle) }
    }
}

fn device_index(device: Device) -> Result<i32> {
    match device {
        Device::Cpu => Ok(-1),
        Device::Cuda(i) => Ok(i as i32),
        other => Err(anyhow!("no random generator for device {other:?}")),
    }
}

/// The state of libtorch's default random generator of `device` (`torch.get_rng_state()`,
/// `torch.cuda.get_rng_state(i)`): a uint8 tensor on the CPU.
pub fn rng_state(device: Device) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_rng_state(device_index(device)?, &mut out) })?;
    Ok(take(vec![out]).remove(0))
}

/// Restores what `rng_state` gave.
pub fn set_rng_state(device: Device, state: &Tensor) -> Result<()> {
    check(unsafe { moontune_set_rng_state(device_index(device)?, state.as_ptr() as Handle) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    /// The tests that seed and draw from libtorch's global stream take turns.
    static GLOBAL_STREAM: std::sync::Mutex<()> = std::sync::Mutex::new(());

    #[test]
    fn the_random_stream_continues_from_a_restored_state() {
        let _turn = GLOBAL_STREAM.lock().unwrap_or_else(|e| e.into_inner());
        tch::manual_seed(3);
        let state = rng_state(Device::Cpu).unwrap();
        let a = Tensor::randn([5], (Kind::Float, Device::Cpu));
        set_rng_state(Device::Cpu, &state).unwrap();
        let b = Tensor::randn([5], (Kind::Float, Device::Cpu));
        assert!(a.equal(&b));
    }

    #[test]
    fn identity_is_shared_by_shallow_copies_and_storage_by_views() {
        let a = Tensor::zeros([4, 4], (Kind::Float, Device::Cpu));
        let b = a.shallow_clone();
        let view = a.narrow(0, 1, 2);
        let (ia, ib, iv) = (identity(&a).unwrap(), identity(&b).unwrap(), identity(&view).unwrap());
        assert_eq!(ia, ib);
        assert_ne!(ia.tensor, iv.tensor);
        assert_eq!(ia.storage, iv.storage);
        assert_eq!(ia.storage_bytes, 64);
    }

    #[test]
    fn foreach_ops_and_errors() {
        let ts = vec![Tensor::ones([2], (Kind::Float, Device::Cpu)), Tensor::ones([3], (Kind::Float, Device::Cpu))];
        mul_scalar_(&ts, 3.0).unwrap();
        add_list_(&ts, &ts.iter().map(|t| t.shallow_clone()).collect::<Vec<_>>(), 0.5).unwrap();
        let norms = norm(&ts, 2.0).unwrap();
        assert!((norms[1].double_value(&[]) - (3.0f64 * 4.5 * 4.5).sqrt()).abs() < 1e-5);
        let bad = vec![Tensor::ones([2], (Kind::Float, Device::Cpu))];
        let wrong = vec![Tensor::ones([3], (Kind::Float, Device::Cpu))];
        assert!(add_list_(&bad, &wrong, 1.0).is_err());
    }

    #[test]
    fn own_generator_repeats_and_leaves_the_global_stream_alone() {
        let _turn = GLOBAL_STREAM.lock().unwrap_or_else(|e| e.into_inner());
        let probs = Tensor::ones([2, 50], (Kind::Float, Device::Cpu));
        tch::manual_seed(7);
        let expected_global = Tensor::rand([3], (Kind::Float, Device::Cpu));
        tch::manual_seed(7);
        let a = Generator::new(Device::Cpu, 123).unwrap().multinomial(&probs).unwrap();
        let b = Generator::new(Device::Cpu, 123).unwrap().multinomial(&probs).unwrap();
        assert!(a.equal(&b));
        assert!(Tensor::rand([3], (Kind::Float, Device::Cpu)).equal(&expected_global));
    }
}

/// `x Wᵀ + b` for a weight stored in 4 bits (src/tensor/linear4bit.cpp): `packed` codes, two per
/// byte, `absmax` (float32) per block of `block`, `code` the 16 values; the weight (out, in) is
/// de-quantised to `compute` in the forward and again in the backward, never kept.
#[allow(clippy::too_many_arguments)]
pub fn linear_4bit(x: &Tensor, bias: Option<&Tensor>, packed: &Tensor, absmax: &Tensor, code: &Tensor, shape: [i64; 2], block: i64, compute: tch::Kind) -> Result<Tensor> {
    let compute = scalar_type(compute)?;
    let mut out = std::ptr::null_mut();
    let bias = bias.map(|b| b.as_ptr() as Handle).unwrap_or(std::ptr::null_mut());
    check(unsafe { moontune_linear_4bit(x.as_ptr() as Handle, bias, packed.as_ptr() as Handle, absmax.as_ptr() as Handle, code.as_ptr() as Handle, shape[0], shape[1], block, compute, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// The mean cross-entropy of `hidden` (N, H) · `weight`ᵀ against `labels` (N, int64, -100
/// ignored), `chunk` rows at a time, without making the (N, vocabulary) logits
/// (linear_cross_entropy.cpp); gradients reach `hidden` and, if it requires them, `weight`.
pub fn linear_cross_entropy(hidden: &Tensor, weight: &Tensor, labels: &Tensor, chunk: i64) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_linear_cross_entropy(hidden.as_ptr() as Handle, weight.as_ptr() as Handle, labels.as_ptr() as Handle, chunk, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Llama's RMSNorm of `x` over its last dimension: normalised in float32, cast back, scaled by
/// `weight` (fused_pointwise.cpp: one pass each way for float32 CPU tensors).
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f64) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_rms_norm(x.as_ptr() as Handle, weight.as_ptr() as Handle, eps, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// The rotary embedding `x·cos + rotate_half(x)·sin` of `x` (B, heads, T, head_dim) by `cos`
/// and `sin` (B or 1, T, head_dim) (fused_pointwise.cpp).
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_rope(x.as_ptr() as Handle, cos.as_ptr() as Handle, sin.as_ptr() as Handle, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// SwiGLU's `silu(gate)·up` (fused_pointwise.cpp).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    let mut out = std::ptr::null_mut();
    check(unsafe { moontune_swiglu(gate.as_ptr() as Handle, up.as_ptr() as Handle, &mut out) })?;
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// Whether autograd records operations on this thread (`torch.is_grad_enabled()`).
pub fn grad_enabled() -> bool {
    // SAFETY: reads a thread-local flag.
    unsafe { moontune_grad_enabled() }
}

/// c10::ScalarType's value of a floating-point kind.
fn scalar_type(kind: tch::Kind) -> Result<c_int> {
    Ok(match kind {
        tch::Kind::Half => 5,
        tch::Kind::Float => 6,
        tch::Kind::Double => 7,
        tch::Kind::BFloat16 => 15,
        other => anyhow::bail!("expected a floating-point dtype, got {other:?}"),
    })
}

/// Autocast (`torch.autocast`) on CPU and CUDA to `kind` while the guard lives; dropping it puts
/// back what was there before (guards nest).
pub struct Autocast {
    was: (bool, c_int, bool, c_int),
}

impl Autocast {
    pub fn enter(kind: tch::Kind) -> Result<Autocast> {
        if !matches!(kind, tch::Kind::BFloat16 | tch::Kind::Half) {
            anyhow::bail!("autocast runs in bfloat16 or float16, not {kind:?}");
        }
        let mut was = (false, 0, false, 0);
        check(unsafe { moontune_autocast_enter(scalar_type(kind)?, &mut was.0, &mut was.1, &mut was.2, &mut was.3) })?;
        Ok(Autocast { was })
    }
}

impl Drop for Autocast {
    fn drop(&mut self) {
        let (a, b, c, d) = self.was;
        // Restoring settings cannot fail in practice; a failure would leave autocast as it is.
        let _ = check(unsafe { moontune_autocast_exit(a, b, c, d) });
    }
}

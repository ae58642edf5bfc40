// shim.cpp — libtorch calls that tch does not bind, for src/tensor/shim.rs: a tensor's identity
// and its storage, unsetting a gradient, the `_foreach_*` list ops, the fused Adam/AdamW/SGD
// kernels (`torch._fused_adamw_` and friends), seeded generators for sampling, and autocast.
//
// Every function catches every C++ exception: it returns nullptr on success and otherwise a
// malloc'ed message that the caller frees with moontune_free_error. A `tensor` is tch's handle,
// a heap-allocated at::Tensor; outputs are new handles that tch takes ownership of.

#include <ATen/autocast_mode.h>
#include <ATen/core/Tensor.h>
#include <c10/core/InferenceMode.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <ATen/ops/_foreach_add.h>
#include <ATen/ops/_foreach_addcdiv.h>
#include <ATen/ops/_foreach_addcmul.h>
#include <ATen/ops/_foreach_div.h>
#include <ATen/ops/_foreach_lerp.h>
#include <ATen/ops/_foreach_maximum.h>
#include <ATen/ops/_foreach_mul.h>
#include <ATen/ops/_foreach_norm.h>
#include <ATen/ops/_foreach_sqrt.h>
#include <ATen/ops/_foreach_zero.h>
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#include <ATen/ops/_fused_sgd.h>
#include <ATen/ops/multinomial.h>
#include <ATen/ops/scalar_tensor.h>

#include <cstdlib>
#include <cstring>
#include <vector>

typedef at::Tensor* tensor;

#include "guarded.h"

namespace {

using moontune::guarded;

std::vector<at::Tensor> list(const tensor* ts, int64_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (int64_t i = 0; i < n; i++) out.push_back(*ts[i]);
  return out;
}

std::vector<at::Scalar> scalars(const double* values, int64_t n) {
  return std::vector<at::Scalar>(values, values + n);
}

void hand_out(const std::vector<at::Tensor>& results, tensor* out) {
  for (size_t i = 0; i < results.size(); i++) out[i] = new at::Tensor(results[i]);
}

}  // namespace

extern "C" {

void moontune_free_error(char* message) { std::free(message); }

// The TensorImpl (the object every shallow copy shares), its storage and the storage's bytes.
char* moontune_identity(tensor t, void** impl, void** storage, int64_t* nbytes) {
  return guarded([&] {
    *impl = t->defined() ? static_cast<void*>(t->unsafeGetTensorImpl()) : nullptr;
    bool stored = t->defined() && t->has_storage();
    *storage = stored ? static_cast<void*>(t->storage().unsafeGetStorageImpl()) : nullptr;
    *nbytes = stored ? static_cast<int64_t>(t->storage().nbytes()) : 0;
  });
}

// How many times the tensor's data was changed in place (`t._version`): 0 for a tensor as it was
// made, more after an optimizer step, a copy into it or a merge.
char* moontune_version(tensor t, int64_t* out) {
  return guarded([&] { *out = t->defined() ? static_cast<int64_t>(t->_version()) : 0; });
}

// A number as libtorch keeps a Python scalar: a 0-dim CPU tensor (int64 or float64) marked as a
// wrapped number, which type promotion ranks below tensors of its kind. Made here, not through
// tch's Scalar (whose destructor panics on a pending libtorch error).
char* moontune_wrapped_number(double f, int64_t i, bool is_int, tensor* out) {
  return guarded([&] {
    at::Tensor t = is_int ? at::scalar_tensor(i, at::kLong) : at::scalar_tensor(f, at::kDouble);
    t.unsafeGetTensorImpl()->set_wrapped_number(true);
    *out = new at::Tensor(t);
  });
}

// `p.grad = g`, or `p.grad = None` when g is null.
char* moontune_set_grad(tensor t, tensor g) {
  return guarded([&] {
    if (g == nullptr) {
      t->mutable_grad().reset();
    } else {
      TORCH_CHECK(g->sizes() == t->sizes(), "a gradient of shape ", g->sizes(), " for a tensor of shape ", t->sizes());
      TORCH_CHECK(g->scalar_type() == t->scalar_type() && g->device() == t->device(), "a gradient must have the tensor's dtype and device");
      t->mutable_grad() = *g;
    }
  });
}

char* moontune_foreach_zero_(const tensor* ts, int64_t n) {
  return guarded([&] { at::_foreach_zero_(list(ts, n)); });
}

char* moontune_foreach_mul_scalar_(const tensor* ts, int64_t n, double s) {
  return guarded([&] { at::_foreach_mul_(list(ts, n), s); });
}

// Multiplies every tensor by one 0-dim tensor (on their device), as clip_grad_norm_ does.
char* moontune_foreach_mul_tensor_(const tensor* ts, int64_t n, tensor s) {
  return guarded([&] { at::_foreach_mul_(list(ts, n), *s); });
}

char* moontune_foreach_add_scalar_(const tensor* ts, int64_t n, double s) {
  return guarded([&] { at::_foreach_add_(list(ts, n), s); });
}

// self[i] += alpha * other[i]
char* moontune_foreach_add_list_(const tensor* ts, const tensor* others, int64_t n, double alpha) {
  return guarded([&] { at::_foreach_add_(list(ts, n), list(others, n), alpha); });
}

// out[i] = self[i] + alpha * other[i]
char* moontune_foreach_add_list(const tensor* ts, const tensor* others, int64_t n, double alpha, tensor* out) {
  return guarded([&] { hand_out(at::_foreach_add(list(ts, n), list(others, n), alpha), out); });
}

char* moontune_foreach_lerp_scalar_(const tensor* ts, const tensor* ends, int64_t n, double weight) {
  return guarded([&] { at::_foreach_lerp_(list(ts, n), list(ends, n), weight); });
}

char* moontune_foreach_addcmul_scalar_(const tensor* ts, const tensor* t1, const tensor* t2, int64_t n, double value) {
  return guarded([&] { at::_foreach_addcmul_(list(ts, n), list(t1, n), list(t2, n), value); });
}

char* moontune_foreach_addcdiv_scalars_(const tensor* ts, const tensor* t1, const tensor* t2, int64_t n, const double* values) {
  return guarded([&] { at::_foreach_addcdiv_(list(ts, n), list(t1, n), list(t2, n), scalars(values, n)); });
}

char* moontune_foreach_div_scalars_(const tensor* ts, int64_t n, const double* values) {
  return guarded([&] { at::_foreach_div_(list(ts, n), scalars(values, n)); });
}

char* moontune_foreach_maximum_(const tensor* ts, const tensor* others, int64_t n) {
  return guarded([&] { at::_foreach_maximum_(list(ts, n), list(others, n)); });
}

char* moontune_foreach_sqrt(const tensor* ts, int64_t n, tensor* out) {
  return guarded([&] { hand_out(at::_foreach_sqrt(list(ts, n)), out); });
}

char* moontune_foreach_norm(const tensor* ts, int64_t n, double ord, tensor* out) {
  return guarded([&] { hand_out(at::_foreach_norm(list(ts, n), ord), out); });
}

// torch._fused_adam_ / _fused_adamw_ over one device and dtype. `steps` are float32 0-dim tensors
// on the parameters' device, incremented here first as torch.optim does; `max_exp_avg_sqs` is
// empty unless amsgrad.
char* moontune_fused_adam_(const tensor* params, const tensor* grads, const tensor* exp_avgs, const tensor* exp_avg_sqs,
                           const tensor* max_exp_avg_sqs, const tensor* steps, int64_t n, double lr, double beta1,
                           double beta2, double weight_decay, double eps, bool amsgrad, bool decoupled) {
  return guarded([&] {
    auto step_list = list(steps, n);
    at::_foreach_add_(step_list, 1.0);
    auto maxes = list(max_exp_avg_sqs, amsgrad ? n : 0);
    if (decoupled) {
      at::_fused_adamw_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), maxes, step_list, lr,
                        beta1, beta2, weight_decay, eps, amsgrad, false);
    } else {
      at::_fused_adam_(list(params, n), list(grads, n), list(exp_avgs, n), list(exp_avg_sqs, n), maxes, step_list, lr,
                       beta1, beta2, weight_decay, eps, amsgrad, false);
    }
  });
}

// torch._fused_sgd_ over one device and dtype. `bufs` has n entries when momentum != 0 (empty
// ones allocated by the caller when `first_step`, which the kernel then fills), else none.
char* moontune_fused_sgd_(const tensor* params, const tensor* grads, const tensor* bufs, int64_t n, double weight_decay,
                          double momentum, double lr, double dampening, bool nesterov, bool first_step) {
  return guarded([&] {
    at::_fused_sgd_(list(params, n), list(grads, n), list(bufs, momentum != 0.0 ? n : 0), weight_decay, momentum, lr,
                    dampening, nesterov, false, first_step);
  });
}

// Enters libtorch's inference mode (`torch.inference_mode()`) until the guard is freed; guards
// are freed in the reverse order of entry, on the thread that made them.
void* moontune_inference_mode_enter() { return new c10::InferenceMode(); }

void moontune_inference_mode_exit(void* guard) { delete static_cast<c10::InferenceMode*>(guard); }

// A generator of its own for `device` (-1 = CPU, else a CUDA index), seeded.
char* moontune_generator_new(int device, uint64_t seed, void** out) {
  return guarded([&] {
    at::Generator g = device < 0 ? at::detail::createCPUGenerator(seed)
                                 : at::detail::getCUDAHooks().getNewGenerator(static_cast<c10::DeviceIndex>(device));
    if (device >= 0) g.set_current_seed(seed);
    *out = new at::Generator(g);
  });
}

void moontune_generator_free(void* g) { delete static_cast<at::Generator*>(g); }

// The state of libtorch's default generator of `device` (-1 = CPU, else a CUDA index), as the
// byte tensor `torch.get_rng_state()` gives.
char* moontune_rng_state(int device, tensor* out) {
  return guarded([&] {
    at::Generator g = device < 0 ? at::detail::getDefaultCPUGenerator()
                                 : at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device)));
    std::lock_guard<std::mutex> lock(g.mutex());
    *out = new at::Tensor(g.get_state());
  });
}

// Sets it back (`torch.set_rng_state(state)`).
char* moontune_set_rng_state(int device, tensor state) {
  return guarded([&] {
    at::Generator g = device < 0 ? at::detail::getDefaultCPUGenerator()
                                 : at::globalContext().defaultGenerator(c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device)));
    std::lock_guard<std::mutex> lock(g.mutex());
    g.set_state(*state);
  });
}

char* moontune_multinomial(tensor probs, int64_t samples, void* generator, tensor* out) {
  return guarded([&] {
    *out = new at::Tensor(at::multinomial(*probs, samples, false, *static_cast<at::Generator*>(generator)));
  });
}

// Autocast on CPU and CUDA (`torch.autocast`): entering sets both device types to `dtype` (a
// c10::ScalarType) and returns what they were, for the exit to put back; the cast cache is
// cleared when the outermost one exits, as torch.autocast does.
char* moontune_autocast_enter(int dtype, bool* was_cpu, int* was_cpu_dtype, bool* was_cuda, int* was_cuda_dtype) {
  return guarded([&] {
    *was_cpu = at::autocast::is_autocast_enabled(at::kCPU);
    *was_cuda = at::autocast::is_autocast_enabled(at::kCUDA);
    *was_cpu_dtype = static_cast<int>(at::autocast::get_autocast_dtype(at::kCPU));
    *was_cuda_dtype = static_cast<int>(at::autocast::get_autocast_dtype(at::kCUDA));
    auto kind = static_cast<at::ScalarType>(dtype);
    at::autocast::set_autocast_enabled(at::kCPU, true);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
    at::autocast::set_autocast_dtype(at::kCPU, kind);
    at::autocast::set_autocast_dtype(at::kCUDA, kind);
    at::autocast::increment_nesting();
  });
}

char* moontune_autocast_exit(bool was_cpu, int was_cpu_dtype, bool was_cuda, int was_cuda_dtype) {
  return guarded([&] {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(at::kCPU, was_cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, was_cuda);
    at::autocast::set_autocast_dtype(at::kCPU, static_cast<at::ScalarType>(was_cpu_dtype));
    at::autocast::set_autocast_dtype(at::kCUDA, static_cast<at::ScalarType>(was_cuda_dtype));
  });
}

}  // extern "C"

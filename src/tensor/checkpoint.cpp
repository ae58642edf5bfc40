// checkpoint.cpp — gradient checkpointing (torch.utils.checkpoint, reentrant form): an autograd
// function whose forward runs a piece of the model without building a graph, keeping only its
// input, and whose backward runs that piece again with gradients on and back-propagates through
// it. The piece is a Rust closure (src/nn/checkpoint.rs) reached through a state pointer and two
// callbacks; the state is owned by the graph node and dropped with it. As torch.utils.checkpoint
// does, the recomputation sees the random-number state (dropout masks) and the autocast state
// the forward saw.
//
// Errors reach Rust as shim.cpp's do (guarded.h).

#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <ATen/Context.h>

#include "guarded.h"

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

typedef at::Tensor* tensor;

extern "C" {
// Runs the piece on `input`; on success sets *output to a new handle (ours to delete) and
// returns nullptr, else returns a malloc'ed message.
typedef char* (*moontune_run_fn)(void* state, tensor input, tensor* output);
typedef void (*moontune_drop_fn)(void* state);
}

namespace {

std::string take_message(char* message) {
  std::string text(message);
  std::free(message);
  return text;
}

// The piece's output on `input`, or a C++ exception carrying the closure's error.
at::Tensor run_piece(moontune_run_fn run, void* state, const at::Tensor& input) {
  at::Tensor in = input;
  tensor out = nullptr;
  char* error = run(state, &in, &out);
  if (error != nullptr) throw std::runtime_error(take_message(error));
  if (out == nullptr) throw std::runtime_error("checkpoint: the recomputed piece gave no tensor");
  at::Tensor result = *out;
  delete out;
  return result;
}

// The random-number states a forward draws from: the CPU generator's, and the input device's if
// that is an accelerator.
struct RngStates {
  at::Tensor cpu;
  at::Tensor device;
  c10::Device where = c10::Device(c10::kCPU);

  static RngStates capture(const c10::Device& where) {
    RngStates s;
    s.where = where;
    {
      auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCPU));
      std::lock_guard<std::mutex> lock(gen.mutex());
      s.cpu = gen.get_state();
    }
    if (where.type() != c10::kCPU) {
      auto gen = at::globalContext().defaultGenerator(where);
      std::lock_guard<std::mutex> lock(gen.mutex());
      s.device = gen.get_state();
    }
    return s;
  }

  void restore() const {
    {
      auto gen = at::globalContext().defaultGenerator(c10::Device(c10::kCPU));
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(cpu);
    }
    if (device.defined()) {
      auto gen = at::globalContext().defaultGenerator(where);
      std::lock_guard<std::mutex> lock(gen.mutex());
      gen.set_state(device);
    }
  }
};

// Autocast as the forward had it, on CPU and CUDA, for the span of a recomputation.
struct AutocastState {
  bool cpu, cuda;
  at::ScalarType cpu_dtype, cuda_dtype;

  static AutocastState current() {
    return {at::autocast::is_autocast_enabled(at::kCPU), at::autocast::is_autocast_enabled(at::kCUDA),
            at::autocast::get_autocast_dtype(at::kCPU), at::autocast::get_autocast_dtype(at::kCUDA)};
  }

  void apply() const {
    at::autocast::set_autocast_enabled(at::kCPU, cpu);
    at::autocast::set_autocast_enabled(at::kCUDA, cuda);
    at::autocast::set_autocast_dtype(at::kCPU, cpu_dtype);
    at::autocast::set_autocast_dtype(at::kCUDA, cuda_dtype);
  }
};

// Puts autocast back as it was (and clears its cast cache) when the recomputation ends, even by
// an exception.
struct AutocastScope {
  AutocastState before = AutocastState::current();
  explicit AutocastScope(const AutocastState& wanted) {
    wanted.apply();
    at::autocast::increment_nesting();
  }
  ~AutocastScope() {
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    before.apply();
  }
};

// Saved beside the graph node: the random-number and autocast states of the forward.
struct ForwardState : public torch::CustomClassHolder {
  RngStates rng;
  AutocastState autocast;
};

struct Checkpoint : public torch::autograd::Function<Checkpoint> {
  // inputs[0] is the piece's input; the rest are the trainable parameters inside the piece,
  // there only so that the output needs a gradient when they do (their gradients reach them
  // through the recomputed graph). `holder` owns the closure's state (its deleter drops it).
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& holder, at::TensorList inputs, int64_t run,
                            int64_t state) {
    auto saved = c10::make_intrusive<ForwardState>();
    saved->rng = RngStates::capture(inputs[0].device());
    saved->autocast = AutocastState::current();
    ctx->save_for_backward({inputs[0]});
    ctx->saved_data["holder"] = holder;
    ctx->saved_data["forward_state"] = c10::IValue::make_capsule(saved);
    ctx->saved_data["run"] = run;
    ctx->saved_data["state"] = state;
    ctx->saved_data["parameters"] = static_cast<int64_t>(inputs.size() - 1);
    return run_piece(reinterpret_cast<moontune_run_fn>(run), reinterpret_cast<void*>(state), inputs[0]);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto input = ctx->get_saved_variables()[0];
    auto forward_state = ctx->saved_data["forward_state"].toCapsule();
    auto* saved = static_cast<ForwardState*>(forward_state.get());
    auto run = reinterpret_cast<moontune_run_fn>(ctx->saved_data["run"].toInt());
    auto* state = reinterpret_cast<void*>(ctx->saved_data["state"].toInt());
    auto x = input.detach();
    x.set_requires_grad(input.requires_grad());
    at::Tensor out;
    {
      // The forward's random numbers (dropout draws the same masks), then back to the present.
      auto now = RngStates::capture(x.device());
      saved->rng.restore();
      try {
        torch::autograd::AutoGradMode grad_on(true);
        AutocastScope autocast(saved->autocast);
        out = run_piece(run, state, x);
      } catch (...) {
        now.restore();
        throw;
      }
      now.restore();
    }
    if (out.requires_grad()) {
      // Gradients accumulate into every parameter the piece used, wherever it lives.
      torch::autograd::backward({out}, {grads[0]});
    }
    torch::autograd::variable_list result;
    result.push_back(at::Tensor());  // the holder
    result.push_back(x.requires_grad() ? x.grad() : at::Tensor());
    for (int64_t i = 0; i < ctx->saved_data["parameters"].toInt(); i++) result.push_back(at::Tensor());
    result.push_back(at::Tensor());  // run
    result.push_back(at::Tensor());  // state
    return result;
  }
};

}  // namespace

extern "C" {

// The piece run on `input` under checkpointing when gradients are on and `input` or one of
// `params` needs them; otherwise run plainly. `drop` frees `state` once nothing can recompute.
char* moontune_checkpoint(tensor input, const tensor* params, int64_t n_params, moontune_run_fn run, moontune_drop_fn drop,
                          void* state, tensor* result) {
  // Owns the state until the holder tensor does.
  struct Owner {
    moontune_drop_fn drop;
    void* state;
    ~Owner() {
      if (state != nullptr) drop(state);
    }
  } owner{drop, state};
  return moontune::guarded([&] {
    bool needs_grad = input->requires_grad();
    torch::autograd::variable_list inputs{*input};
    for (int64_t i = 0; i < n_params; i++) {
      needs_grad = needs_grad || params[i]->requires_grad();
      inputs.push_back(*params[i]);
    }
    if (!torch::autograd::GradMode::is_enabled() || !needs_grad) {
      *result = new at::Tensor(run_piece(run, state, *input));
      return;
    }
    // A one-byte tensor whose deleter drops the state: the graph node keeps it while it lives.
    auto holder = at::from_blob(
        state, {1}, [drop](void* s) { drop(s); }, at::TensorOptions().dtype(at::kByte));
    owner.state = nullptr;
    *result = new at::Tensor(Checkpoint::apply(holder, at::TensorList(inputs), reinterpret_cast<int64_t>(run), reinterpret_cast<int64_t>(state)));
  });
}

}  // extern "C"

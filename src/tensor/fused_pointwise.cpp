// fused_pointwise.cpp — a transformer block's elementwise steps (RMSNorm, the rotary embedding,
// SwiGLU) as autograd functions that pass once over their tensors where autograd's composite
// of the same formulas runs 5 to 14 kernels, each a pass over memory with its own temporary: on
// a small model on the CPU those passes are a tenth of a training step. The rotary embedding is
// fused both ways and equals the composite to the bit (the same products and sums, in the same
// order); RMSNorm and SwiGLU keep the composite's forward, so that a model's outputs stay
// transformers' to the bit, and fuse their backward (equal to the composite's to rounding:
// src/tensor/fused_pointwise_tests.rs). The fused loops run for float32 CPU tensors (vector_math.h
// vectorises them); elsewhere (CUDA, half types, shapes they do not cover) each function runs
// the composite. Second derivatives are refused with an error: no moontune API asks for them.
//
// Errors reach Rust as shim.cpp's do (guarded.h).

#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include "guarded.h"
#include "vector_math.h"

typedef at::Tensor* tensor;

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Elements per parallel task, as ATen's own pointwise kernels.
constexpr int64_t GRAIN = 32768;

bool cpu_float(const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat; }

int64_t rows_per_task(int64_t width) { return std::max<int64_t>(1, GRAIN / std::max<int64_t>(1, width)); }

void no_second_derivative(const char* name) {
  TORCH_CHECK(!at::GradMode::is_enabled(), name, ": second derivatives (create_graph) are not supported");
}

// ---------------------------------------------------------------------------------------------
// RMSNorm as Llama's: normalise in float32, cast back, scale by the weight.

at::Tensor rms_norm_composite(const at::Tensor& x, const at::Tensor& weight, double eps) {
  auto h = x.to(at::kFloat);
  auto variance = h.pow(2).mean(-1, true);
  h = h * (variance + eps).rsqrt();
  return weight * h.to(x.scalar_type());
}

// dx = r·(g·w − n·mean(g·w·n)) with n = x·r; and, where dw is given, dw += Σ_rows g·n.
MOONTUNE_VECTOR_LOOP
void rms_norm_backward_rows(const float* __restrict x, const float* __restrict w, const float* __restrict inv_rms, const float* __restrict grad,
                            float* __restrict dx, float* __restrict dw, float* __restrict scratch, int64_t rows, int64_t dim) {
  for (int64_t row = 0; row < rows; ++row) {
    const float* xr = x + row * dim;
    const float* g = grad + row * dim;
    float* out = dx + row * dim;
    float r = inv_rms[row];
    for (int64_t d = 0; d < dim; ++d) scratch[d] = g[d] * w[d];
    float mean = moontune::dot(scratch, xr, dim) * r / static_cast<float>(dim);
    for (int64_t d = 0; d < dim; ++d) out[d] = r * (scratch[d] - xr[d] * r * mean);
    if (dw != nullptr) {
      for (int64_t d = 0; d < dim; ++d) dw[d] += g[d] * xr[d] * r;
    }
  }
}

struct RmsNorm : public torch::autograd::Function<RmsNorm> {
  // The composite's own ops, so that the output is the composite's to the bit; 1/√(mean(x²) +
  // eps) is kept for the backward.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& weight, double eps) {
    auto inv_rms = (x.pow(2).mean(-1, true) + eps).rsqrt().contiguous();
    auto out = weight * (x * inv_rms);
    ctx->save_for_backward({x, weight.contiguous(), inv_rms});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    no_second_derivative("rms_norm");
    auto saved = ctx->get_saved_variables();
    auto x = saved[0].contiguous();
    const auto &w = saved[1], &inv_rms = saved[2];
    auto grad = grads[0].contiguous();
    int64_t dim = x.size(-1), rows = dim == 0 ? 0 : x.numel() / dim;
    bool want_x = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    auto dx = at::empty_like(x);
    // Each task sums its rows' share of dw in its own row of `partial_w`; the rows are added after.
    int64_t per_task = rows_per_task(dim);
    int64_t tasks = rows == 0 ? 0 : (rows + per_task - 1) / per_task;
    auto partial_w = want_w ? at::zeros({tasks, dim}, x.options()) : at::Tensor();
    const float* xp = x.const_data_ptr<float>();
    const float* wp = w.const_data_ptr<float>();
    const float* rp = inv_rms.const_data_ptr<float>();
    const float* gp = grad.const_data_ptr<float>();
    float* dxp = dx.data_ptr<float>();
    at::parallel_for(0, tasks, 1, [&](int64_t first, int64_t last) {
      std::vector<float> scratch(dim);
      for (int64_t task = first; task < last; ++task) {
        int64_t begin = task * per_task, end = std::min(rows, begin + per_task);
        float* dw = want_w ? partial_w.data_ptr<float>() + task * dim : nullptr;
        rms_norm_backward_rows(xp + begin * dim, wp, rp + begin, gp + begin * dim, dxp + begin * dim, dw, scratch.data(), end - begin, dim);
      }
    });
    at::Tensor dw = want_w ? partial_w.sum(0) : at::Tensor();
    return {want_x ? dx : at::Tensor(), dw, at::Tensor()};
  }
};

// ---------------------------------------------------------------------------------------------
// The rotary embedding, `x·cos + rotate_half(x)·sin`, x (B, heads, T, head_dim) and cos, sin
// (B or 1, T, head_dim).

at::Tensor rotate_half(const at::Tensor& x) {
  int64_t half = x.size(-1) / 2;
  return at::cat({x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)}, -1);
}

at::Tensor rope_composite(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  auto c = cos.unsqueeze(1), s = sin.unsqueeze(1);
  return x * c + rotate_half(x) * s;
}

// The strides of a (B, heads, T, D) tensor's leading dimensions, and its heads and steps.
struct RowStrides {
  int64_t heads, steps, b, h, t;
};

// Forward: o₁ = x₁c₁ − x₂s₁, o₂ = x₂c₂ + x₁s₂ over the halves of each row. Backward (the
// transpose): o₁ = x₁c₁ + x₂s₂, o₂ = x₂c₂ − x₁s₁. Rows begin..end in (batch, head, step) order.
MOONTUNE_VECTOR_LOOP
void rope_rows(const float* x, RowStrides xs, const float* cos, const float* sin, RowStrides cs, float* out, RowStrides os, int64_t begin,
               int64_t end, int64_t dim, bool transpose) {
  int64_t half = dim / 2;
  int64_t batch = begin / (xs.heads * xs.steps), head = (begin / xs.steps) % xs.heads, step = begin % xs.steps;
  for (int64_t row = begin; row < end; ++row) {
    const float* x1 = x + batch * xs.b + head * xs.h + step * xs.t;
    const float* x2 = x1 + half;
    const float* c = cos + batch * cs.b + step * cs.t;
    const float* s = sin + batch * cs.b + step * cs.t;
    float* o1 = out + batch * os.b + head * os.h + step * os.t;
    float* o2 = o1 + half;
    // out never overlaps x, cos or sin (rope_apply allocates it).
    if (transpose) {
#pragma GCC ivdep
      for (int64_t i = 0; i < half; ++i) {
        float a = x1[i], b = x2[i];
        o1[i] = a * c[i] + b * s[half + i];
        o2[i] = b * c[half + i] - a * s[i];
      }
    } else {
#pragma GCC ivdep
      for (int64_t i = 0; i < half; ++i) {
        float a = x1[i], b = x2[i];
        o1[i] = a * c[i] - b * s[i];
        o2[i] = b * c[half + i] + a * s[half + i];
      }
    }
    if (++step == xs.steps) {
      step = 0;
      if (++head == xs.heads) {
        head = 0;
        ++batch;
      }
    }
  }
}

RowStrides row_strides(const at::Tensor& t) { return {t.size(1), t.size(2), t.stride(0), t.stride(1), t.stride(2)}; }

// x rotated (or, with `transpose`, a gradient taken back) into a new tensor laid out as x is.
at::Tensor rope_apply(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, bool transpose) {
  auto out = at::empty_like(x);
  // cos and sin are read per (batch, step): the heads dimension has stride 0.
  auto c = cos.unsqueeze(1).expand(x.sizes());
  RowStrides cs = row_strides(c);
  int64_t dim = x.size(3), rows = x.numel() / std::max<int64_t>(1, dim);
  const float* xp = x.const_data_ptr<float>();
  const float* cp = cos.const_data_ptr<float>();
  const float* sp = sin.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  RowStrides xs = row_strides(x), os = row_strides(out);
  at::parallel_for(0, rows, rows_per_task(dim), [&](int64_t begin, int64_t end) { rope_rows(xp, xs, cp, sp, cs, op, os, begin, end, dim, transpose); });
  return out;
}

struct Rope : public torch::autograd::Function<Rope> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return rope_apply(x, cos, sin, false);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    no_second_derivative("rope");
    auto saved = ctx->get_saved_variables();
    auto grad = grads[0].stride(3) == 1 ? grads[0] : grads[0].contiguous();
    return {rope_apply(grad, saved[0], saved[1], true), at::Tensor(), at::Tensor()};
  }
};

// Whether the loops cover these operands: float32 on the CPU, x 4-D with an even head_dim and
// unit stride along it, cos and sin contiguous (B or 1, T, head_dim) and not trained.
bool rope_fusable(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  if (!cpu_float(x) || !cpu_float(cos) || !cpu_float(sin) || x.dim() != 4 || x.size(3) % 2 != 0 || x.stride(3) != 1) return false;
  if (cos.requires_grad() || sin.requires_grad() || !cos.is_contiguous() || !sin.is_contiguous()) return false;
  if (cos.sizes() != sin.sizes() || cos.dim() != 3) return false;
  return (cos.size(0) == x.size(0) || cos.size(0) == 1) && cos.size(1) == x.size(2) && cos.size(2) == x.size(3);
}

// ---------------------------------------------------------------------------------------------
// SwiGLU: silu(gate)·up, silu(g) = g / (1 + e^−g).

// d gate = grad·up·σ(g)·(1 + g·(1 − σ(g))), d up = grad·silu(g) (silu kept from the forward).
MOONTUNE_VECTOR_LOOP
void swiglu_grads(const float* __restrict gate, const float* __restrict up, const float* __restrict silu, const float* __restrict grad,
                  float* __restrict d_gate, float* __restrict d_up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float g = gate[i];
    float sigmoid = 1.0f / (1.0f + moontune::exp_approx(-g));
    d_gate[i] = grad[i] * up[i] * sigmoid * (1.0f + g * (1.0f - sigmoid));
    d_up[i] = grad[i] * silu[i];
  }
}

struct SwiGlu : public torch::autograd::Function<SwiGlu> {
  // The composite's own ops, so that the output is the composite's to the bit.
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& gate, const at::Tensor& up) {
    auto silu = at::silu(gate);
    ctx->save_for_backward({gate, up, silu});
    return silu * up;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    no_second_derivative("swiglu");
    auto saved = ctx->get_saved_variables();
    const auto &gate = saved[0], &up = saved[1], &silu = saved[2];
    auto grad = grads[0].contiguous();
    auto d_gate = at::empty_like(gate), d_up = at::empty_like(up);
    const float* gp = gate.const_data_ptr<float>();
    const float* up_p = up.const_data_ptr<float>();
    const float* sp = silu.const_data_ptr<float>();
    const float* grad_p = grad.const_data_ptr<float>();
    float* dg = d_gate.data_ptr<float>();
    float* du = d_up.data_ptr<float>();
    at::parallel_for(0, gate.numel(), GRAIN, [&](int64_t begin, int64_t end) {
      swiglu_grads(gp + begin, up_p + begin, sp + begin, grad_p + begin, dg + begin, du + begin, end - begin);
    });
    return {ctx->needs_input_grad(0) ? d_gate : at::Tensor(), ctx->needs_input_grad(1) ? d_up : at::Tensor()};
  }
};

}  // namespace

extern "C" {

// RMSNorm of x over its last dimension, as Llama's (see rms_norm_composite).
char* moontune_rms_norm(tensor x, tensor weight, double eps, tensor* result) {
  return moontune::guarded([&] {
    bool fusable = cpu_float(*x) && cpu_float(*weight) && x->dim() >= 1 && weight->dim() == 1 && weight->size(0) == x->size(-1);
    *result = new at::Tensor(fusable ? RmsNorm::apply(*x, *weight, eps) : rms_norm_composite(*x, *weight, eps));
  });
}

// The rotary embedding of x (B, heads, T, head_dim) by cos and sin (B or 1, T, head_dim).
char* moontune_rope(tensor x, tensor cos, tensor sin, tensor* result) {
  return moontune::guarded([&] {
    *result = new at::Tensor(rope_fusable(*x, *cos, *sin) ? Rope::apply(*x, *cos, *sin) : rope_composite(*x, *cos, *sin));
  });
}

// silu(gate)·up.
char* moontune_swiglu(tensor gate, tensor up, tensor* result) {
  return moontune::guarded([&] {
    bool fusable = cpu_float(*gate) && cpu_float(*up) && gate->sizes() == up->sizes() && gate->is_contiguous() && up->is_contiguous();
    *result = new at::Tensor(fusable ? SwiGlu::apply(*gate, *up) : at::silu(*gate) * *up);
  });
}

}  // extern "C"

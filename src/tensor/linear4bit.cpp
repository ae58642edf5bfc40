// linear4bit.cpp — the forward and backward of a linear layer whose weight is stored in 4 bits
// (src/nn/fourbit.rs), as bitsandbytes' MatMul4Bit: the weight is de-quantised for the forward
// and again for the backward, so that autograd keeps the 4-bit codes rather than the full weight
// (what makes QLoRA's memory small). The weight is frozen; gradients flow to the input and, if
// it requires them, to the bias.
//
// Errors reach Rust as shim.cpp's do (guarded.h).

#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ATen.h>

#include "guarded.h"

typedef at::Tensor* tensor;

namespace {

// The weight (out, in) in `compute`: codes unpacked (high nibble first), looked up in `code`,
// scaled by their block's absmax.
at::Tensor dequantize(const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code, int64_t out, int64_t in,
                      int64_t block, at::ScalarType compute) {
  auto high = at::bitwise_right_shift(packed, 4);
  auto low = at::bitwise_and(packed, 15);
  auto codes = at::stack({high, low}, 1).flatten().to(at::kLong);
  auto values = code.index_select(0, codes).view({-1, block});
  auto w = (values * absmax.unsqueeze(1)).flatten().narrow(0, 0, out * in).view({out, in});
  return w.to(compute);
}

struct Linear4bit : public torch::autograd::Function<Linear4bit> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias,
                            const at::Tensor& packed, const at::Tensor& absmax, const at::Tensor& code, int64_t out,
                            int64_t in, int64_t block, int64_t compute) {
    auto kind = static_cast<at::ScalarType>(compute);
    auto w = dequantize(packed, absmax, code, out, in, block, kind);
    ctx->save_for_backward({packed, absmax, code});
    ctx->saved_data["out"] = out;
    ctx->saved_data["in"] = in;
    ctx->saved_data["block"] = block;
    ctx->saved_data["compute"] = compute;
    ctx->saved_data["input_kind"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["bias_grad"] = bias.requires_grad();
    auto y = at::linear(x.to(kind), w, bias.to(kind));
    return y.to(x.scalar_type());
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto kind = static_cast<at::ScalarType>(ctx->saved_data["compute"].toInt());
    auto input_kind = static_cast<at::ScalarType>(ctx->saved_data["input_kind"].toInt());
    auto w = dequantize(saved[0], saved[1], saved[2], ctx->saved_data["out"].toInt(), ctx->saved_data["in"].toInt(),
                        ctx->saved_data["block"].toInt(), kind);
    auto g = grads[0];
    auto grad_x = at::matmul(g.to(kind), w).to(input_kind);
    at::Tensor grad_bias;
    if (ctx->saved_data["bias_grad"].toBool()) {
      grad_bias = g.reshape({-1, g.size(-1)}).sum(0);
    }
    return {grad_x, grad_bias, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// y = x Wᵀ + b with W de-quantised from 4 bits; `bias` may be null (no bias).
char* moontune_linear_4bit(tensor x, tensor bias, tensor packed, tensor absmax, tensor code, int64_t out, int64_t in,
                           int64_t block, int compute, tensor* result) {
  return moontune::guarded([&] {
    // No bias is a zero one (an undefined tensor cannot enter an autograd function).
    at::Tensor b = bias != nullptr ? *bias : at::zeros({out}, x->options());
    *result = new at::Tensor(Linear4bit::apply(*x, b, *packed, *absmax, *code, out, in, block, static_cast<int64_t>(compute)));
  });
}

}  // extern "C"

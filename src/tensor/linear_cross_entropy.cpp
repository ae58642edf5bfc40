// linear_cross_entropy.cpp — the output head and the cross-entropy loss in one autograd function,
// over chunks of rows: for each chunk the logits are made, turned into the loss and, when
// gradients are wanted, at once into the gradients of the hidden states and of the head's
// weight, then dropped. The full (tokens × vocabulary) logits, their log-softmax and their
// gradient never exist, which is most of a small model's activation memory and a good part of
// its step time (the softmax passes run on chunks that stay in cache). The products go through
// oneDNN in float32 on the CPU (`product`, below); there each chunk's loss and softmax come from
// one loop per row (`softmax_loss_rows`) rather than log_softmax, exp and scatter kernels. Rows without a label
// (-100: prompts, padding, each sequence's last position) never reach the products, so a
// prompt-masked batch pays for its answers' tokens only. Backward only scales the
// gradients kept from the forward by the incoming one. Numerically it is `cross_entropy(hidden ·
// weightᵀ, labels)` with mean reduction over the labels that are not -100; under autocast the
// two matrix products run in autocast's dtype, as the unfused head would, and the softmax in
// float32, as the unfused loss does.
//
// Errors reach Rust as shim.cpp's do (guarded.h).

#include <torch/csrc/autograd/custom_function.h>
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/LocalDispatchKeySet.h>

#include "guarded.h"
#include "vector_math.h"

typedef at::Tensor* tensor;

namespace {

constexpr int64_t IGNORE = -100;

// a · bᵀ for a (rows, k) and b (n, k), either possibly a transposed view. In float32 on the CPU
// through oneDNN's matmul (the `mkldnn::_linear_pointwise` op libtorch registers) rather than
// at::mm's MKL: on this project's machine (an AMD EPYC, 2 threads) the head and loss of
// bench/modular.py's model took 50–56 ms a step so against 59–66 ms (the same calls timed from
// Python), and its seq_bn step ran at 6725 tokens/s against 6141 (median of 5 interleaved runs).
// The model's other linear layers stay on at::linear: through this product the step was slower.
// Elsewhere, or where libtorch lacks oneDNN, at::mm.
at::Tensor product(const at::Tensor& a, const at::Tensor& b) {
  using Signature = at::Tensor(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&, c10::string_view,
                               c10::List<std::optional<at::Scalar>>, std::optional<c10::string_view>);
  static const auto onednn = []() -> std::optional<c10::TypedOperatorHandle<Signature>> {
    auto handle = c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""});
    if (!handle || !at::hasMKLDNN()) return std::nullopt;
    return handle->typed<Signature>();
  }();
  bool cpu_float = a.device().is_cpu() && a.scalar_type() == at::kFloat && b.scalar_type() == at::kFloat;
  if (onednn && cpu_float && at::globalContext().userEnabledMkldnn()) {
    return onednn->call(a, b, std::nullopt, "none", c10::List<std::optional<at::Scalar>>(), std::nullopt);
  }
  return at::mm(a, b.t());
}

// Per row of logits (rows, vocab): the loss log Σ e^x − x[target] and, with `write_grad`, the
// row replaced by softmax(x) − one-hot(target), in three passes over a row that stays in cache
// (its maximum; e^(x − max), written in place, and their sum; the scaling). Float32, CPU.
MOONTUNE_VECTOR_LOOP
void softmax_loss_rows(float* __restrict logits, const int64_t* __restrict targets, float* __restrict row_loss, int64_t rows, int64_t vocab,
                       bool write_grad) {
  for (int64_t row = 0; row < rows; ++row) {
    float* x = logits + row * vocab;
    float target_logit = x[targets[row]];
    float lanes[16];
    for (int j = 0; j < 16; ++j) lanes[j] = -INFINITY;
    int64_t i = 0;
    for (; i + 16 <= vocab; i += 16) {
      for (int j = 0; j < 16; ++j) lanes[j] = x[i + j] > lanes[j] ? x[i + j] : lanes[j];
    }
    float max = -INFINITY;
    for (int j = 0; j < 16; ++j) max = lanes[j] > max ? lanes[j] : max;
    for (; i < vocab; ++i) max = x[i] > max ? x[i] : max;
    for (int j = 0; j < 16; ++j) lanes[j] = 0.0f;
    float tail = 0.0f;
    for (i = 0; i + 16 <= vocab; i += 16) {
      for (int j = 0; j < 16; ++j) {
        float e = moontune::exp_approx(x[i + j] - max);
        if (write_grad) x[i + j] = e;
        lanes[j] += e;
      }
    }
    for (; i < vocab; ++i) {
      float e = moontune::exp_approx(x[i] - max);
      if (write_grad) x[i] = e;
      tail += e;
    }
    float sum = tail;
    for (int j = 0; j < 16; ++j) sum += lanes[j];
    row_loss[row] = max + std::log(sum) - target_logit;
    if (write_grad) {
      float inverse = 1.0f / sum;
      for (i = 0; i < vocab; ++i) x[i] *= inverse;
      x[targets[row]] -= 1.0f;
    }
  }
}

// The summed loss of `logits`' rows against `targets` (rows, 1); with `write_grad` the logits
// become softmax − one-hot in place (softmax_loss_rows).
at::Tensor softmax_loss_cpu(at::Tensor& logits, const at::Tensor& targets, bool write_grad) {
  int64_t rows = logits.size(0), vocab = logits.size(1);
  auto index = targets.contiguous();
  if (rows > 0) {
    auto low = index.min().item<int64_t>(), high = index.max().item<int64_t>();
    TORCH_CHECK(low >= 0 && high < vocab, "label ", low < 0 ? low : high, " is outside the vocabulary [0, ", vocab, ") and is not -100");
  }
  auto row_loss = at::empty({rows}, logits.options());
  float* lp = logits.data_ptr<float>();
  const int64_t* tp = index.const_data_ptr<int64_t>();
  float* rp = row_loss.data_ptr<float>();
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    softmax_loss_rows(lp + begin * vocab, tp + begin, rp + begin, end - begin, vocab, write_grad);
  });
  return row_loss.sum();
}

struct LinearCrossEntropy : public torch::autograd::Function<LinearCrossEntropy> {
  // hidden (N, H), weight (V, H), labels (N) int64; compute: the dtype of the products.
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& hidden, const at::Tensor& weight,
                            const at::Tensor& labels, int64_t chunk, int64_t compute) {
    // Casts are explicit below; autocast must not cast again inside.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto kind = static_cast<at::ScalarType>(compute);
    bool want_hidden = hidden.requires_grad();
    bool want_weight = weight.requires_grad();
    auto w = weight.to(kind);
    // Only the rows with a label take part: the others (a prompt's tokens, padding, each
    // sequence's last position) are dropped before the products rather than masked after them.
    auto labelled = labels.ne(IGNORE).nonzero().squeeze(1);
    int64_t n = hidden.size(0), m = labelled.size(0);
    bool every_row = m == n;
    auto rows_hidden = every_row ? hidden : hidden.index_select(0, labelled);
    auto targets = every_row ? labels : labels.index_select(0, labelled);
    // d loss / d logits = (softmax − one-hot) / m; the 1/m is applied to the (rows × hidden)
    // products, not to the (rows × vocab) chunk.
    double scale = 1.0 / static_cast<double>(m);
    at::Tensor grad_rows = want_hidden ? at::empty({m, hidden.size(1)}, hidden.options().dtype(kind)) : at::Tensor();
    at::Tensor grad_weight = want_weight ? at::zeros(weight.sizes(), weight.options().dtype(at::kFloat)) : at::Tensor();
    auto total = at::zeros({}, hidden.options().dtype(at::kFloat));
    for (int64_t start = 0; start < m; start += chunk) {
      int64_t rows = std::min(chunk, m - start);
      auto h = rows_hidden.narrow(0, start, rows).to(kind);
      auto t = targets.narrow(0, start, rows).unsqueeze(1);
      bool want_probs = want_hidden || want_weight;
      auto logits = product(h, w).to(at::kFloat).contiguous();
      at::Tensor probs;
      if (logits.device().is_cpu()) {
        total.add_(softmax_loss_cpu(logits, t, want_probs));
        probs = logits;
      } else {
        // One fused log-softmax pass set, the loss read from it, the softmax from it in place.
        auto logp = at::log_softmax(logits, 1);
        total.sub_(logp.gather(1, t).sum());
        if (want_probs) probs = logp.exp_().scatter_add_(1, t, at::full({rows, 1}, -1.0, logp.options()));
      }
      if (!want_probs) continue;
      auto g = probs.to(kind);
      if (want_hidden) {
        grad_rows.narrow(0, start, rows).copy_(product(g, w.t())).mul_(scale);
      }
      if (want_weight) grad_weight.add_(at::mm(g.t(), h).to(at::kFloat), scale);
    }
    at::Tensor grad_hidden;
    if (want_hidden) {
      grad_hidden = every_row ? grad_rows.to(hidden.scalar_type())
                              : at::zeros_like(hidden).index_copy_(0, labelled, grad_rows.to(hidden.scalar_type()));
    }
    ctx->saved_data["weight_kind"] = static_cast<int64_t>(weight.scalar_type());
    ctx->save_for_backward({grad_hidden, grad_weight});
    return total.div_(static_cast<double>(m));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = grads[0];
    at::Tensor grad_hidden, grad_weight;
    if (saved[0].defined()) grad_hidden = saved[0] * g.to(saved[0].scalar_type());
    if (saved[1].defined()) grad_weight = (saved[1] * g).to(static_cast<at::ScalarType>(ctx->saved_data["weight_kind"].toInt()));
    return {grad_hidden, grad_weight, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

extern "C" {

// The mean cross-entropy of hidden (N, H) · weightᵀ against labels (N) (-100 ignored), `chunk`
// rows at a time; the products in autocast's dtype where autocast is on for hidden's device.
char* moontune_linear_cross_entropy(tensor hidden, tensor weight, tensor labels, int64_t chunk, tensor* result) {
  return moontune::guarded([&] {
    auto device = hidden->device().type();
    auto kind = at::autocast::is_autocast_enabled(device) ? at::autocast::get_autocast_dtype(device) : weight->scalar_type();
    *result = new at::Tensor(LinearCrossEntropy::apply(*hidden, *weight, *labels, chunk, static_cast<int64_t>(kind)));
  });
}

// Whether autograd records operations on this thread (torch.is_grad_enabled()).
bool moontune_grad_enabled() { return at::GradMode::is_enabled(); }

}  // extern "C"

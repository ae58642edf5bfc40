-- Parity with PyTorch (values from gen_autograd.py, run beside this test): random streams after
-- manual_seed, gradients of a small MLP, of each activation and loss, and clip_grad_norm.
-- Tolerance: 1e-6 absolute + 1e-5 relative in float32.

local mt = require "moontune"
local T, F = mt.tensor, mt.nn.functional

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local ref = assert(mt.load(fixtures .. "/autograd.safetensors"))

local function close(name, got, want)
  if not got:allclose(want, { atol = 1e-6, rtol = 1e-5 }) then
    error(string.format("%s differs from PyTorch by %g", name, (got - want):abs():max():item()), 2)
  end
end

local tests = {}

function tests.random_streams_match_pytorch()
  mt.manual_seed(0)
  assert(T.randn{ 4, 3 }:equal(ref.randn_seed0), "randn after manual_seed(0)")
  mt.manual_seed(1234)
  assert(T.randn{ 7 }:equal(ref.randn_seed1234))
  assert(T.rand{ 5 }:equal(ref.rand_after))
  assert(T.randint(0, 100, { 6 }):equal(ref.randint_after))
end

local function leaf(name) return ref[name]:clone():requires_grad_() end

function tests.mlp_gradients()
  local x, w1, b1, w2, b2 = leaf("mlp.x"), leaf("mlp.w1"), leaf("mlp.b1"), leaf("mlp.w2"), leaf("mlp.b2")
  local loss = F.cross_entropy(F.linear(F.linear(x, w1, b1):gelu(), w2, b2), ref["mlp.target"])
  loss:backward()
  close("mlp loss", loss, ref["mlp.loss"])
  for name, t in pairs({ x = x, w1 = w1, b1 = b1, w2 = w2, b2 = b2 }) do
    close("mlp grad " .. name, t.grad, ref["mlp." .. name .. ".grad"])
  end
end

function tests.activation_gradients()
  local activations = {
    relu = function(t) return t:relu() end,
    gelu = function(t) return F.gelu(t) end,
    gelu_tanh = function(t) return t:gelu("tanh") end,
    silu = function(t) return F.silu(t) end,
    tanh = function(t) return t:tanh() end,
    sigmoid = function(t) return t:sigmoid() end,
    exp = function(t) return t:exp() end,
    softmax = function(t) return F.softmax(t, -1) end,
    log_softmax = function(t) return t:log_softmax(-1) end,
    sqrt_abs = function(t) return (t:abs() + 0.5):sqrt() end,
    rsqrt_abs = function(t) return (t:abs() + 0.5):rsqrt() end,
  }
  for name, fn in pairs(activations) do
    local t = leaf("act.input")
    local y = fn(t)
    close(name .. " value", y, ref["act." .. name .. ".value"])
    y:backward(ref["act.weights"])
    close(name .. " grad", t.grad, ref["act." .. name .. ".grad"])
  end
end

function tests.loss_values_and_gradients()
  local labels = ref["loss.labels"]
  local cases = {
    ce_mean = function(t) return F.cross_entropy(t, labels) end,
    ce_sum = function(t) return F.cross_entropy(t, labels, { reduction = "sum" }) end,
    ce_smooth = function(t) return F.cross_entropy(t, labels, { label_smoothing = 0.1 }) end,
    ce_ignore_7 = function(t) return F.cross_entropy(t, labels:clamp(0, nil), { ignore_index = 4 }) end,
    ce_none = function(t) return F.cross_entropy(t, labels, { reduction = "none" }) end,
  }
  for name, fn in pairs(cases) do
    local t = leaf("loss.logits")
    local value = fn(t)
    close(name .. " value", value, ref["loss." .. name .. ".value"])
    value:sum():backward()
    close(name .. " grad", t.grad, ref["loss." .. name .. ".grad"])
  end
  for _, reduction in ipairs({ "mean", "sum" }) do
    local t = leaf("loss.pred")
    local value = F.mse_loss(t, ref["loss.goal"], { reduction = reduction })
    close("mse " .. reduction, value, ref["loss.mse_" .. reduction .. ".value"])
    value:backward()
    close("mse grad " .. reduction, t.grad, ref["loss.mse_" .. reduction .. ".grad"])
  end
end

function tests.functional_ops_values_and_gradients()
  local r = function(k) return ref["fn." .. k] end
  local cases = {
    normalize = function(t) return F.normalize(t, { dim = 1 }) end,
    normalize_p1_dim0 = function(t) return F.normalize(t, { p = 1, dim = 0 }) end,
    cosine_similarity = function(t) return F.cosine_similarity(t, r("other"), { dim = 1 }) end,
    bce_logits = function(t) return F.binary_cross_entropy_with_logits(t, r("binary"), { pos_weight = r("pos_weight") }) end,
    bce_logits_none = function(t) return F.binary_cross_entropy_with_logits(t, r("binary"), { reduction = "none" }) end,
    bce = function(t) return F.binary_cross_entropy(t:sigmoid(), r("binary")) end,
    nll = function(t) return F.nll_loss(t:log_softmax(-1), r("classes")) end,
    nll_sum = function(t) return F.nll_loss(t:log_softmax(-1), r("classes"), { reduction = "sum" }) end,
    kl_batchmean = function(t) return F.kl_div(t:log_softmax(-1), r("target_dist"), { reduction = "batchmean" }) end,
    kl_log_target = function(t) return F.kl_div(t:log_softmax(-1), r("target_dist"):log(), { reduction = "sum", log_target = true }) end,
    pad_constant = function(t) return F.pad(t, { 1, 2 }, { value = 0.5 }) end,
    pad_reflect = function(t) return F.pad(t:unsqueeze(0), { 2, 1 }, { mode = "reflect" }) end,
    baddbmm = function(t) return t:view(1, 4, 6):baddbmm(r("batch1"), r("batch2"), { beta = 0.5, alpha = 2.0 }) end,
    einsum = function(t) return T.einsum("ij,kj->ik", t, r("other")) end,
    outer = function(t) return t[0]:outer(t[1]) end,
  }
  for name, fn in pairs(cases) do
    local t = leaf("fn.x")
    local y = fn(t)
    close(name .. " value", y, r(name .. ".value"))
    local weighted = (y * r(name .. ".weights")):sum()
    weighted:backward()
    close(name .. " grad", t.grad, r(name .. ".grad"))
  end
  close("linspace", T.linspace(-1, 2, 7), r("linspace"))
  close("logspace", T.logspace(0, 3, 4, { base = 2.0 }), r("logspace"))
  assert(F.one_hot(T.tensor{ 3, 0, 2 }, 5):equal(r("one_hot")), "one_hot")
end

function tests.clip_grad_norm()
  local p1, p2 = leaf("clip.p1"), leaf("clip.p2")
  local y = (p1 * 3):sum() + (p2 ^ 2):sum()
  y:backward()
  local total = mt.optim.clip_grad_norm({ p1, p2 }, 2.0)
  assert(math.abs(total - ref["clip.total"]:item()) < 1e-5, "total norm")
  close("clipped p1 grad", p1.grad, ref["clip.p1.grad"])
  close("clipped p2 grad", p2.grad, ref["clip.p2.grad"])
end

return tests

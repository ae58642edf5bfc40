-- The everyday calls a PyTorch user reaches for: slicing and mask indexing, shapes that print
-- like torch.Size, == as equal, options inside a size table, function forms of the methods,
-- activation modules, module lists and dicts, grad modes, and the small matrix products.

local mt = require "moontune"
local T, nn, F = mt.tensor, mt.nn, mt.nn.functional

local raises = require("support.expect").raises

local tests = {}

function tests.slicing_and_mask_indexing()
  local x = T.arange(24):view(2, 3, 4)
  assert(x:slice{ 1, { 0, 2 }, { nil, nil, 2 } }:equal(T.tensor{ { 12, 14 }, { 16, 18 } }))   -- x[1, 0:2, ::2]
  assert(x:slice{ {}, { -1 } }:equal(x:narrow(1, 2, 1)))                                   -- x[:, -1:]
  assert(x:slice{ { 1 } }:shape()[1] == 1 and x:slice{ 0 }:dim() == 2)
  raises(function() return x:slice{ 5 } end, "index 5 is out of range for dim 0 of size 2")
  raises(function() return x:slice{ { 0, 2, 0 } } end, "slice step must be positive")
  local mask = x:gt(20)
  assert(x[mask]:equal(T.tensor{ 21, 22, 23 }))
  assert(x[T.tensor{ 1, 0 }][0]:equal(x[1]), "int64 ids pick rows")
  local y = x:clone()
  y[mask] = 0
  assert(y:sum():item() == 210)
  y[y:eq(0)] = T.tensor{ 7 }
  assert(y:max():item() == 20 and y:eq(7):sum():item() == 5, "four zeros became 7, beside the 7 there was")
  raises(function() return x[T.tensor{ 0.5 }] end, "a tensor index must be bool (a mask) or integer")
end

function tests.shapes_print_like_torch_size_and_equality_is_equal()
  local x = T.zeros{ 3, 4 }
  assert(tostring(x:shape()) == "torch.Size([3, 4])" and tostring(x:size()) == "torch.Size([3, 4])")
  assert(#x:shape() == 2 and x:shape()[2] == 4)
  assert(x == T.zeros{ 3, 4 }, "== compares shape and values")
  assert(not (x == T.zeros{ 4, 3 }) and not (x == T.ones{ 3, 4 }))
  assert(x ~= T.ones{ 3, 4 })
end

function tests.options_inside_a_size_table()
  local x = T.randn{ 3, 4, requires_grad = true }
  assert(x:requires_grad() and x:shape()[2] == 4)
  assert(T.zeros{ 2, dtype = "int32" }:dtype() == "int32")
  assert(T.randint(5, { 2, 2, dtype = "int32" }):dtype() == "int32")
  raises(function() return T.ones({ 2, dtype = "float64" }, { dtype = "float32" }) end, "options are given both in the size table and after it")
  raises(function() return T.zeros{ 2, dtyp = "int32" } end, "unknown option 'dtyp'")
  raises(function() return x:view{ 12, foo = 1 } end, "a size table holds sizes only")
end

function tests.function_forms_of_the_methods()
  local x = T.tensor{ 1.0, 5.0, 2.0 }
  assert(T.max(x):item() == 5 and T.argmax(x):item() == 1)
  assert(T.exp(T.zeros{ 2 }):equal(T.ones{ 2 }))
  assert(T.matmul(T.ones{ 1, 2 }, T.ones{ 2, 1 }):item() == 2)
  assert(T.sum(T.ones{ 2, 3 }, 1):equal(T.full({ 2 }, 3.0)))
  raises(function() return T.exp(3) end, "tensor.exp: expected a tensor as argument 1, got integer 3")
end

function tests.matrix_products_and_ranges()
  local a, b = T.randn{ 2, 3 }, T.randn{ 3, 4 }
  assert(a:mm(b):allclose(a:matmul(b)))
  local b1, b2 = T.randn{ 5, 2, 3 }, T.randn{ 5, 3, 4 }
  assert(b1:bmm(b2)[4]:allclose(b1[4]:mm(b2[4]), { atol = 1e-6 }))
  local c = T.randn{ 5, 2, 4 }
  assert(c:baddbmm(b1, b2, { beta = 0.5, alpha = 2 }):allclose(c * 0.5 + b1:bmm(b2) * 2, { atol = 1e-5 }))
  assert(T.tensor{ 1.0, 2.0 }:outer(T.tensor{ 3.0, 4.0 }):equal(T.tensor{ { 3.0, 4.0 }, { 6.0, 8.0 } }))
  raises(function() return a:mm(a) end, "tensor.mm")
  assert(T.linspace(0, 1, 3):equal(T.tensor{ 0.0, 0.5, 1.0 }))
  assert(T.logspace(0, 2, 3):equal(T.tensor{ 1.0, 10.0, 100.0 }))
  raises(function() return T.linspace(0, 1, -2) end, "steps ≥ 0")
  assert(T.einsum("ij,jk->ik", { a, b }):allclose(a:mm(b), { atol = 1e-6 }))
  raises(function() return T.einsum("ij,jk->ik", a, a) end, "tensor.einsum")
end

function tests.activation_modules_lists_and_dicts()
  local x = T.randn{ 2, 5 }
  assert(nn.relu()(x):equal(x:relu()) and nn.gelu("tanh")(x):equal(x:gelu("tanh")) and nn.silu()(x):equal(x:silu()))
  assert(nn.tanh()(x):equal(x:tanh()) and nn.sigmoid()(x):equal(x:sigmoid()))
  assert(nn.softmax(-1)(x):equal(x:softmax(-1)) and nn.log_softmax(1)(x):equal(x:log_softmax(1)))
  assert(tostring(nn.softmax(-1)) == "Softmax(dim=-1)")
  raises(function() return nn.softmax() end, "nn.softmax: the dim is required")
  local layers = nn.module_list{ nn.linear(5, 5), nn.linear(5, 2) }
  layers:append(nn.relu())
  assert(#layers == 3 and layers[1].out_features == 2 and #layers:modules() == 3)
  local net = nn.module("Net")
  function net:init() self.layers = layers; self.heads = nn.module_dict{ a = nn.linear(2, 1), b = nn.linear(2, 3) } end
  function net:forward(h) for _, l in ipairs(self.layers:modules()) do h = l(h) end return self.heads.b(h) end
  local n = net()
  local sd = n:state_dict()
  assert(sd["layers.0.weight"] and sd["layers.1.bias"] and sd["heads.a.weight"] and sd["heads.b.bias"])
  assert(table.concat(n(x):shape(), "x") == "2x3")
  raises(function() return layers(x) end, "nn.module_list has no forward")
end

function tests.grad_modes()
  local w = T.ones({ 2 }, { requires_grad = true })
  local inside = mt.no_grad(function() return mt.enable_grad(function() return w * 2 end) end)
  assert(inside:requires_grad(), "enable_grad turns tracking back on inside no_grad")
  local inferred = mt.inference_mode(function() return w * 2 end)
  assert(not inferred:requires_grad())
  assert((w * 2):requires_grad(), "tracking is back on after the call")
end

return tests

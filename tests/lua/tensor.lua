-- Tensor semantics as PyTorch has them: creation and dtype inference, 0-based dims, indexing,
-- arithmetic with numbers and broadcasting, reductions, shape ops, printing, autograd.

local mt = require "moontune"
local T = mt.tensor

local function same(a, b, tol)
  assert(a:allclose(b, { atol = tol or 1e-6, rtol = 0 }), string.format("expected\n%s\ngot\n%s", tostring(b), tostring(a)))
end

local function shape(t) return table.concat(t:shape(), "x") end

local tests = {}

function tests.creation_infers_dtypes()
  assert(T.tensor{ 1, 2 }:dtype() == "int64")
  assert(T.tensor{ 1, 2.5 }:dtype() == "float32")
  assert(T.tensor{ true, false }:dtype() == "bool")
  assert(T.tensor(3):dim() == 0)
  assert(T.zeros{ 2, 3 }:dtype() == "float32" and shape(T.zeros{ 2, 3 }) == "2x3")
  assert(shape(T.ones(4, 5)) == "4x5", "sizes as leading numbers")
  assert(T.full({ 2 }, 7):dtype() == "int64" and T.full({ 2 }, 0.5):dtype() == "float32")
  assert(T.arange(5):tolist()[5] == 4)
  assert(T.arange(0, 1, 0.25):numel() == 4)
  assert(T.eye(3):sum():item() == 3)
  assert(T.randint(10, { 100 }):max():item() < 10)
  assert(T.randint(5, 10, { 100 }):min():item() >= 5)
  assert(T.zeros_like(T.ones({ 2 }, { dtype = "bf16" })):dtype() == "bfloat16")
  assert(T.ones({ 2 }, { dtype = "float64" }):dtype() == "float64")
  assert(T.zeros({ 1 }, { requires_grad = true }):requires_grad())
  for _, d in ipairs({ "float32", "float16", "bfloat16", "float64", "int64", "int32", "uint8", "bool" }) do
    assert(T.zeros({ 2 }, { dtype = d }):dtype() == d, d)
  end
end

function tests.dims_are_zero_based_and_negative_from_the_end()
  local x = T.arange(6):view(2, 3)
  assert(x:sum(0):tolist()[1] == 3)        -- down the columns: 0 + 3
  assert(x:sum(-1):tolist()[2] == 12)      -- along the last dim: 3 + 4 + 5
  assert(shape(x:transpose(0, 1)) == "3x2")
  assert(shape(x:unsqueeze(-1)) == "2x3x1")
  assert(x[0]:tolist()[3] == 2 and x[-1]:tolist()[1] == 3)
  assert(#x == 2 and x:size(1) == 3 and x:size(-1) == 3)
  x[1] = 0
  assert(x:sum():item() == 3)
  x[0] = T.tensor{ 7, 8, 9 }
  assert(x:tolist()[1][3] == 9)
end

function tests.arithmetic_with_numbers_and_broadcasting()
  local a = T.tensor{ { 1.0, 2.0 }, { 3.0, 4.0 } }
  same(a + 1, T.tensor{ { 2.0, 3.0 }, { 4.0, 5.0 } })
  same(1 - a, T.tensor{ { 0.0, -1.0 }, { -2.0, -3.0 } })
  same(2 / a, T.tensor{ { 2.0, 1.0 }, { 2 / 3, 0.5 } })
  same(a ^ 2, T.tensor{ { 1.0, 4.0 }, { 9.0, 16.0 } })
  same(2 ^ a, T.tensor{ { 2.0, 4.0 }, { 8.0, 16.0 } })
  same(-a, a * -1)
  same(a * T.tensor{ 10.0, 100.0 }, T.tensor{ { 10.0, 200.0 }, { 30.0, 400.0 } })
  same(a:add(a, { alpha = 2 }), a * 3)
  assert((T.tensor{ 1, 2 } / 2):dtype() == "float32", "int / int gives float, as PyTorch")
  assert((T.tensor{ 1, 2 } + 0.5):dtype() == "float32")
  assert((T.tensor{ 1, 2 } * 3):dtype() == "int64")
  local b = a:clone()
  b:add_(1):mul_(2)
  same(b, (a + 1) * 2)
  assert(a:gt(2):tolist()[2][1] == true and a:eq(T.tensor{ 1.0, 0.0 }):sum():item() == 1)
end

function tests.reductions()
  local x = T.tensor{ { 1.0, 5.0, 3.0 }, { 4.0, 2.0, 6.0 } }
  assert(x:sum():item() == 21 and x:mean():item() == 3.5)
  local values, indices = x:max(1)
  assert(values:tolist()[1] == 5 and indices:tolist()[2] == 2)
  assert(x:max():item() == 6 and x:min():item() == 1)
  assert(x:argmax():item() == 5 and x:argmax(0):tolist()[2] == 0)
  assert(shape(x:sum(1, true)) == "2x1" and shape(x:mean(0, { keepdim = true })) == "1x3")
  assert(math.abs(x:std():item() - 1.8708287) < 1e-6, "std is unbiased by default")
  assert(math.abs(x:var({ correction = 0 }):item() - 2.9166667) < 1e-6)
  assert(math.abs(x:norm():item() - math.sqrt(91)) < 1e-5)
  assert(math.abs(x:norm(1):item() - 21) < 1e-5)
  same(x:sum({ 0, 1 }), T.tensor(21.0))
end

function tests.shape_ops()
  local x = T.arange(24):view(2, 3, 4)
  assert(shape(x:reshape(6, 4)) == "6x4" and shape(x:permute(2, 0, 1)) == "4x2x3")
  assert(shape(x:flatten()) == "24" and shape(x:flatten(1)) == "2x12")
  assert(shape(x[0]:unsqueeze(0):squeeze()) == "3x4")
  local parts = x:split(2, -1)
  assert(#parts == 2 and shape(parts[1]) == "2x3x2")
  assert(#x:split({ 1, 3 }, 2) == 2 and shape(x:split({ 1, 3 }, 2)[2]) == "2x3x3")
  assert(#x:chunk(3, 1) == 3)
  assert(shape(x:narrow(2, 1, 2)) == "2x3x2")
  assert(shape(T.cat({ x, x }, 1)) == "2x6x4" and shape(T.stack({ x, x })) == "2x2x3x4")
  assert(x:index_select(0, T.tensor{ 1 }):sum():item() == x[1]:sum():item())
  local g = T.tensor{ { 1, 2 }, { 3, 4 } }:gather(1, T.tensor{ { 1 }, { 0 } })
  assert(g:tolist()[1][1] == 2 and g:tolist()[2][1] == 3)
  local s = T.zeros{ 2, 3 }:scatter(1, T.tensor{ { 2 }, { 0 } }, 1.0)
  assert(s:tolist()[1][3] == 1 and s:tolist()[2][1] == 1)
  local m = T.ones{ 2, 2 }:masked_fill(T.tensor{ { true, false }, { false, true } }, 0)
  assert(m:sum():item() == 2)
  assert(T.where(T.tensor{ true, false }, 1.0, 2.0):tolist()[2] == 2)
  assert(shape(T.ones{ 3, 1 }:expand(3, 4)) == "3x4" and shape(T.ones{ 2 }:tile(3)) == "6" and shape(T.ones{ 2 }["repeat"](T.ones{ 2 }, 2, 2)) == "2x4")
  assert(not x:transpose(0, 2):is_contiguous() and x:transpose(0, 2):contiguous():is_contiguous())
end

function tests.elementwise_math()
  local x = T.tensor{ -1.0, 0.0, 2.0 }
  same(x:relu(), T.tensor{ 0.0, 0.0, 2.0 })
  same(x:abs(), T.tensor{ 1.0, 0.0, 2.0 })
  same(x:clamp(-0.5, 1.0), T.tensor{ -0.5, 0.0, 1.0 })
  same(x:clamp({ min = 0 }), x:relu())
  same(x:exp():log(), x, 1e-6)
  same(T.tensor{ 4.0 }:sqrt(), T.tensor{ 2.0 })
  same(T.tensor{ 4.0 }:rsqrt(), T.tensor{ 0.5 })
  same(x:softmax(-1):sum(), T.tensor(1.0))
  same(x:log_softmax(0):exp(), x:softmax(0))
  same(x:sigmoid(), 1 / (1 + (-x):exp()))
  same(x:silu(), x * x:sigmoid())
  same(x:tanh(), (x:exp() - (-x):exp()) / (x:exp() + (-x):exp()))
  assert(math.abs(T.tensor{ 1.0 }:gelu():item() - 0.8413447) < 1e-6)
  assert(math.abs(T.tensor{ 1.0 }:gelu("tanh"):item() - 0.8411920) < 1e-6)
  local y = x:clone()
  y:relu_()
  same(y, x:relu())
  y:fill_(3)
  assert(y:sum():item() == 9)
  y:zero_()
  assert(y:sum():item() == 0)
end

function tests.sorting_sampling_and_triangles()
  local x = T.tensor{ 3.0, 1.0, 2.0 }
  local values, indices = x:sort()
  assert(table.concat(values:tolist(), ",") == "1.0,2.0,3.0" and table.concat(indices:tolist(), ",") == "1,2,0")
  local top, at = x:topk(2)
  assert(top:tolist()[1] == 3 and at:tolist()[2] == 2)
  assert(table.concat(T.tensor{ 1, 2, 3 }:cumsum(0):tolist(), ",") == "1,3,6")
  mt.manual_seed(0)
  local draws = T.tensor{ 0.0, 1.0, 0.0 }:multinomial(5, true)
  assert(draws:eq(1):all():item(), "multinomial only draws where there is mass")
  assert(T.ones{ 3, 3 }:triu(1):sum():item() == 3 and T.ones{ 3, 3 }:tril():sum():item() == 6)
end

function tests.clock_and_memory()
  local t0 = mt.clock()
  local big = T.zeros{ 1000, 1000 }
  assert(mt.memory().tensor_bytes >= 4e6, "live tensor bytes are counted")
  assert(mt.memory().lua_bytes > 0)
  assert(mt.clock() >= t0)
  big:free()
end

function tests.values_come_back_as_lua_values()
  local l = T.tensor{ { 1, 2 }, { 3, 4 } }:tolist()
  assert(type(l) == "table" and l[2][1] == 3 and math.type(l[2][1]) == "integer")
  assert(math.type(T.tensor{ 1.5 }:tolist()[1]) == "float")
  assert(T.tensor{ true }:item() == true)
  assert(T.tensor(5):tolist() == 5)
  assert(T.tensor{ 2.5 }:item() == 2.5)
end

function tests.printing_like_pytorch()
  assert(tostring(T.tensor{ { 1.0, 2.0 }, { 3.0, 4.0 } }) == "tensor([[1., 2.],\n        [3., 4.]])")
  assert(tostring(T.tensor{ 1, 2, 3 }) == "tensor([1, 2, 3])")
  assert(tostring(T.ones({ 2 }, { dtype = "bf16" })) == "tensor([1., 1.], dtype=bfloat16)")
  assert(tostring(T.zeros({ 1 }, { requires_grad = true })) == "tensor([0.], requires_grad=True)")
  assert(tostring(T.tensor(0.5)) == "tensor(0.5000)")
end

function tests.conversions()
  local x = T.tensor{ 1.7, -2.2 }
  assert(x:long():tolist()[1] == 1 and x:to("int32"):dtype() == "int32")
  assert(x:to{ dtype = "float64" }:dtype() == "float64" and x:to("cpu"):device() == "cpu")
  assert(x:half():dtype() == "float16" and x:bfloat16():dtype() == "bfloat16" and x:double():dtype() == "float64")
  assert(x:device() == "cpu")
end

function tests.autograd()
  local a = T.tensor({ 1.0, 2.0, 3.0 }, { requires_grad = true })
  local y = (a * a):sum()
  y:backward({ retain_graph = true })
  same(a.grad, T.tensor{ 2.0, 4.0, 6.0 })
  y:backward()                                      -- the graph was kept: gradients accumulate
  same(a.grad, T.tensor{ 4.0, 8.0, 12.0 })
  a.grad:zero_()
  local z = a * 3
  z:backward(T.tensor{ 1.0, 0.0, 2.0 })             -- vector-Jacobian product
  same(a.grad, T.tensor{ 3.0, 0.0, 6.0 })
  assert(not a:detach():requires_grad())
  local n = mt.no_grad(function() return a * 2 end)
  assert(not n:requires_grad())
  assert(T.zeros{ 1 }.grad == nil)
end

function tests.manual_seed_is_reproducible()
  mt.manual_seed(42)
  local a, r = T.randn{ 5 }, math.random()
  mt.manual_seed(42)
  assert(a:equal(T.randn{ 5 }) and r == math.random())
end

function tests.save_and_load_safetensors()
  local path = os.tmpname() .. ".safetensors"
  local tensors = { a = T.randn{ 2, 3 }, b = T.tensor{ 1, 2 }, c = T.ones({ 2 }, { dtype = "bf16" }) }
  assert(mt.save(path, tensors) == true)
  local back = mt.load(path)
  for k, v in pairs(tensors) do assert(back[k]:equal(v) and back[k]:dtype() == v:dtype(), k) end
  os.remove(path)
  local missing, message = mt.load(path)
  assert(missing == nil and message:find("cannot open", 1, true), "a missing file is nil, message")
  local ok, err = mt.save("/nonexistent-dir/x.safetensors", tensors)
  assert(ok == nil and err:find("nonexistent", 1, true))
end

return tests

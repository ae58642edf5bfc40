-- The module system: built-in layers and modules written in Lua take part alike in
-- parameters(), named_parameters(), state_dict(), train()/eval(), to{}, freeze()/unfreeze(),
-- num_parameters{} and module(x).

local mt = require "moontune"
local T, nn, F = mt.tensor, mt.nn, mt.nn.functional

local tests = {}

-- A module written in a recipe: a child, a raw parameter and a buffer.
local Scaled = nn.module("Scaled")
function Scaled:init(d)
  self.inner = nn.linear(d, d)
  self:register_parameter("scale", T.ones{ d })
  self:register_buffer("calls", T.zeros{ 1 })
end
function Scaled:forward(x)
  self.calls:add_(1)
  return self.inner(x) * self.scale
end

-- Parameter names in tree order, as the handles from parameters() carry them.
local function names(m, opts)
  local out = {}
  for _, p in ipairs(m:parameters(opts)) do out[#out + 1] = p:param_name() end
  return table.concat(out, ",")
end

function tests.lua_modules_are_first_class()
  local m = nn.sequential(Scaled(3), function(x) return x:relu() end, nn.linear(3, 2))
  -- PyTorch's order: each module's own parameters, then its children's, depth first.
  assert(names(m) == "0.scale,0.inner.weight,0.inner.bias,2.weight,2.bias", names(m))
  assert(#m:parameters() == 5)
  assert(m:num_parameters() == 9 + 3 + 3 + 6 + 2)
  local y = m(T.randn{ 4, 3 })
  assert(table.concat(y:shape(), "x") == "4x2")
  local sd = m:state_dict()
  assert(sd["0.calls"]:item() == 1 and sd["2.bias"] ~= nil)
  y:sum():backward()
  for name, p in pairs(m:named_parameters()) do assert(p.grad ~= nil, name) end
end

function tests.freeze_unfreeze_and_trainable_filters()
  local m = Scaled(2)
  m.inner:freeze()
  assert(names(m, { trainable = true }) == "scale")
  assert(m:num_parameters{ trainable = true } == 2)
  m:unfreeze()
  assert(m:num_parameters{ trainable = true } == 8)
end

function tests.train_and_eval_reach_every_child()
  local m = nn.sequential(nn.dropout(0.5), nn.linear(2, 2))
  m:eval()
  assert(m["0"].training == false and m["1"].training == false)
  local x = T.ones{ 1000, 2 }
  assert(m["0"](x):equal(x), "dropout is the identity in eval mode")
  m:train()
  assert(not m["0"](x):equal(x))
end

function tests.state_dict_round_trip_and_to()
  local a, b = Scaled(3), Scaled(3)
  b:load_state_dict(a:state_dict())
  local x = T.randn{ 2, 3 }
  assert(a(x):equal(b(x)))
  local w = a.inner.weight
  a:to{ dtype = "float64" }
  assert(a.inner.weight:dtype() == "float64" and rawequal(w, a.inner.weight), "to keeps tensor identity")
  assert(a.calls:dtype() == "float64")
end

function tests.linear_initialisation_matches_pytorch_bounds()
  local l = nn.linear(100, 50)
  local bound = 1 / math.sqrt(100)
  assert(l.weight:abs():max():item() <= bound and l.bias:abs():max():item() <= bound)
  assert(l.weight:std():item() > bound / 2, "kaiming uniform spreads over the bound")
  assert(tostring(l) == "Linear(in_features=100, out_features=50, bias=true)")
  assert(nn.linear(2, 2, { bias = false }).bias == nil)
end

function tests.norms_embedding_and_attention()
  local x = T.randn{ 2, 5, 8 }
  local ln = nn.layer_norm(8)
  local y = ln(x)
  assert(y:mean(-1):abs():max():item() < 1e-5)
  local rms = nn.rms_norm(8, { eps = 1e-6 })
  local expected = x * (x:pow(2):mean(-1, true) + 1e-6):rsqrt()
  assert(rms(x):allclose(expected, { atol = 1e-5 }))
  local e = nn.embedding(10, 4, { padding_idx = 0 })
  assert(e.weight[0]:abs():sum():item() == 0)
  assert(table.concat(e(T.tensor{ { 1, 2, 0 } }):shape(), "x") == "1x3x4")
  local q = T.randn{ 1, 2, 4, 8 }
  local att = F.scaled_dot_product_attention(q, q, q, nil, { is_causal = true })
  local scores = q:matmul(q:transpose(-2, -1)) / math.sqrt(8)
  local mask = T.ones{ 4, 4 }:tril():eq(0)
  local manual = scores:masked_fill(mask, -math.huge):softmax(-1):matmul(q)
  assert(att:allclose(manual, { atol = 1e-5 }))
end

return tests

-- The foundation issue's contract example, as written, with what each line promises asserted.
local mt = require "moontune"
local T = mt.tensor
mt.manual_seed(0)
local x = T.randn{4, 3}
local w = T.zeros{3, 2}:requires_grad_()
local y = x:matmul(w):sum()
y:backward()
assert(w.grad:shape()[1] == 3 and w.grad:shape()[2] == 2)
local lin = mt.nn.linear(3, 2)
local out = lin(x)                                   -- same as lin:forward(x)
local opt = mt.optim.adamw(lin:parameters(), { lr = 1e-2, weight_decay = 0.01 })
local loss = mt.nn.functional.mse_loss(out, T.zeros{4, 2})
local before = lin.weight:clone()
opt:zero_grad(); loss:backward(); opt:step()
assert(not lin.weight:equal(before), "the optimizer step changed the weights")
assert(T.tensor{{1, 2, 3}, {4, 5, 6}}:sum(0):tolist()[3] == 9)
assert(mt.no_grad(function() return lin(x) end):requires_grad() == false)
assert(out:requires_grad() == true)
local p = os.tmpname() .. ".safetensors"
mt.save(p, { w = lin.weight }); assert(mt.load(p).w:equal(lin.weight)); os.remove(p)

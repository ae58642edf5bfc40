-- mt.autocast: ops in a lower precision for the length of a call, as torch.autocast.
local mt = require "moontune"
local expect = require "support.expect"

local tests = {}

function tests.autocast_runs_matmuls_in_bf16_and_refuses_float32()
  local a, b = mt.tensor.randn{ 4, 8 }, mt.tensor.randn{ 8, 2 }
  local c = mt.autocast("bf16", function() return a:matmul(b) end)
  assert(c:dtype() == "bfloat16")
  assert(a:matmul(b):dtype() == "float32", "autocast ends with the call")
  expect.raises(function() mt.autocast("float32", function() end) end, "autocast runs in bfloat16 or float16")
  expect.raises(function() mt.autocast("bf16", function() error("inside") end) end, "inside")
  assert(a:matmul(b):dtype() == "float32", "and after an error too")
end

return tests

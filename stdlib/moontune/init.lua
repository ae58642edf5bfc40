-- moontune: the module recipes get from `require "moontune"`.
-- The native bindings (moontune.core: tensor, optim, sched, save/load, ...) extended with the
-- Lua standard library: the nn module system (moontune.nn) and logging.

local mt = require "moontune.core"

-- A value as error messages show it ("number 1e300", "a tensor"), from the native nn table.
local describe = mt.nn.describe

mt.nn = require "moontune.nn"
require "moontune.checkpoint"
require "moontune.eval"
mt.cl = require "moontune.cl"

-- Function forms of the tensor methods, as torch.exp(x), torch.max(x, 1), torch.matmul(a, b):
-- mt.tensor.NAME(x, ...) is x:NAME(...).
for _, name in ipairs({
  "abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "silu", "square",
  "reciprocal", "neg", "softmax", "log_softmax", "sum", "mean", "max", "min", "argmax", "argmin", "std", "var",
  "norm", "all", "any", "matmul", "mm", "bmm", "outer", "baddbmm", "transpose", "permute", "reshape", "view",
  "squeeze", "unsqueeze", "flatten", "narrow", "chunk", "split", "index_select", "gather", "scatter",
  "masked_fill", "clamp", "pow", "add", "sub", "mul", "div", "eq", "ne", "lt", "le", "gt", "ge", "equal",
  "allclose", "logical_and", "logical_or", "logical_not", "topk", "sort", "cumsum", "tril", "triu",
  "multinomial", "clone", "detach", "numel", "t", "tile", "expand", "contiguous", "slice",
}) do
  if mt.tensor[name] == nil then
    mt.tensor[name] = function(x, ...)
      if not mt.tensor.is_tensor(x) then
        error(string.format("tensor.%s: expected a tensor as argument 1, got %s", name, describe(x)), 2)
      end
      return x[name](x, ...)
    end
  end
end

-- mt.log(fmt, ...): a formatted line to the run's log (the console, the TUI log pane).
function mt.log(fmt, ...)
  if select("#", ...) > 0 then
    if type(fmt) ~= "string" then
      error("mt.log: argument 1 (format): expected a string, got " .. describe(fmt), 2)
    end
    local ok, line = pcall(string.format, fmt, ...)
    if not ok then
      -- string.format's "bad argument #2 to 'format' (number expected, got string)", in mt.log's terms.
      error("mt.log: " .. tostring(line):gsub("bad argument #(%d+) to '[%w%.]+' %((.*)%)", "argument %1: %2"), 2)
    end
    print(line)
  else
    print(tostring(fmt))
  end
end

return mt

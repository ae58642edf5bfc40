-- Mistakes a recipe can make: each must raise a catchable Lua error whose message names the call
-- and what was wrong, and the process must keep running (the next case runs in the same VM).

local mt = require "moontune"
local T, F, nn = mt.tensor, mt.nn.functional, mt.nn

local x = T.randn{ 2, 3 }
local ids = T.tensor{ 0, 1 }

-- { what, function that makes the mistake, plain substrings the message must contain }
local cases = {
  { "matmul with mismatched shapes", function() return x:matmul(T.randn{ 2, 3 }) end, { "tensor.matmul", "2x3" } },
  { "unknown dtype", function() return T.zeros({ 2 }, { dtype = "float8" }) end, { "tensor.zeros", "unknown dtype 'float8'" } },
  { "unknown device", function() return T.zeros({ 2 }, { device = "tpu" }) end, { "tensor.zeros", "unknown device 'tpu'" } },
  { "cuda without CUDA", function() return x:to("cuda:7") end, { "tensor.to", "cuda:7" } },
  { "unknown option key", function() return T.zeros({ 2 }, { dtyp = "float32" }) end, { "tensor.zeros", "dtyp", "dtype" } },
  { "unknown optimizer option", function() return mt.optim.adamw({ T.zeros{ 2 }:requires_grad_() }, { learning_rate = 1 }) end, { "optim.adamw", "unknown option 'learning_rate' (accepted: lr, betas" } },
  { "an option of the wrong type", function() return mt.optim.adamw({ T.zeros{ 2 }:requires_grad_() }, { lr = "fast" }) end, { "optim.adamw", "option 'lr'", "fast" } },
  { "a method passed uncalled as a size", function() return mt.nn.linear(64, string.len) end, { "nn.linear: argument 2 (out_features) must be a positive integer, got a function", "must be called" } },
  { "a fractional size", function() return mt.nn.embedding(10.5, 4) end, { "nn.embedding: argument 1 (num_embeddings)", "10.5" } },
  { "an allocation too large", function() return T.zeros{ 1e12 } end, { "tensor.zeros", "out of memory", "TiB" } },
  { "an allocation larger than the machine (overcommitted, it would be killed later)", function() return T.zeros{ 1e5, 1e6 } end, { "tensor.zeros", "out of memory: tensor.zeros needs 372.5 GiB" } },
  { "a model larger than the machine", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 2^22, hidden_size = 2^15, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = 1 }) end, { "models.new", "out of memory: the model's parameters need more than" } },
  { "an out-of-memory error inside an op", function() return T.ones({ 1 }):expand(1e6, 1e6):contiguous() end, { "tensor.contiguous", "out of memory" } },
  { "backward on a non-scalar", function() local y = T.ones({ 2 }, { requires_grad = true }) * 2; y:backward() end, { "tensor.backward", "scalar outputs" } },
  { "backward without grad", function() T.ones{ 1 }:backward() end, { "tensor.backward", "does not require grad" } },
  { "backward gradient of wrong shape", function() local y = T.ones({ 2 }, { requires_grad = true }) * 2; y:backward(T.ones{ 3 }) end, { "tensor.backward", "shape" } },
  { "dim out of range", function() return x:sum(5) end, { "tensor.sum", "out of range" } },
  { "size dim out of range", function() return x:size(2) end, { "tensor.size", "out of range" } },
  { "index of the wrong dtype", function() return x:index_select(0, T.tensor{ 0.5 }) end, { "tensor.index_select", "int64" } },
  { "gather index out of bounds", function() return x:gather(1, T.tensor{ { 9 }, { 0 } }) end, { "tensor.gather", "out of bounds" } },
  { "row index out of range", function() return x[7] end, { "tensor.__index", "out of range" } },
  { "method on a freed tensor", function() local t = T.ones{ 2 }; t:free(); return t:sum() end, { "tensor.sum", "freed" } },
  { "freed tensor as an argument", function() local t = T.ones{ 3 }; t:free(); return x:matmul(t) end, { "tensor.matmul", "freed" } },
  { "method on a foreign value", function() return x.sum(42) end, { "sum" } },
  { "tensor argument that is not a tensor", function() return x:matmul("abc") end, { "tensor.matmul", "expected a tensor, got string 'abc'" } },
  { "ragged tensor data", function() return T.tensor{ { 1, 2 }, { 3 } } end, { "tensor.tensor", "ragged" } },
  { "non-numeric tensor data", function() return T.tensor{ 1, "two" } end, { "tensor.tensor", "string" } },
  { "view with incompatible size", function() return x:view(4, 2) end, { "tensor.view", "invalid" } },
  { "item of a multi-element tensor", function() return x:item() end, { "tensor.item", "6 elements" } },
  { "requires_grad on integers", function() return T.tensor{ 1, 2 }:requires_grad_() end, { "tensor.requires_grad_", "floating point" } },
  { "add with broadcast mismatch", function() return x + T.ones{ 4 } end, { "tensor.add", "size" } },
  { "cross_entropy with float targets", function() return F.cross_entropy(x, T.tensor{ 0.0, 1.0 }) end, { "nn.functional.cross_entropy", "int64" } },
  { "cross_entropy unknown reduction", function() return F.cross_entropy(x, ids, { reduction = "avg" }) end, { "cross_entropy", "unknown reduction 'avg'" } },
  { "mse_loss shape mismatch", function() return F.mse_loss(x, T.zeros{ 3, 2 }) end, { "nn.functional.mse_loss", "differ" } },
  { "linear with wrong input width", function() return mt.nn.linear(4, 2)(x) end, { "nn.functional.linear", "does not fit" } },
  { "embedding with float ids", function() return mt.nn.embedding(5, 2)(T.tensor{ 1.0 }) end, { "nn.functional.embedding", "integer" } },
  { "unknown nn option", function() return mt.nn.linear(2, 2, { biass = false }) end, { "nn.linear", "biass" } },
  { "dropout probability out of range", function() return F.dropout(x, 1.5) end, { "dropout", "[0, 1]" } },
  { "optimizer over no parameters", function() return mt.optim.sgd({}) end, { "optim.sgd", "empty" } },
  { "optimizer over integer tensors", function() return mt.optim.sgd({ T.tensor{ 1 } }) end, { "optim.sgd", "floating-point" } },
  { "negative learning rate", function() return mt.optim.adam({ T.zeros{ 1 }:requires_grad_() }, { lr = -1 }) end, { "optim.adam", "lr" } },
  { "nesterov without momentum", function() return mt.optim.sgd({ T.zeros{ 1 }:requires_grad_() }, { nesterov = true }) end, { "optim.sgd", "Nesterov" } },
  { "group that does not exist", function() return mt.optim.sgd({ T.zeros{ 1 }:requires_grad_() }):get_lr(3) end, { "optimizer.get_lr", "group 3" } },
  { "schedule without total", function() return mt.sched.linear(mt.optim.sgd({ T.zeros{ 1 }:requires_grad_() }), {}) end, { "sched.linear", "total" } },
  { "schedule option it does not use", function() return mt.sched.step(mt.optim.sgd({ T.zeros{ 1 }:requires_grad_() }), { step_size = 2, warmup = 5 }) end, { "sched.step", "no option 'warmup'", "step_size, gamma" } },
  { "training a tokenizer from a list", function() return mt.tokenizer.train_bpe({ "a b", "c" }) end, { "tokenizer.train_bpe", "named options" } },
  { "unknown parameter group field", function() return mt.optim.sgd({ T.zeros{ 1 }:requires_grad_() }):param_groups()[1].learning_rate end, { "param_group", "learning_rate", "lr, weight_decay" } },
  { "schedule on a non-optimizer", function() return mt.sched.constant(mt.nn.linear(1, 1).weight, {}) end, { "sched.constant", "optimizer" } },
  { "load_state_dict with missing keys", function() return mt.nn.linear(2, 2):load_state_dict({ weight = T.zeros{ 2, 2 } }) end, { "load_state_dict", "missing keys {bias}" } },
  { "load_state_dict with a wrong shape", function() return mt.nn.linear(2, 2):load_state_dict({ weight = T.zeros{ 3, 2 }, bias = T.zeros{ 2 } }) end, { "load_state_dict", "'weight'" } },
  { "save a non-tensor", function() return mt.save(os.tmpname(), { w = 3 }) end, { "save: 'w'", "expected a tensor" } },
  { "clamp without bounds", function() return x:clamp() end, { "tensor.clamp", "min and max" } },
  { "gelu with an unknown approximation", function() return x:gelu("fast") end, { "tensor.gelu", "'fast'" } },
  { "arange with a zero step", function() return T.arange(0, 5, 0) end, { "tensor.arange", "step" } },
  { "randint with low >= high", function() return T.randint(5, 5, { 2 }) end, { "tensor.randint", "low" } },
  { "cat of an empty list", function() return T.cat({}) end, { "tensor.cat", "non-empty" } },
  { "cat with a non-tensor", function() return T.cat({ x, 5 }) end, { "tensor.cat", "integer 5" } },
  { "attention with mismatched ranks", function() return F.scaled_dot_product_attention(T.randn{ 2, 3 }, T.randn{ 1, 2, 3 }, T.randn{ 2, 3 }) end, { "scaled_dot_product_attention", "rank" } },
  { "module without forward", function() local M = mt.nn.module("M"); return M()(x) end, { "M:forward is not defined" } },
  { "arange with too many elements", function() return T.arange(1e20) end, { "tensor.arange", "too many elements" } },
  { "arange with an inconsistent step", function() return T.arange(5, 0, 1) end, { "tensor.arange", "inconsistent" } },
  { "masked_fill with a mask of the wrong shape", function() return x:masked_fill(T.tensor{ true, false, true, false }, 0) end, { "tensor.masked_fill", "size" } },
  { "fill_ on a leaf that requires grad", function() return T.ones({ 2 }, { requires_grad = true }):fill_(3) end, { "tensor.fill_", "leaf" } },
  { "scatter with an index out of bounds", function() return x:scatter(1, T.tensor{ { 9 }, { 0 } }, 1.0) end, { "tensor.scatter", "out of bounds" } },
  { "std over a dim out of range", function() return x:std(3) end, { "tensor.std", "out of range" } },
  { "norm of an integer tensor", function() return T.tensor{ 3, 4 }:norm() end, { "tensor.norm", "floating-point" } },
  { "full with a negative size", function() return T.full({ -2 }, 1.5) end, { "tensor.full", "negative" } },
  { "assigning a string into a tensor row", function() x[0] = "a" end, { "tensor.__newindex" } },
  -- Reliability: each of these crashed or hung the process, or said nothing useful.
  { "tensor data that contains itself", function() local t = {}; t[1] = t; return T.tensor(t) end, { "tensor.tensor", "more than 64", "contain itself" } },
  { "tensor data nested 10^5 deep", function() local t = { 1 }; for _ = 1, 100000 do t = { t } end; return T.tensor(t) end, { "tensor.tensor", "more than 64" } },
  { "a config that contains itself", function() local c = { vocab_size = 8 }; c.self = c; return mt.models.new("LlamaForCausalLM", c) end, { "models.new", "config.self contains itself" } },
  { "a number of layers no model has", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, hidden_size = 8, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = 2^40 }) end, { "models.new", "'num_hidden_layers' must be an integer from 1 to 4096" } },
  { "no layers", function() return mt.models.new("Qwen2ForCausalLM", { vocab_size = 8, hidden_size = 8, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = -1 }) end, { "models.new", "num_hidden_layers", "got -1" } },
  { "a width of zero", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, hidden_size = 0, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = 1 }) end, { "models.new", "'hidden_size'", "got 0" } },
  { "integer weights", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, hidden_size = 8, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = 1 }, { dtype = "int64" }) end, { "models.new", "floating-point", "int64" } },
  { "a float where an integer goes", function() return x:narrow(0, 1.5, 1) end, { "tensor.narrow: argument 2: expected an integer, got number 1.5" } },
  { "nil where a string goes", function() return mt.tokenizer.train_bpe(nil) end, { "tokenizer.train_bpe: argument 1: expected a table, got nil" } },
  { "a method called with a dot", function() return x.sum() end, { "tensor.sum", "call it with ':'" } },
  { "a number overflowing an integer dtype in a range", function() return T.arange(0, 10, 1, { dtype = "bool" }) end, { "tensor.arange", "not implemented for 'Bool'" } },
  { "norm over a repeated dim", function() return x:norm(2, { 0, 0 }) end, { "tensor.norm", "dim 0 appears multiple times" } },
  { "var over a repeated dim", function() return x:var({ 1, 1 }) end, { "tensor.var", "appears multiple times" } },
  { "masked_fill with a value float32 cannot hold", function() return x:masked_fill(T.ones({ 2, 3 }):bool(), -1e300) end, { "tensor.masked_fill", "cannot be converted to type float" } },
  { "a tensor named __metadata__", function() return mt.save(os.tmpname(), { __metadata__ = x }) end, { "save", "__metadata__" } },
  -- Found by the fuzz suite: each named moontune's internals or another call.
  { "an in-place op with a string", function() return x:add_("a") end, { "tensor.add_:", "got string 'a'" } },
  { "a huge number shown short", function() return x:narrow(0, -1e300, 1) end, { "got number -1e300" } },
  { "a long string shown cut", function() return x:add(string.rep("x", 1000)) end, { "(1000 characters)" } },
  { "decode of ids that are not integers", function() local tok = mt.tokenizer.train_bpe{ files = { "tests/lua/misuse.lua" }, vocab_size = 300 }; return tok:decode({ 1, "a" }) end, { "tokenizer.decode", "element 2 is string 'a'" } },
  { "mt.log with a table as format", function() return mt.log({}, 1) end, { "mt.log: argument 1 (format): expected a string, got a table" } },
  { "mt.log with a missing value", function() return mt.log("%d and %d", 1) end, { "mt.log: argument 3" } },
  { "a tensor inside a model config", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, w = x }) end, { "models.new", "config.w: expected a number, string, boolean or table, got a tensor" } },
  { "a NaN in a model config", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, rope_theta = 0/0 }) end, { "models.new", "config.rope_theta: expected a finite number" } },
  { "layer options that are not a table", function() return nn.linear(2, 3, 5) end, { "nn.linear: the options must be a table", "got integer 5" } },
  { "a layer too large to allocate", function() return nn.linear(2, 2^62) end, { "nn.linear: tensor.empty: out of memory" } },
  { "a module list of numbers", function() return nn.module_list(3) end, { "nn.module_list: argument 1 (modules): expected a list of modules, got integer 3" } },
  { "a module list with a tensor in it", function() return nn.module_list({ nn.relu(), x }) end, { "nn.module_list", "element 2 must be a module, got a tensor" } },
  { "append of a number", function() return nn.module_list{}:append(2) end, { "nn.module_list.append: argument 1: expected a module, got integer 2" } },
  { "a module dict with a list", function() return nn.module_dict({ nn.relu() }) end, { "nn.module_dict", "got integer 1 = " } },
  { "a parameter named nil", function() return nn.Module():register_parameter(nil, x) end, { "register_parameter: the name must be a string, got nil" } },
  { "a dim that is a table", function() return nn.log_softmax({}) end, { "nn.log_softmax: the dim is required (an integer), got a table" } },
  { "a padding id outside the vocabulary", function() return mt.models.new("LlamaForCausalLM", { vocab_size = 8, hidden_size = 8, intermediate_size = 8, num_attention_heads = 2, num_hidden_layers = 1, pad_token_id = 1e12 }) end, { "models.new", "'pad_token_id' is 1000000000000, outside the vocabulary of 8 tokens" } },
  { "a fill value the dtype cannot hold", function() return T.full({ 2 }, 300, { dtype = "uint8" }) end, { "tensor.full", "value 300 cannot be converted to uint8 without overflow" } },
  { "a float32 fill past its range", function() return x:fill_(1e300) end, { "tensor.fill_", "value 1e300 cannot be converted to float32 without overflow" } },
  { "matching names that are not strings", function() return nn.matching({ "a" }, { "a", 3 }) end, { "nn.matching: argument 2 (names): element 2 must be a string, got integer 3" } },
}

local checked = 0
for _, case in ipairs(cases) do
  local name, fn, patterns = case[1], case[2], case[3]
  local ok, err = pcall(fn)
  if ok then error(string.format("'%s' did not raise", name)) end
  local message = tostring(err)
  -- A message is for the user: libtorch's C++ backtrace never reaches it.
  if message:find("frame #", 1, true) or message:find("Exception raised from", 1, true) then
    error(string.format("'%s': the message carries C++ backtrace text:\n%s", name, message))
  end
  for _, p in ipairs(patterns) do
    if not message:find(p, 1, true) then
      error(string.format("'%s': message lacks %q:\n%s", name, p, message))
    end
  end
  checked = checked + 1
end
assert(checked >= 30, "fewer than 30 misuse cases")
-- The VM still works after all of them.
assert(T.ones{ 2 }:sum():item() == 2)
print(string.format("misuse: %d mistakes each raised a clear error", checked))

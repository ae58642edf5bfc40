-- moontune.nn: modules as Lua objects, in the manner of torch.nn.
--
-- A module is a table whose class derives from nn.Module. Parameters are declared with
-- self:register_parameter(name, tensor) (buffers with register_buffer); any module assigned
-- to a field becomes a child — a Lua module, or a loaded model (mt.models.load) or any of its
-- submodules. Lua modules and loaded models answer the same methods with the same return
-- types, and the tree walks straight through both:
--   named_parameters{ trainable = } / named_modules() / state_dict()  → tables keyed by name
--   parameters{ trainable = }                                          → a sequence, tree order
--   get_submodule(name), freeze(pattern?), unfreeze(pattern?), train(mode?), eval(),
--   to{ dtype =, device = }, load_state_dict(sd, { strict = }), num_parameters{ trainable = },
--   apply(fn), zero_grad(), register_forward_hook(pattern, fn) → handle with :remove()
-- Parameter handles carry their name in the tree, which optimizers key their state by. A
-- pattern is a list of names (matched by suffix at a dot boundary) or a Lua pattern over the
-- whole name; freeze and hooks use the same matcher as loaded models. A module reachable twice
-- (shared, or through a cycle) is visited once.
--
--   local MLP = nn.module("MLP")
--   function MLP:init(d_in, d_hidden)
--     self.fc1 = nn.linear(d_in, d_hidden)        -- a child
--     self.fc2 = nn.linear(d_hidden, d_in)
--     self:register_parameter("scale", T.ones{ d_in })
--   end
--   function MLP:forward(x) return self.fc2(self.fc1(x):relu()) * self.scale end
--   local m = MLP(4, 16)                          -- m(x) is m:forward(x)

local core = require "moontune.core"
local T = core.tensor
local native = core.nn   -- moontune's init.lua puts this module at mt.nn: keep the native one
local F = native.functional

local nn = { functional = F, init = native.init }

-- A value as error messages show it: "number 1e300", "string 'ab'", "a tensor", "a table".
local describe = native.describe

local function is_lua_module(v)
  -- getmetatable gives a table's `__metatable` field when it has one (anything, `false` too).
  local meta = type(v) == "table" and getmetatable(v)
  return type(meta) == "table" and rawget(meta, "__is_module") == true
end

local function is_module(v)
  return is_lua_module(v) or native.is_native_module(v)
end
nn.is_module = is_module

-- nn.matching(pattern, names): the names a pattern picks (a list of names by suffix at a dot
-- boundary, or a Lua pattern over the whole name), in order; picking none is an error.
function nn.matching(pattern, names)
  return native.select_names("nn.matching", pattern, names)
end

local Module = {}   -- made a module class below (module_class)
nn.Module = Module

-- Fields assigned for the first time: modules become children (in assignment order).
local function newindex(self, key, value)
  if is_module(value) then
    local children = rawget(self, "_children")
    children[#children + 1] = key
  end
  rawset(self, key, value)
end

-- Runs the forward hooks of a Lua module on its output; a hook that returns a value replaces it.
local function run_hooks(self, hooks, input, output, ...)
  for _, h in ipairs(hooks) do
    local replaced = h.fn(self, input, output, h.name)
    if replaced ~= nil then output = replaced end
  end
  return output, ...
end

-- Calling a class makes an instance: Class(...) is Class.new(...).
local function construct(class, ...) return class.new(...) end

-- Makes `class` a module class: instances get its methods, register children on assignment,
-- run forward and the hooks when called, and are made by class.new(...), which runs :init.
local function module_class(class, name)
  class.__name = name
  class.__index = class
  class.__newindex = newindex
  class.__is_module = true
  class.__call = function(self, ...)
    local hooks = rawget(self, "_forward_hooks")
    if hooks == nil then return self:forward(...) end
    return run_hooks(self, hooks, (...), self:forward(...))
  end
  class.new = function(...)
    local self = setmetatable({ _params = {}, _buffers = {}, _children = {} }, class)
    rawset(self, "training", true)
    if class.init then class.init(self, ...) end
    return self
  end
  return class
end

-- nn.Module itself is a class: nn.Module() is an empty module to assign children to.
module_class(setmetatable(Module, { __call = construct }), "Module")

-- nn.module(name, parent?): a new module class. Define :init(...) and :forward(...) on it;
-- calling the class makes an instance, calling an instance runs forward (and its hooks).
function nn.module(name, parent)
  if type(name) ~= "string" then error("nn.module: argument 1 (name): expected a class name (a string), got " .. describe(name), 2) end
  if parent ~= nil and not (type(parent) == "table" and rawget(parent, "__is_module")) then
    error("nn.module: argument 2 (parent): expected a module class, got " .. describe(parent), 2)
  end
  local class = setmetatable({}, { __index = parent or Module, __call = construct })
  class.__tostring = Module.__tostring
  return module_class(class, name)
end

function Module:forward()
  error(string.format("%s:forward is not defined", self.__name), 2)
end

-- A parameter's or buffer's name: a string.
local function check_name(self, call, name)
  if type(name) ~= "string" then
    error(string.format("%s:%s: the name must be a string, got %s", self.__name, call, describe(name)), 3)
  end
end

function Module:register_parameter(name, t)
  check_name(self, "register_parameter", name)
  if not T.is_tensor(t) then
    error(string.format("%s:register_parameter('%s'): expected a tensor, got %s", self.__name, name, describe(t)), 2)
  end
  t:requires_grad_(true)
  table.insert(self._params, name)
  rawset(self, name, t)
  return t
end

function Module:register_buffer(name, t)
  check_name(self, "register_buffer", name)
  if not T.is_tensor(t) then
    error(string.format("%s:register_buffer('%s'): expected a tensor, got %s", self.__name, name, describe(t)), 2)
  end
  table.insert(self._buffers, name)
  rawset(self, name, t)
  return t
end

-- Iterates (name, child) over direct children, in registration order.
function Module:named_children()
  local i = 0
  return function()
    i = i + 1
    local name = self._children[i]
    if name ~= nil then return name, self[name] end
  end
end

local function qualified(prefix, name)
  if prefix == "" then return tostring(name) end
  if name == "" then return prefix end
  return prefix .. "." .. tostring(name)
end

-- Calls fn(prefix, module) for this module and every Lua module under it, depth first, each
-- once; a loaded model's module is passed to fn but not walked into (it walks itself).
local function walk(m, prefix, fn, seen)
  seen = seen or {}
  if seen[m] then return end
  seen[m] = true
  fn(prefix, m)
  if not is_lua_module(m) then return end
  for name, child in m:named_children() do
    if is_module(child) then walk(child, qualified(prefix, name), fn, seen) end
  end
end

-- A sequence of { name, tensor } for parameters (or buffers), in tree order.
local function collect(m, list_field)
  local out = {}
  walk(m, "", function(prefix, mod)
    if is_lua_module(mod) then
      for _, name in ipairs(mod[list_field]) do
        local t = mod[name]
        if t ~= nil then out[#out + 1] = { qualified(prefix, name), t } end
      end
    elseif list_field == "_params" then
      -- A loaded model lists its parameters in order, each carrying its name in the model.
      local own = mod:name()
      local cut = own == "" and 1 or #own + 2
      for _, p in ipairs(mod:parameters()) do
        out[#out + 1] = { qualified(prefix, p:param_name():sub(cut)), p }
      end
    end
  end)
  return out
end

local function check_options(call, opts, accepted)
  if opts == nil then return {} end
  if type(opts) ~= "table" or is_module(opts) then
    error(string.format("%s: the options must be a table ({ %s = ... }), got %s", call, accepted[1], describe(opts)), 0)
  end
  local ok = {}
  for _, k in ipairs(accepted) do ok[k] = true end
  for k in pairs(opts) do
    if not ok[k] then
      error(string.format("%s: unknown option '%s' (accepted: %s)", call, tostring(k), table.concat(accepted, ", ")), 3)
    end
  end
  return opts
end

-- The parameters as { name, handle } in tree order; { trainable = true } filters.
local function parameter_list(m, call, opts)
  opts = check_options(call, opts, { "trainable" })
  local out = {}
  for _, entry in ipairs(collect(m, "_params")) do
    if not opts.trainable or entry[2]:requires_grad() then
      out[#out + 1] = { entry[1], native.named_parameter(entry[2], entry[1]) }
    end
  end
  return out
end

-- name -> parameter (each handle carries its name).
function Module:named_parameters(opts)
  local out = {}
  for _, entry in ipairs(parameter_list(self, "named_parameters", opts)) do out[entry[1]] = entry[2] end
  return out
end

-- A sequence of parameters in tree order (pass it to an optimizer); { trainable = true } filters.
function Module:parameters(opts)
  local out = {}
  for _, entry in ipairs(parameter_list(self, "parameters", opts)) do out[#out + 1] = entry[2] end
  return out
end

-- name -> buffer.
function Module:named_buffers()
  local out = {}
  for _, entry in ipairs(collect(self, "_buffers")) do out[entry[1]] = entry[2] end
  return out
end

-- name -> module, this one under "" (a loaded model's submodules included).
function Module:named_modules()
  local out = {}
  walk(self, "", function(prefix, mod)
    if is_lua_module(mod) then
      out[prefix] = mod
    else
      for name, sub in pairs(mod:named_modules()) do out[qualified(prefix, name)] = sub end
    end
  end)
  return out
end

-- The module at a dotted path ("" is this one).
function Module:get_submodule(name)
  if type(name) ~= "string" then error("get_submodule: expected a name (string)", 2) end
  local m, walked = self, ""
  for part in name:gmatch("[^.]+") do
    if not is_lua_module(m) then
      return m:get_submodule(name:sub(#walked + (walked == "" and 1 or 2)))
    end
    local child = rawget(m, part)
    if not is_module(child) then
      local names = {}
      for n in m:named_children() do names[#names + 1] = tostring(n) end
      error(string.format("get_submodule: %s has no submodule '%s' (it has: %s)",
        walked == "" and "the module" or ("'" .. walked .. "'"), part, #names > 0 and table.concat(names, ", ") or "none"), 2)
    end
    m, walked = child, qualified(walked, part)
  end
  return m
end

-- name -> tensor for all parameters and buffers.
function Module:state_dict()
  local sd = {}
  for name, p in pairs(self:named_parameters()) do sd[name] = p end
  for name, b in pairs(self:named_buffers()) do sd[name] = b end
  return sd
end

-- Copies tensors into parameters and buffers by name. With strict (the default) missing and
-- unexpected names are errors; shapes must match. Returns the missing and unexpected names.
function Module:load_state_dict(sd, opts)
  opts = check_options("load_state_dict", opts, { "strict" })
  local strict = opts.strict ~= false
  local own = self:state_dict()
  local missing, unexpected = {}, {}
  for name in pairs(own) do if sd[name] == nil then missing[#missing + 1] = name end end
  for name in pairs(sd) do if own[name] == nil then unexpected[#unexpected + 1] = name end end
  table.sort(missing); table.sort(unexpected)
  if strict and (#missing > 0 or #unexpected > 0) then
    error(string.format("load_state_dict: missing keys {%s}, unexpected keys {%s}",
      table.concat(missing, ", "), table.concat(unexpected, ", ")), 2)
  end
  for name, t in pairs(own) do
    local src = sd[name]
    if src ~= nil then
      local a, b = table.concat(t:shape(), "x"), table.concat(src:shape(), "x")
      if a ~= b then
        error(string.format("load_state_dict: '%s' has shape [%s] here, [%s] in the state dict", name, a, b), 2)
      end
    end
  end
  core.no_grad(function()
    for name, t in pairs(own) do
      local src = sd[name]
      if src ~= nil then t:copy_(src) end
    end
  end)
  return missing, unexpected
end

function Module:num_parameters(opts)
  local n = 0
  for _, p in ipairs(self:parameters(opts)) do n = n + p:numel() end
  return n
end

function Module:train(mode)
  if mode == nil then mode = true end
  walk(self, "", function(_, m)
    if is_lua_module(m) then rawset(m, "training", mode) else m:train(mode) end
  end)
  return self
end

function Module:eval() return self:train(false) end

-- Sets requires_grad on the parameters the pattern picks (all without one).
local function set_trainable(self, call, pattern, flag)
  local list = parameter_list(self, call)
  local names = {}
  for i, entry in ipairs(list) do names[i] = entry[1] end
  local picked = {}
  for _, name in ipairs(native.select_names(call, pattern, names, true)) do picked[name] = true end
  for _, entry in ipairs(list) do
    if picked[entry[1]] then entry[2]:requires_grad_(flag) end
  end
  return self
end

-- freeze(pattern?): stop training the parameters the pattern picks — by their names or the
-- name of a module holding them (all without a pattern).
function Module:freeze(pattern) return set_trainable(self, "freeze", pattern, false) end

function Module:unfreeze(pattern) return set_trainable(self, "unfreeze", pattern, true) end

-- zero_grad{ set_to_none = true }: unsets every gradient (PyTorch's default), or zeroes them.
function Module:zero_grad(opts)
  opts = check_options("zero_grad", opts, { "set_to_none" })
  for _, p in ipairs(self:parameters()) do
    if opts.set_to_none == false then
      local g = p.grad
      if g ~= nil then g:zero_() end
    else
      p.grad = nil
    end
  end
  return self
end

-- Moves or converts every parameter and buffer in place (tensors keep their identity, so an
-- optimizer made before still holds them): m:to{ dtype = "bf16", device = "cuda" }.
function Module:to(opts)
  if type(opts) == "string" then opts = native.placement(opts) end
  check_options("to", opts, { "dtype", "device" })
  core.no_grad(function()
    walk(self, "", function(_, m)
      if not is_lua_module(m) then m:to(opts); return end
      for _, list in ipairs({ m._params, m._buffers }) do
        for _, name in ipairs(list) do
          local t = m[name]
          local conv = { device = opts.device }
          if opts.dtype and t:dtype():match("^b?float") then conv.dtype = opts.dtype end
          t:set_data(t:to(conv))
        end
      end
    end)
  end)
  return self
end

-- Calls fn(module) on every module of the tree (a loaded model's submodules included).
function Module:apply(fn)
  for _, m in pairs(self:named_modules()) do fn(m) end
  return self
end

-- register_forward_hook(pattern, fn): fn(module, input, output, name) runs after the forward of
-- every module whose name the pattern picks ("" is this module); returning a value replaces
-- the output. Returns a handle whose :remove() takes the hooks off.
function Module:register_forward_hook(pattern, fn)
  if type(fn) ~= "function" then error("register_forward_hook: expected a function", 2) end
  local modules = self:named_modules()
  local names = {}
  for name in pairs(modules) do names[#names + 1] = name end
  table.sort(names)
  local removers = {}
  for _, name in ipairs(native.select_names("register_forward_hook", pattern, names)) do
    local m = modules[name]
    if is_lua_module(m) then
      local hooks = rawget(m, "_forward_hooks") or {}
      local entry = { fn = fn, name = name }
      hooks[#hooks + 1] = entry
      rawset(m, "_forward_hooks", hooks)
      removers[#removers + 1] = function()
        local list = rawget(m, "_forward_hooks") or {}
        for i, e in ipairs(list) do if e == entry then table.remove(list, i) break end end
        if #list == 0 then rawset(m, "_forward_hooks", nil) end
      end
    else
      local handle = m:register_forward_hook("", function(mod, input, output) return fn(mod, input, output, name) end)
      removers[#removers + 1] = function() handle:remove() end
    end
  end
  return { remove = function() for _, r in ipairs(removers) do r() end removers = {} end }
end

function Module:extra_repr() return "" end

function Module.__tostring(self)
  local lines = { string.format("%s(%s", self.__name, self:extra_repr()) }
  local any = false
  for name, child in self:named_children() do
    any = true
    local text = tostring(child):gsub("\n", "\n  ")
    lines[#lines + 1] = string.format("  (%s): %s", tostring(name), text)
  end
  if any then
    return table.concat(lines, "\n") .. "\n)"
  end
  return lines[1] .. ")"
end

local function placement(opts)
  return { dtype = opts.dtype, device = opts.device }
end

-- Runs a layer constructor's allocation, f(...): a failure (out of memory, a bad dtype) names
-- the layer's call as well as the tensor call that failed.
local function allocating(call, f, ...)
  local ok, result = pcall(f, ...)
  if not ok then error(call .. ": " .. tostring(result), 0) end
  return result
end

-- A size argument of a layer's constructor: a positive integer, or an error naming the call,
-- the argument and what was given (with a hint when it is a method that was not called).
local function size_arg(call, position, name, v)
  if math.type(v) == "integer" and v > 0 then return v end
  if type(v) == "number" and v > 0 and v == math.floor(v) then return math.tointeger(v) end
  local given = describe(v)
  local hint = type(v) == "function" and " (a method such as tok.vocab_size must be called: tok:vocab_size())" or ""
  error(string.format("%s: argument %d (%s) must be a positive integer, got %s%s", call, position, name, given, hint), 4)
end

-- A normalized shape: a positive integer or a sequence of them.
local function shape_arg(call, s)
  if type(s) ~= "table" then return { size_arg(call, 1, "normalized_shape", s) } end
  local out = {}
  for i, d in ipairs(s) do out[i] = size_arg(call, 1, "normalized_shape[" .. i .. "]", d) end
  return out
end

-- Linear: y = x Wᵀ + b, W (out, in) initialised as torch.nn.Linear (kaiming uniform, a = √5).
local Linear = nn.module("Linear")
nn.Linear = Linear

function Linear:init(in_features, out_features, opts)
  opts = check_options("nn.linear", opts, { "bias", "dtype", "device" })
  in_features = size_arg("nn.linear", 1, "in_features", in_features)
  out_features = size_arg("nn.linear", 2, "out_features", out_features)
  self.in_features, self.out_features = in_features, out_features
  local w = allocating("nn.linear", T.empty, { out_features, in_features }, placement(opts))
  nn.init.kaiming_uniform_(w, { a = math.sqrt(5) })
  self:register_parameter("weight", w)
  if opts.bias ~= false then
    local b = allocating("nn.linear", T.empty, { out_features }, placement(opts))
    nn.init.uniform_fan_in_(b, in_features)
    self:register_parameter("bias", b)
  end
end

function Linear:forward(x) return F.linear(x, self.weight, self.bias) end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features, tostring(self.bias ~= nil))
end

-- Embedding: rows of a (num, dim) table, initialised N(0, 1); the padding row is zero.
local Embedding = nn.module("Embedding")
nn.Embedding = Embedding

function Embedding:init(num_embeddings, embedding_dim, opts)
  opts = check_options("nn.embedding", opts, { "padding_idx", "dtype", "device" })
  num_embeddings = size_arg("nn.embedding", 1, "num_embeddings", num_embeddings)
  embedding_dim = size_arg("nn.embedding", 2, "embedding_dim", embedding_dim)
  self.num_embeddings, self.embedding_dim, self.padding_idx = num_embeddings, embedding_dim, opts.padding_idx
  local w = allocating("nn.embedding", T.randn, { num_embeddings, embedding_dim }, placement(opts))
  if opts.padding_idx ~= nil then w[opts.padding_idx] = 0 end
  self:register_parameter("weight", w)
end

function Embedding:forward(ids) return F.embedding(ids, self.weight, self.padding_idx) end

function Embedding:extra_repr() return string.format("%d, %d", self.num_embeddings, self.embedding_dim) end

-- LayerNorm over the trailing shape, with weight (ones) and bias (zeros) as torch.nn.LayerNorm.
local LayerNorm = nn.module("LayerNorm")
nn.LayerNorm = LayerNorm

function LayerNorm:init(shape, opts)
  opts = check_options("nn.layer_norm", opts, { "eps", "elementwise_affine", "bias", "dtype", "device" })
  self.normalized_shape, self.eps = shape_arg("nn.layer_norm", shape), opts.eps or 1e-5
  if opts.elementwise_affine ~= false then
    self:register_parameter("weight", allocating("nn.layer_norm", T.ones, self.normalized_shape, placement(opts)))
    if opts.bias ~= false then self:register_parameter("bias", allocating("nn.layer_norm", T.zeros, self.normalized_shape, placement(opts))) end
  end
end

function LayerNorm:forward(x) return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps) end

function LayerNorm:extra_repr() return string.format("{%s}, eps=%g", table.concat(self.normalized_shape, ", "), self.eps) end

-- RMSNorm over the trailing shape, weight ones, as torch.nn.RMSNorm (eps nil = dtype epsilon).
local RMSNorm = nn.module("RMSNorm")
nn.RMSNorm = RMSNorm

function RMSNorm:init(shape, opts)
  opts = check_options("nn.rms_norm", opts, { "eps", "elementwise_affine", "dtype", "device" })
  self.normalized_shape, self.eps = shape_arg("nn.rms_norm", shape), opts.eps
  if opts.elementwise_affine ~= false then
    self:register_parameter("weight", allocating("nn.rms_norm", T.ones, self.normalized_shape, placement(opts)))
  end
end

function RMSNorm:forward(x) return F.rms_norm(x, self.normalized_shape, self.weight, self.eps) end

function RMSNorm:extra_repr() return string.format("{%s}, eps=%s", table.concat(self.normalized_shape, ", "), tostring(self.eps)) end

-- Dropout: zeroes elements with probability p while training, scaling the rest by 1/(1-p).
local Dropout = nn.module("Dropout")
nn.Dropout = Dropout

function Dropout:init(p)
  self.p = p or 0.5
  if type(self.p) ~= "number" or self.p < 0 or self.p > 1 then
    error("nn.dropout: p must be a number in [0, 1], got " .. describe(p), 3)
  end
end

function Dropout:forward(x) return F.dropout(x, self.p, self.training) end

function Dropout:extra_repr() return string.format("p=%g", self.p) end

-- Sequential: applies its layers in order. Layers are modules or plain functions of one tensor;
-- module layers are children named by their 0-based position ("0", "1", ...), as in PyTorch,
-- so state dict keys match torch.nn.Sequential's.
local Sequential = nn.module("Sequential")
nn.Sequential = Sequential

function Sequential:init(...)
  local layers = { ... }
  if #layers == 1 and type(layers[1]) == "table" and not is_module(layers[1]) then layers = layers[1] end
  rawset(self, "_layers", layers)
  for i, layer in ipairs(layers) do
    if is_module(layer) then
      self[tostring(i - 1)] = layer
    elseif type(layer) ~= "function" then
      error(string.format("nn.sequential: layer %d is neither a module nor a function", i), 3)
    end
  end
end

function Sequential:forward(x)
  for _, layer in ipairs(self._layers) do x = layer(x) end
  return x
end

function Sequential:__len() return #self._layers end

-- Activation modules (no parameters): nn.relu(), nn.gelu(approximate?), nn.silu(), nn.tanh(),
-- nn.sigmoid(), nn.softmax(dim), nn.log_softmax(dim), as torch.nn.ReLU and friends.
local function activation(class_name, method, arg_name)
  local class = nn.module(class_name)
  function class:init(arg)
    if arg_name == "dim" and math.type(arg) ~= "integer" then
      error(string.format("nn.%s: the dim is required (an integer), got %s", method, describe(arg)), 4)
    end
    self.arg = arg
  end
  function class:forward(x) return x[method](x, self.arg) end
  function class:extra_repr() return self.arg ~= nil and string.format("%s=%s", arg_name, tostring(self.arg)) or "" end
  nn[class_name] = class
  nn[method] = class.new
end
activation("ReLU", "relu")
activation("GELU", "gelu", "approximate")
activation("SiLU", "silu")
activation("Tanh", "tanh")
activation("Sigmoid", "sigmoid")
activation("Softmax", "softmax", "dim")
activation("LogSoftmax", "log_softmax", "dim")

-- ModuleList: modules held in order, named "0", "1", … as in PyTorch (so state dicts match);
-- ml[i] is the i-th, 0-based like a PyTorch index; #ml counts them; ml:modules() is a plain
-- 1-based Lua sequence of them (for ipairs); ml:append(m) adds one.
local ModuleList = nn.module("ModuleList")
nn.ModuleList = ModuleList

function ModuleList:init(modules)
  rawset(self, "_count", 0)
  if modules ~= nil and (type(modules) ~= "table" or is_module(modules)) then
    error("nn.module_list: argument 1 (modules): expected a list of modules, got " .. describe(modules), 3)
  end
  for i, m in ipairs(modules or {}) do
    if not is_module(m) then
      error(string.format("nn.module_list: argument 1 (modules): element %d must be a module, got %s", i, describe(m)), 3)
    end
    self:append(m)
  end
end

function ModuleList:append(m)
  if not is_module(m) then error("nn.module_list.append: argument 1: expected a module, got " .. describe(m), 2) end
  local n = rawget(self, "_count")
  self[tostring(n)] = m
  rawset(self, "_count", n + 1)
  return self
end

function ModuleList:modules()
  local out = {}
  for i = 0, rawget(self, "_count") - 1 do out[#out + 1] = rawget(self, tostring(i)) end
  return out
end

function ModuleList:forward()
  error("nn.module_list has no forward: call its modules (ml:modules())", 2)
end

ModuleList.__len = function(self) return rawget(self, "_count") end
ModuleList.__index = function(self, key)
  if math.type(key) == "integer" then return rawget(self, tostring(key)) end
  return ModuleList[key]
end

-- ModuleDict: modules by name (md.name, md:named_children()), as torch.nn.ModuleDict.
local ModuleDict = nn.module("ModuleDict")
nn.ModuleDict = ModuleDict

function ModuleDict:init(modules)
  if modules ~= nil and (type(modules) ~= "table" or is_module(modules)) then
    error("nn.module_dict: argument 1 (modules): expected a table of name = module, got " .. describe(modules), 3)
  end
  local names = {}
  for name, m in pairs(modules or {}) do
    if type(name) ~= "string" or not is_module(m) then
      error(string.format("nn.module_dict: argument 1 (modules): expected a table of name = module, got %s = %s", describe(name), describe(m)), 3)
    end
    names[#names + 1] = name
  end
  table.sort(names)
  for _, name in ipairs(names) do
    self[name] = modules[name]
  end
end

function ModuleDict:forward()
  error("nn.module_dict has no forward: call its modules by name", 2)
end

nn.module_list = ModuleList.new
nn.module_dict = ModuleDict.new
nn.linear = Linear.new
nn.embedding = Embedding.new
nn.layer_norm = LayerNorm.new
nn.rms_norm = RMSNorm.new
nn.dropout = Dropout.new
nn.sequential = Sequential.new

return nn

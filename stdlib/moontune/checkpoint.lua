-- moontune.checkpoint: a recipe's state saved into a checkpoint directory and restored from it.
--
-- What is saved, walking `state`: numbers, strings, booleans and tensors, and tables of them;
-- loaded models through the tensors not owned by the frozen base (trainable ones, every
-- adapter's, and base weights changed in place since they were loaded: a merged adapter, a
-- teacher copied from the student; keyed by tree name) with their adapters' and fusions' configs and
-- the active composition, so that adapters made during the
-- run are made again on load before their weights are copied in; Lua nn modules through their
-- state dicts; optimizers and schedules through theirs; data iterators through their positions;
-- and every random stream (libtorch's CPU and CUDA generators, math.random). Functions,
-- tokenizers, datasets and other native objects are left to `setup`, which makes them again.
-- The native part (random states, the atomic directory write) is mt.checkpoint in src/lua.
local mt = require "moontune.core"
local C = mt.checkpoint

local FORMAT, VERSION = "moontune-checkpoint", 1
local TENSORS, MANIFEST = "tensors.safetensors", "checkpoint.json"

local function number_node(x)
  if math.type(x) == "integer" then return x end
  if x ~= x then return { float = "nan" } end
  if x == math.huge then return { float = "inf" } end
  if x == -math.huge then return { float = "-inf" } end
  return x
end

-- A file-system-safe form of a state path, for the folder of a model's adapters.
local function folder(path)
  return (path:gsub("[^%w%._-]", "_"))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do
    if type(k) == "string" or math.type(k) == "integer" then keys[#keys + 1] = k end
  end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  return keys
end

local walk

-- An adapter setup (`{ block = "Fuse", "a", "b" }`, a name, or nil) in a form JSON keeps
-- (children apart from the block's fields), and back.
local function setup_to_json(s)
  if type(s) ~= "table" then return s end
  local children = {}
  for i, c in ipairs(s) do children[i] = setup_to_json(c) end
  return { block = s.block, children = children, batch_sizes = s.batch_sizes, weights = s.weights }
end

local function setup_from_json(s)
  if type(s) ~= "table" then return s end
  local out = { block = s.block, batch_sizes = s.batch_sizes, weights = s.weights }
  for i, c in ipairs(s.children or {}) do out[i] = setup_from_json(c) end
  return out
end

local function model_node(m, path, ctx)
  local names, seen = {}, {}
  for _, which in ipairs({ { trainable = true }, { owner = "adapters" }, { changed = true } }) do
    for name, p in pairs(m:named_parameters(which)) do
      if not seen[name] then
        seen[name] = true
        names[#names + 1] = name
        ctx.tensors[path .. "/" .. name] = p
      end
    end
  end
  table.sort(names)
  local adapters, trainable = {}, {}
  for _, a in ipairs(m:adapters()) do
    local dir = ctx.dir .. "/adapters/" .. folder(path) .. "/" .. a.name
    local ok, err = m:save_adapter(dir, { name = a.name })
    if not ok then error("checkpoint.save: " .. tostring(err), 0) end
    adapters[#adapters + 1] = { name = a.name, method = a.method, trainable = a.trainable > 0 }
    if a.trainable > 0 then trainable[#trainable + 1] = a.name end
  end
  -- Fusions (AdapterHub's files), saved after the adapters they fuse; trainable ones listed
  -- with the adapters that train.
  local fusions = {}
  for _, f in ipairs(m:fusions()) do
    local dir = ctx.dir .. "/adapters/" .. folder(path) .. "/fusion-" .. f.name
    local ok, err = m:save_adapter(dir, { name = f.name })
    if not ok then error("checkpoint.save: " .. tostring(err), 0) end
    fusions[#fusions + 1] = { name = f.name, temperature = f.temperature }
    if f.trainable then trainable[#trainable + 1] = f.name end
  end
  local active = #adapters > 0 and m:active_adapters() or {}
  return { model = path, names = names, adapters = adapters, fusions = fusions, setup = setup_to_json(m:active_setup()), active = active, trainable_adapters = trainable }
end

function walk(v, path, ctx)
  local t = type(v)
  if t == "number" then return number_node(v) end
  if t == "string" or t == "boolean" then return v end
  if t == "table" then
    if ctx.seen[v] then
      ctx.skipped[#ctx.skipped + 1] = path .. " (a table already saved at " .. ctx.seen[v] .. ")"
      return nil
    end
    ctx.seen[v] = path
    if mt.nn.is_module and mt.nn.is_module(v) then
      local names = {}
      for name, tensor in pairs(v:state_dict()) do
        names[#names + 1] = name
        ctx.tensors[path .. "/" .. name] = tensor
      end
      table.sort(names)
      return { module = path, names = names }
    end
    local items = {}
    for _, k in ipairs(sorted_keys(v)) do
      local node = walk(v[k], path .. "." .. tostring(k), ctx)
      if node ~= nil then items[#items + 1] = { k, node } end
    end
    return { table = items }
  end
  local kind = C.kind(v)
  if kind == "tensor" then
    ctx.tensors[path] = v:detach()
    return { tensor = path, device = v:device(), requires_grad = v:requires_grad() }
  elseif kind == "model" then
    return model_node(v, path, ctx)
  elseif kind == "optimizer" then
    return { optimizer = walk(v:state_dict(), path .. "#optimizer", ctx) }
  elseif kind == "schedule" then
    return { schedule = walk(v:state_dict(), path .. "#schedule", ctx) }
  elseif kind == "data iterator" then
    local s = v:state()
    return { data_iterator = { epoch = s.epoch, index = s.index } }
  end
  ctx.skipped[#ctx.skipped + 1] = path .. " (" .. kind .. ")"
  return nil
end

local function file_size(path)
  local f = assert(io.open(path, "rb"))
  local n = f:seek("end")
  f:close()
  return n
end

-- mt.checkpoint.save(dir, state, { step =, config =, meta =, before_commit = function(tmp) }):
-- writes the checkpoint into a temporary sibling of `dir` and renames it into place; an
-- interrupted write leaves an existing `dir` as it was. Returns the list of state paths that were
-- not saved (functions, tokenizers, datasets, ...).
function C.save(dir, state, info)
  if type(dir) ~= "string" then error("checkpoint.save: argument 1 (dir) must be a path, got " .. type(dir), 2) end
  if type(state) ~= "table" then error("checkpoint.save: argument 2 (state) must be a table, got " .. type(state), 2) end
  info = info or {}
  local tmp, err = C.begin(dir)
  if not tmp then error(err, 0) end
  local ctx = { tensors = {}, dir = tmp, seen = {}, skipped = {} }
  local node = walk(state, "state", ctx)
  local rng = C.random_state()
  ctx.tensors["rng/cpu"] = rng.cpu
  for i, t in ipairs(rng.cuda) do ctx.tensors["rng/cuda:" .. (i - 1)] = t end
  local ok, save_err = mt.save(tmp .. "/" .. TENSORS, ctx.tensors)
  if not ok then error("checkpoint.save: " .. tostring(save_err), 0) end
  if info.before_commit then info.before_commit(tmp) end
  local manifest = {
    format = FORMAT, version = VERSION, step = info.step, config = info.config, meta = info.meta,
    rng = { lua = rng.lua, cuda = #rng.cuda }, state = node, skipped = ctx.skipped,
    tensor_bytes = file_size(tmp .. "/" .. TENSORS),
  }
  local f = assert(io.open(tmp .. "/" .. MANIFEST, "w"))
  f:write(mt.json.encode(manifest))
  f:close()
  local committed, commit_err = C.commit(tmp, dir)
  if not committed then error(commit_err, 0) end
  return ctx.skipped
end

local function fail(path, message)
  error("checkpoint.load: " .. path .. ": " .. message, 0)
end

local restore

-- A saved value rebuilt without a live value to restore into (inside optimizer and schedule
-- state dicts).
local function value_of(node, ctx, path)
  if type(node) ~= "table" then return node end
  if node.float then return ({ nan = 0 / 0, inf = math.huge, ["-inf"] = -math.huge })[node.float] end
  if node.tensor then
    local t = ctx.tensors[node.tensor] or fail(path, "its tensor is missing from " .. TENSORS)
    return t
  end
  if node.table then
    local out = {}
    for _, kv in ipairs(node.table) do out[kv[1]] = value_of(kv[2], ctx, path .. "." .. tostring(kv[1])) end
    return out
  end
  fail(path, "cannot be rebuilt on its own")
end

local function restore_model(m, node, path, ctx)
  if C.kind(m) ~= "model" then fail(path, "was a model when saved, and is a " .. C.kind(m) .. " now") end
  local present = {}
  for _, a in ipairs(m:adapters()) do present[a.name] = true end
  for _, a in ipairs(node.adapters or {}) do
    if not present[a.name] then
      local dir = ctx.dir .. "/adapters/" .. folder(path) .. "/" .. a.name
      local ok, err = mt.peft.load(m, dir, { name = a.name, trainable = a.trainable })
      if not ok then fail(path, "cannot make adapter '" .. a.name .. "' again: " .. tostring(err)) end
    end
  end
  local fused = {}
  for _, f in ipairs(m:fusions()) do fused[f.name] = true end
  for _, f in ipairs(node.fusions or {}) do
    if not fused[f.name] then
      local ok, err = mt.peft.load(m, ctx.dir .. "/adapters/" .. folder(path) .. "/fusion-" .. f.name)
      if not ok then fail(path, "cannot make fusion '" .. f.name .. "' again: " .. tostring(err)) end
    end
    -- Where its temperature had annealed to (AdapterHub's files do not hold it).
    if f.temperature then m:set_fusion_temperature(f.name, f.temperature) end
  end
  local sd = {}
  for _, name in ipairs(node.names or {}) do
    sd[name] = ctx.tensors[path .. "/" .. name] or fail(path, "the tensor of '" .. name .. "' is missing")
  end
  local _, unexpected = m:load_state_dict(sd, { strict = false })
  if #unexpected > 0 then
    fail(path, "the checkpoint has parameters the model does not: " .. table.concat(unexpected, ", ", 1, math.min(5, #unexpected)))
  end
  if #(node.adapters or {}) > 0 then
    if node.setup then m:set_active(setup_from_json(node.setup)) elseif #node.active > 0 then m:set_adapter(node.active) end
    if #node.trainable_adapters > 0 then m:train_adapter(node.trainable_adapters) end
  end
end

function restore(parent, key, node, path, ctx)
  local live = parent[key]
  if type(node) ~= "table" then parent[key] = node; return end
  if node.float then parent[key] = value_of(node, ctx, path); return end
  if node.tensor then
    local t = ctx.tensors[node.tensor] or fail(path, "its tensor is missing from " .. TENSORS)
    if mt.tensor.is_tensor(live) and live:dtype() == t:dtype() and mt.json.encode(live:shape()) == mt.json.encode(t:shape()) then
      mt.no_grad(function() live:copy_(t) end)
    else
      local placed = t:to{ device = node.device }
      if node.requires_grad then placed = placed:requires_grad_(true) end
      parent[key] = placed
    end
  elseif node.table then
    if type(live) ~= "table" or (mt.nn.is_module and mt.nn.is_module(live)) then live = {}; parent[key] = live end
    for _, kv in ipairs(node.table) do restore(live, kv[1], kv[2], path .. "." .. tostring(kv[1]), ctx) end
  elseif node.model then
    restore_model(live, node, path, ctx)
  elseif node.module then
    if not (mt.nn.is_module and mt.nn.is_module(live)) then fail(path, "was an nn module when saved, and is not now") end
    local sd = {}
    for _, name in ipairs(node.names) do sd[name] = ctx.tensors[path .. "/" .. name] end
    live:load_state_dict(sd)
  elseif node.optimizer then
    if C.kind(live) ~= "optimizer" then fail(path, "was an optimizer when saved, and is a " .. C.kind(live) .. " now") end
    live:load_state_dict(value_of(node.optimizer, ctx, path))
  elseif node.schedule then
    if C.kind(live) ~= "schedule" then fail(path, "was a schedule when saved, and is a " .. C.kind(live) .. " now") end
    live:load_state_dict(value_of(node.schedule, ctx, path))
  elseif node.data_iterator then
    if C.kind(live) ~= "data iterator" then fail(path, "was a data iterator when saved, and is a " .. C.kind(live) .. " now") end
    live:load_state(node.data_iterator)
  else
    fail(path, "unknown kind of saved value")
  end
end

-- mt.checkpoint.rank_state(state): what differs between the ranks of a data-parallel run, for
-- each rank's own small checkpoint (the random streams are saved with any checkpoint): the data
-- iterators in `state` (the same paths in plain tables, nothing else).
function C.rank_state(state)
  local seen = {}
  local function only_iterators(v)
    if C.kind(v) == "data iterator" then return v end
    if type(v) ~= "table" or seen[v] or (mt.nn.is_module and mt.nn.is_module(v)) then return nil end
    seen[v] = true
    local out
    for _, k in ipairs(sorted_keys(v)) do
      local kept = only_iterators(v[k])
      if kept ~= nil then out = out or {}; out[k] = kept end
    end
    return out
  end
  return only_iterators(state) or {}
end

-- mt.checkpoint.load(dir, state): restores what `save` saved into `state` (as `setup` made it),
-- then every random stream; returns the manifest ({ step, config, meta, skipped, ... }).
function C.load(dir, state)
  if type(dir) ~= "string" then error("checkpoint.load: argument 1 (dir) must be a path, got " .. type(dir), 2) end
  if type(state) ~= "table" then error("checkpoint.load: argument 2 (state) must be a table, got " .. type(state), 2) end
  local manifest, err = C.manifest(dir)
  if not manifest then error("checkpoint.load: " .. tostring(err):gsub("^checkpoint%.manifest: ", ""), 0) end
  local tensors, load_err = mt.load(dir .. "/" .. TENSORS)
  if not tensors then error("checkpoint.load: " .. tostring(load_err), 0) end
  local ctx = { tensors = tensors, dir = dir }
  local holder = { state }
  restore(holder, 1, manifest.state, "state", ctx)
  local cuda = {}
  for i = 1, manifest.rng.cuda or 0 do cuda[i] = tensors["rng/cuda:" .. (i - 1)] end
  C.set_random_state({ cpu = tensors["rng/cpu"], cuda = cuda, lua = manifest.rng.lua })
  return manifest
end

return C

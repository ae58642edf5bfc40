-- mt.checkpoint.save / load: a state of every kind round-trips (numbers keep integer or float,
-- NaN and infinities, strings, nested tables, tensors in place, models with an adapter made after
-- setup, a Lua nn module, optimizer, schedule, data iterator, math.random and torch's generator),
-- and what cannot be saved is listed and left to setup.
local mt = require "moontune"
local raises = require("support.expect").raises
local data_dir = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local have_model = io.open(data_dir .. "/models/stories260K/config.json") ~= nil

local tests = {}

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  return d
end

local function fresh(with_model)
  mt.manual_seed(1)
  local net = mt.nn.Linear(3, 2)
  local opt = mt.optim.adamw(net:parameters(), { lr = 0.1 })
  local s = {
    n = 3, x = 2.5, whole = 4.0, nan = 0 / 0, inf = math.huge, name = "run", flag = true,
    nested = { list = { 1, 2.0, "three" }, deep = { t = mt.tensor.zeros{ 2, 2 } } },
    net = net, opt = opt, sched = mt.sched.linear(opt, { warmup = 2, total = 10 }),
    it = mt.data.from({ 10, 20, 30, 40, 50 }):shuffle{ seed = 4 }:iter{ epochs = math.huge },
    fn = print, tok_like = mt.data.from({ 1 }),
  }
  if with_model then
    s.model = assert(mt.models.load(data_dir .. "/models/stories260K"))
    mt.peft.lora(s.model, { name = "first", r = 2, targets = { "q_proj" } })
  end
  return s
end

local function advance(s)
  local x = mt.tensor.randn{ 4, 3 }
  local loss = s.net(x):pow(2):mean()
  loss:backward(); s.opt:step(); s.sched:step(); s.opt:zero_grad()
  return { s.it:next(), math.random(1, 1000), mt.tensor.randn{ 1 }:item(), loss:item() }
end

function tests.every_kind_of_state_round_trips()
  local s = fresh(have_model)
  for _ = 1, 3 do advance(s) end
  if have_model then mt.peft.lora(s.model, { name = "later", r = 2, targets = { "v_proj" } }) end
  s.nested.deep.t:add_(7)
  local dir = tmpdir()
  local skipped = mt.checkpoint.save(dir, s, { step = 3 })
  assert(#skipped == 2, table.concat(skipped, "; "))
  local want = {}
  for i = 1, 4 do want[i] = advance(s) end

  local r = fresh(have_model)
  local held = r.nested.deep.t
  local manifest = mt.checkpoint.load(dir, r)
  assert(manifest.step == 3)
  assert(math.type(r.n) == "integer" and r.n == 3 and math.type(r.whole) == "float" and r.x == 2.5)
  assert(r.nan ~= r.nan and r.inf == math.huge and r.name == "run" and r.flag == true)
  assert(r.nested.list[3] == "three" and math.type(r.nested.list[2]) == "float")
  assert(rawequal(r.nested.deep.t, held) and held:sum():item() == 28, "tensors are restored in place")
  assert(r.fn == print, "what could not be saved is as setup made it")
  if have_model then
    local names = {}
    for _, a in ipairs(r.model:adapters()) do names[#names + 1] = a.name end
    assert(table.concat(names, ",") == "first,later", table.concat(names, ","))
    local a, b = s.model:named_parameters{ owner = "adapters" }, r.model:named_parameters{ owner = "adapters" }
    local n = 0
    for name, p in pairs(a) do n = n + 1; assert(b[name] and p:equal(b[name]), name) end
    assert(n == 20, n .. " adapter tensors (5 layers, 2 adapters, A and B)")
  end
  for i = 1, 4 do
    local got = advance(r)
    for k = 1, 4 do assert(got[k] == want[i][k], "step " .. i .. " value " .. k .. ": " .. tostring(got[k]) .. " vs " .. tostring(want[i][k])) end
  end
  os.execute("rm -rf " .. dir)
end

-- A frozen base keeps only what changed: a merged adapter's weights, not the untouched rest.
function tests.changed_base_weights_are_saved_and_untouched_ones_are_not()
  if not have_model then return end
  local function model_with_merge()
    mt.manual_seed(2)
    local m = assert(mt.models.load(data_dir .. "/models/stories260K"))
    mt.peft.lora(m, { name = "x", r = 2, targets = { "q_proj" } })
    for _, p in pairs(m:named_parameters{ owner = "x" }) do mt.no_grad(function() p:add_(0.1) end) end
    return m
  end
  local m = model_with_merge()
  assert(next(m:named_parameters{ changed = true, owner = "base" }) == nil, "a model as loaded has changed nothing")
  m:merge_and_unload()
  local changed = m:named_parameters{ changed = true, owner = "base" }
  local n = 0
  for name in pairs(changed) do n = n + 1; assert(name:find("q_proj"), name) end
  assert(n == 5, n .. " merged q_proj weights")
  local dir = tmpdir()
  mt.checkpoint.save(dir, { model = m }, { step = 1 })
  local fresh = { model = assert(mt.models.load(data_dir .. "/models/stories260K")) }
  local manifest = mt.checkpoint.load(dir, fresh)
  assert(#manifest.state.table[1][2].names == 5, "only the changed weights are in the checkpoint")
  for name, p in pairs(m:named_parameters()) do
    assert(p:equal(fresh.model:named_parameters()[name]), name)
  end
  os.execute("rm -rf " .. dir)
end

function tests.mismatches_and_missing_checkpoints_are_clear_errors()
  local s = fresh(false)
  local dir = tmpdir()
  mt.checkpoint.save(dir, s, { step = 1 })
  local other = fresh(false)
  other.opt = 5
  raises(function() mt.checkpoint.load(dir, other) end, "state.opt: was an optimizer when saved, and is a integer now")
  raises(function() mt.checkpoint.load(dir .. "-missing", fresh(false)) end, "incomplete or corrupted")
  raises(function() mt.checkpoint.save(42, s) end, "argument 1 (dir) must be a path")
  -- Saving again over a checkpoint replaces it whole.
  s.n = 99
  mt.checkpoint.save(dir, s, { step = 2 })
  local again = fresh(false)
  assert(mt.checkpoint.load(dir, again).step == 2 and again.n == 99)
  os.execute("rm -rf " .. dir)
end

return tests

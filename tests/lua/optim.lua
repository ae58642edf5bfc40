-- Optimizers and schedules beyond the parity trajectories: groups, lr control, state dicts,
-- clipping, and schedules driving every group.

local mt = require "moontune"
local T = mt.tensor

local tests = {}

local function quadratic(p) return (p - 3):pow(2):sum() end

function tests.sgd_converges_and_zero_grad_clears()
  local p = T.zeros({ 2 }, { requires_grad = true })
  local opt = mt.optim.sgd({ p }, { lr = 0.1, momentum = 0.5 })
  for _ = 1, 200 do
    opt:zero_grad()
    quadratic(p):backward()
    opt:step()
  end
  assert(p:allclose(T.full({ 2 }, 3.0), { atol = 1e-4 }), tostring(p))
  opt:zero_grad{ set_to_none = false }
  assert(p.grad:abs():sum():item() == 0, "zeroed")
  opt:zero_grad()
  assert(p.grad == nil, "unset, as PyTorch's default")
  p.grad = T.ones{ 2 }
  assert(p.grad:sum():item() == 2)
  local ok, err = pcall(function() p.grad = T.ones{ 3 } end)
  assert(not ok and tostring(err):find("tensor.grad", 1, true), tostring(err))
end

function tests.groups_have_their_own_lr_and_weight_decay()
  local a, b = T.ones({ 1 }, { requires_grad = true }), T.ones({ 1 }, { requires_grad = true })
  local opt = mt.optim.sgd({ { params = { a } }, { params = { b }, lr = 0.5, weight_decay = 1.0 } }, { lr = 0.1 })
  assert(opt:get_lr(1) == 0.1 and opt:get_lr(2) == 0.5)
  local groups = opt:param_groups()
  assert(#groups == 2 and groups[2].weight_decay == 1.0 and groups[1].params[1]:equal(a))
  a:sum():backward(); b:sum():backward()
  opt:step()
  assert(math.abs(a:item() - 0.9) < 1e-7 and math.abs(b:item() - 0.0) < 1e-7)
  opt:set_lr(0.01)
  assert(opt:get_lr(1) == 0.01 and opt:get_lr(2) == 0.01)
  opt:set_lr(0.2, 2)
  assert(opt:get_lr(2) == 0.2)
end

function tests.state_dict_restores_moments()
  local function run(steps, resume_at)
    mt.manual_seed(0)
    local p = T.randn({ 3 }, { requires_grad = true })
    local opt = mt.optim.adam({ p }, { lr = 0.1, amsgrad = true })
    for i = 1, steps do
      if i == resume_at then
        local saved_p, saved = p:detach():clone(), opt:state_dict()
        p = saved_p:requires_grad_()
        opt = mt.optim.adam({ p }, { lr = 0.1, amsgrad = true })
        opt:load_state_dict(saved)
      end
      opt:zero_grad(); quadratic(p):backward(); opt:step()
    end
    return p
  end
  assert(run(10):equal(run(10, 6)), "resuming from a state dict continues exactly")
  local sd = mt.optim.adam({ T.zeros({ 1 }, { requires_grad = true }) }):state_dict()
  assert(next(sd.state) == nil and sd.param_groups[1].lr == 1e-3)
end

function tests.clip_grad_norm_scales_to_the_limit()
  local p = T.zeros({ 4 }, { requires_grad = true })
  local y = (p * T.tensor{ 3.0, 4.0, 0.0, 0.0 }):sum()
  y:backward()
  local norm = mt.optim.clip_grad_norm({ p }, 1.0)
  assert(math.abs(norm - 5) < 1e-6)
  assert(math.abs(p.grad:norm():item() - 1) < 1e-5)
end

function tests.schedules_drive_every_group()
  local opt = mt.optim.sgd({ { params = { T.zeros({ 1 }, { requires_grad = true }) }, lr = 1.0 },
                             { params = { T.zeros({ 1 }, { requires_grad = true }) }, lr = 0.1 } })
  local s = mt.sched.linear(opt, { warmup = 2, total = 4 })
  local seen = {}
  for _ = 1, 5 do
    seen[#seen + 1] = string.format("%.2f/%.3f", opt:get_lr(1), opt:get_lr(2))
    assert(s:get_lr(1) == opt:get_lr(1))
    s:step()
  end
  assert(table.concat(seen, " ") == "0.00/0.000 0.50/0.050 1.00/0.100 0.50/0.050 0.00/0.000", table.concat(seen, " "))
  local saved = s:state_dict()
  local s2 = mt.sched.linear(opt, { warmup = 2, total = 4 })
  s2:load_state_dict(saved)
  assert(s2:last_step() == 5)
end

function tests.learning_rates_can_be_steered_under_a_schedule()
  local p = T.zeros({ 1 }, { requires_grad = true })
  local opt = mt.optim.adamw({ p }, { lr = 1.0 })
  local sched = mt.sched.linear(opt, { warmup = 0, total = 10 })
  for _ = 1, 5 do sched:step() end
  assert(math.abs(opt:get_lr() - 0.5) < 1e-12)
  -- set_lr sets the lr the schedule scales: now, and in the steps after.
  opt:set_lr(0.1)
  assert(math.abs(opt:get_lr() - 0.05) < 1e-12, opt:get_lr())
  sched:step()
  assert(math.abs(opt:get_lr() - 0.04) < 1e-12, opt:get_lr())
  sched:set_base_lr(1.0)
  assert(math.abs(opt:get_lr() - 0.4) < 1e-12)
  sched:scale(0.5)
  assert(math.abs(sched:get_last_lr()[1] - 0.2) < 1e-12 and math.abs(sched:get_lr() - 0.2) < 1e-12)
  sched:step()
  assert(math.abs(opt:get_lr() - 0.15) < 1e-12, opt:get_lr())
  assert(math.abs(opt:param_groups()[1].initial_lr - 0.5) < 1e-12)
  local saved = sched:state_dict()
  assert(saved.base_lrs[1] == 0.5 and saved.last_step == 7)
end

function tests.param_groups_are_live()
  local a, b = T.ones({ 1 }, { requires_grad = true }), T.ones({ 1 }, { requires_grad = true })
  local opt = mt.optim.sgd({ { params = { a } }, { params = { b }, lr = 0.5 } }, { lr = 0.1 })
  local groups = opt:param_groups()
  groups[1].lr = 5
  groups[2].weight_decay = 0.25
  assert(opt:get_lr(1) == 5 and opt:param_groups()[2].weight_decay == 0.25)
  local ok, err = pcall(function() groups[1].momentum = 0.9 end)
  assert(not ok and tostring(err):find("'momentum' cannot be set", 1, true), tostring(err))
  ok, err = pcall(function() return opt:get_lr(0) end)
  assert(not ok and tostring(err):find("group 0 does not exist: groups are numbered from 1", 1, true), tostring(err))
  ok, err = pcall(function() groups[1].lr = "fast" end)
  assert(not ok and tostring(err):find("'lr' must be a number", 1, true), tostring(err))
end

function tests.param_groups_iterate_like_pytorch_dicts()
  local a = T.ones({ 1 }, { requires_grad = true })
  local opt = mt.optim.adamw({ a }, { lr = 0.1, weight_decay = 0.5 })
  local seen = {}
  for k, v in pairs(opt:param_groups()[1]) do seen[#seen + 1] = k .. "=" .. (type(v) == "table" and #v or tostring(v)) end
  assert(table.concat(seen, " ") == "params=1 lr=0.1 weight_decay=0.5", table.concat(seen, " "))
  mt.sched.constant(opt, {})
  seen = {}
  for k in pairs(opt:param_groups()[1]) do seen[#seen + 1] = k end
  assert(table.concat(seen, " ") == "params lr weight_decay initial_lr", table.concat(seen, " "))
end

return tests

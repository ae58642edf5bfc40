-- Parity of mt.sched with transformers' get_*_schedule_with_warmup and torch's StepLR (lrs from
-- gen_schedules.py, run beside this test): the lr of each of two groups at creation and after
-- each of 25 steps, to 1e-12.

local mt = require "moontune"
local T = mt.tensor

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local ref = assert(mt.load(fixtures .. "/schedules.safetensors"))

local schedules = {
  constant = { warmup = 4 },
  linear = { warmup = 3, total = 20 },
  cosine = { warmup = 3, total = 20, min_lr_rate = 0.1 },
  step = { step_size = 5, gamma = 0.5 },
}

local tests = {}

for name, opts in pairs(schedules) do
  tests[name] = function()
    local opt = mt.optim.sgd({ { params = { T.zeros({ 1 }, { requires_grad = true }) }, lr = 0.5 },
                               { params = { T.zeros({ 1 }, { requires_grad = true }) }, lr = 0.05 } })
    local sched = mt.sched[name](opt, opts)
    local want = ref[name]:tolist()
    for i, row in ipairs(want) do
      for group = 1, 2 do
        local got = opt:get_lr(group)
        if math.abs(got - row[group]) > 1e-12 then
          error(string.format("%s: group %d lr %.17g at step %d, expected %.17g", name, group, got, i - 1, row[group]))
        end
      end
      sched:step()
    end
  end
end

return tests

-- fusion (AdapterFusion over the earlier tasks' adapters, Pfeiffer et al. 2021): as `adapters`,
-- each task first trains its own bottleneck adapter on the frozen encoder; from the second task
-- on, the last `cfg.fusion_share` of its steps then train an AdapterFusion layer over every
-- adapter so far (the earlier ones and its own, all frozen), which learns per layer and token
-- how much of each to use, so a task can draw on what the earlier ones learnt. The task id
-- routes a task to its fusion at test time (the first task to its adapter).
local mt = require "moontune.core"

local function names_up_to(s, k)
  local names = {}
  for i = 1, k do names[i] = s.stream.tasks[i].name end
  return names
end

return {
  name = "fusion",
  adapters_only = true,
  prepare = function(s, cfg)
    local model = s.learner.model
    for _, task in ipairs(s.stream.tasks) do
      mt.peft.bottleneck(model, { name = task.name, reduction_factor = cfg.adapter_reduction })
    end
    for k, task in ipairs(s.stream.tasks) do
      if k == 1 then
        s.learner:route(task.name, task.name)
      else
        mt.peft.fusion(model, names_up_to(s, k))
        s.learner:route(task.name, names_up_to(s, k))
      end
    end
  end,
  -- The task's own adapter trains first: its route is the adapter alone until the fusion phase.
  begin_task = function(s, task, cfg)
    s.learner.model:train_adapter(task.name)
    s.learner:route(task.name, task.name)
  end,
  loss = function(s, task, batch, cfg)
    local k = task.id + 1
    local into = (s.steps - 1) % cfg.steps_per_task + 1
    if k > 1 and into == cfg.steps_per_task - math.floor(cfg.steps_per_task * cfg.fusion_share) + 1 then
      local names = names_up_to(s, k)
      s.learner:route(task.name, names)
      s.learner.model:train_fusion(names)
    end
    local loss = s.learner:loss(task.name, batch)
    local reg = s.learner.model:fusion_regularization()
    return reg and loss + reg or loss
  end,
}

-- adapters: a bottleneck adapter per task (AdapterHub's Pfeiffer "seq_bn", reduction
-- `cfg.adapter_reduction`) on a frozen encoder. Only the current task's adapter and head train;
-- at test time the task id routes each task through its own adapter, so nothing learnt earlier
-- is touched and nothing is forgotten; what is given up is transfer between tasks.
local mt = require "moontune.core"

return {
  name = "adapters",
  adapters_only = true,
  -- Made before the optimizer, so that one optimizer covers every task's adapter.
  prepare = function(s, cfg)
    for _, task in ipairs(s.stream.tasks) do
      mt.peft.bottleneck(s.learner.model, { name = task.name, reduction_factor = cfg.adapter_reduction })
      s.learner:route(task.name, task.name)
    end
  end,
  begin_task = function(s, task)
    s.learner.model:train_adapter(task.name)
  end,
}

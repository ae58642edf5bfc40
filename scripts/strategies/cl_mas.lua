-- cl_mas.lua — a continual-learning strategy written in a recipe's own file, with nothing from
-- Rust or the stdlib's strategies: Memory Aware Synapses (Aljundi et al. 2018). After each task
-- a weight's importance is the mean magnitude of the gradient of the squared L2 norm of the
-- encoder's pooled output over that task's sentences (no labels needed: what matters is how
-- much the function moves), accumulated over tasks; later steps add
-- λ · Σ Ω·(θ − θ*)² (λ = LAMBDA below).
--
--   moontune run scripts/continual.lua strategy=scripts/strategies/cl_mas.lua order=1
--
-- The file is read again at every step: edit it (LAMBDA, say) while the run goes and the next
-- step uses it.
local mt = require "moontune"

local LAMBDA = 1.0

local function weights(s)
  return s.learner.model:named_parameters{ trainable = true }
end

return {
  name = "mas",
  begin_task = function(s)
    if not s.learner.features then
      error("cl_mas: measures the encoder's pooled output, which the generative setting does not have; use setting=encoder", 0)
    end
  end,
  end_task = function(s, task, cfg)
    local params = weights(s)
    local omega, n = {}, 0
    for name, p in pairs(params) do omega[name] = mt.tensor.zeros_like(p) end
    for b in task.train:batch{ size = cfg.batch }:iter() do
      if n >= cfg.fisher_batches then break end
      for _, p in pairs(params) do p.grad = nil end
      s.learner:features(task.name, b.sentence):square():sum(-1):mean():backward()
      for name, p in pairs(params) do
        if p.grad then omega[name] = omega[name] + p.grad:abs() end
      end
      n = n + 1
    end
    for _, p in pairs(params) do p.grad = nil end
    s.mas_omega = s.mas_omega or {}
    s.mas_anchor = {}
    for name, p in pairs(params) do
      local o = omega[name] / math.max(n, 1)
      s.mas_omega[name] = s.mas_omega[name] and s.mas_omega[name] + o or o
      s.mas_anchor[name] = p:detach():clone()
    end
  end,
  loss = function(s, task, batch, cfg)
    local loss = s.learner:loss(task.name, batch)
    if not s.mas_anchor then return loss end
    for name, p in pairs(weights(s)) do
      loss = loss + (s.mas_omega[name] * (p - s.mas_anchor[name]):square()):sum() * LAMBDA
    end
    return loss
  end,
}

-- ewc (elastic weight consolidation, online): after each task the diagonal Fisher information
-- of the encoder's weights is estimated from `cfg.fisher_batches` batches of that task (the
-- squared gradients of its loss) and folded into a running importance F = γ·F + F_task (γ =
-- cfg.ewc_decay); the weights θ* are remembered. Each later step adds
-- λ/2 · Σ F·(θ − θ*)² (λ = cfg.ewc_lambda), which holds important weights near θ*.
local mt = require "moontune.core"

local function encoder_params(s)
  return s.learner.model:named_parameters{ trainable = true }
end

return {
  name = "ewc",
  end_task = function(s, task, cfg)
    local params = encoder_params(s)
    local fisher = {}
    for name, p in pairs(params) do fisher[name] = mt.tensor.zeros_like(p) end
    local n = 0
    for b in task.train:batch{ size = cfg.batch }:iter() do
      if n >= cfg.fisher_batches then break end
      for _, p in pairs(params) do p.grad = nil end
      s.learner:loss(task.name, b):backward()
      for name, p in pairs(params) do
        if p.grad then fisher[name] = fisher[name] + p.grad * p.grad end
      end
      n = n + 1
    end
    for _, p in pairs(params) do p.grad = nil end
    s.ewc_fisher = s.ewc_fisher or {}
    s.ewc_anchor = {}
    for name, p in pairs(params) do
      local f = fisher[name] / math.max(n, 1)
      local old = s.ewc_fisher[name]
      s.ewc_fisher[name] = old and (old * cfg.ewc_decay + f) or f
      s.ewc_anchor[name] = p:detach():clone()
    end
  end,
  loss = function(s, task, batch, cfg)
    local loss = s.learner:loss(task.name, batch)
    if not s.ewc_anchor then return loss end
    local penalty = nil
    for name, p in pairs(encoder_params(s)) do
      local term = (s.ewc_fisher[name] * (p - s.ewc_anchor[name]):square()):sum()
      penalty = penalty and (penalty + term) or term
    end
    return loss + penalty * (cfg.ewc_lambda / 2)
  end,
}

-- olora (O-LoRA, Wang et al. 2023): a new LoRA per task on the frozen encoder's attention
-- (query and value, rank `cfg.lora_r`). Every task's LoRA stays active, the earlier ones frozen;
-- the new one is trained to stay orthogonal to them: the loss adds λ₁ Σ |A_old A_newᵀ| (summed
-- over every frozen A at the same layer, the paper's orthogonality loss) and λ₂ Σ ‖θ_new‖₂ over
-- the new LoRA's matrices (its L2 term; λ₁ = cfg.olora_lambda, λ₂ = cfg.olora_l2). Updates in
-- orthogonal subspaces interfere little with what earlier tasks rely on.
local mt = require "moontune.core"

-- The LoRA A matrices of adapter `name`, by the layer they sit on.
local function a_matrices(s, name)
  local marker = ".adapters." .. name .. ".lora_A."
  local out = {}
  for pname, p in pairs(s.learner.model:named_parameters()) do
    local at = pname:find(marker, 1, true)
    if at then out[pname:sub(1, at - 1)] = p end
  end
  return out
end

local function olora_name(task) return "olora_" .. task.name end

local O = { name = "olora", adapters_only = true }

function O.prepare(s, cfg)
  for _, task in ipairs(s.stream.tasks) do
    mt.peft.lora(s.learner.model, { name = olora_name(task), r = cfg.lora_r, alpha = cfg.lora_r * 2, targets = s.learner.lora_targets })
  end
end

-- The task's LoRA joins the active ones and is the only one trained.
function O.begin_task(s, task)
  local active = {}
  for _, t in ipairs(s.seen) do active[#active + 1] = olora_name(t) end
  active[#active + 1] = olora_name(task)
  s.learner.model:set_adapter(active)
  s.learner.model:train_adapter(olora_name(task))
end

-- Σ over layers and earlier tasks of Σ|A_old A_newᵀ| (0 before the second task).
function O.orthogonality(s, task)
  local new = a_matrices(s, olora_name(task))
  local total = nil
  for _, t in ipairs(s.seen) do
    for layer, old in pairs(a_matrices(s, olora_name(t))) do
      local term = old:detach():matmul(new[layer]:t()):abs():sum()
      total = total and total + term or term
    end
  end
  return total
end

-- The orthogonality term as the task ends, to log.
function O.end_task(s, task)
  local orth = mt.no_grad(function() return O.orthogonality(s, task) end)
  return orth and { olora_orthogonality = orth:item() } or nil
end

function O.loss(s, task, batch, cfg)
  local loss = s.learner:loss(task.name, batch)
  local orth = O.orthogonality(s, task)
  if orth then loss = loss + orth * cfg.olora_lambda end
  if cfg.olora_l2 > 0 then
    local marker = ".adapters." .. olora_name(task) .. "."
    for pname, p in pairs(s.learner.model:named_parameters()) do
      if pname:find(marker, 1, true) then loss = loss + p:norm() * cfg.olora_l2 end
    end
  end
  return loss
end

return O

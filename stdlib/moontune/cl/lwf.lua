-- lwf (Learning without Forgetting, Li & Hoiem 2017): before each new task the learner is
-- copied as a frozen teacher; each step on the new task also distils, on the new task's
-- sentences, every earlier task's head outputs from the teacher: λ · T² · KL(softmax(teacher/T)
-- ‖ softmax(student/T)) per earlier task over its own labels (its head, or its classes of the
-- class-incremental learner's shared head; T = cfg.lwf_temperature, λ = cfg.lwf_lambda). No old
-- data is kept; the old tasks' behaviour on the new inputs is what is preserved.
local mt = require "moontune.core"
local F = mt.nn.functional

local function copy_into(dst, src)
  mt.no_grad(function()
    for name, p in pairs(src) do dst[name]:copy_(p) end
  end)
end

return {
  name = "lwf",
  -- The teacher: a second encoder, loaded once, that each task copies the learner into.
  prepare = function(s, cfg)
    if not s.learner.head_snapshot then
      error("lwf: distils the earlier tasks' heads, and the generative setting (cl.generative_learner) has none; use the encoder setting", 0)
    end
    local teacher, err = mt.models.load(cfg.model)
    if not teacher then error("lwf: " .. tostring(err), 0) end
    teacher:eval()
    for _, p in pairs(teacher:named_parameters()) do p:requires_grad_(false) end
    s.lwf_teacher = teacher
  end,
  begin_task = function(s, task)
    if #s.seen == 0 then return end
    copy_into(s.lwf_teacher:named_parameters(), s.learner.model:named_parameters())
    s.lwf_heads = s.learner:head_snapshot()
  end,
  loss = function(s, task, batch, cfg)
    local learner = s.learner
    if #s.seen == 0 then return learner:loss(task.name, batch) end
    local features = learner:features(task.name, batch.sentence)
    local loss = F.cross_entropy(learner:head_logits(task.name, features), learner:targets(task.name, batch.label))
    local old = mt.no_grad(function() return learner:embed(batch.sentence, s.lwf_teacher) end)
    local T = cfg.lwf_temperature
    for _, t in ipairs(s.seen) do
      local target = F.log_softmax(learner:task_logits(t.name, old, s.lwf_heads) / T, -1)
      local student = F.log_softmax(learner:task_logits(t.name, features) / T, -1)
      local kl = F.kl_div(student, target, { reduction = "batchmean", log_target = true })
      loss = loss + kl * (cfg.lwf_lambda * T * T)
    end
    return loss
  end,
}

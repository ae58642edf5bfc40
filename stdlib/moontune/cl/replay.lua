-- replay (experience replay): a buffer keeps `cfg.buffer_per_task` examples of each finished
-- task, chosen by reservoir sampling over its training data (every example equally likely);
-- each step on a later task adds `cfg.replay_weight` times the loss on a batch drawn from the
-- buffer of one earlier task, in turn.
local mt = require "moontune.core"

local function reservoir(data, size, seed)
  local kept, n = {}, 0
  local state = seed
  local function draw(bound)
    state = (state * 1103515245 + 12345) & 0x7fffffff
    return state % bound
  end
  for ex in data:iter() do
    n = n + 1
    if #kept < size then
      kept[#kept + 1] = ex
    else
      local j = draw(n) + 1
      if j <= size then kept[j] = ex end
    end
  end
  return kept
end

return {
  name = "replay",
  end_task = function(s, task, cfg)
    s.buffers = s.buffers or {}
    s.buffers[task.name] = reservoir(task.train, cfg.buffer_per_task, cfg.seed * 7919 + task.id + 1)
  end,
  loss = function(s, task, batch, cfg)
    local loss = s.learner:loss(task.name, batch)
    if #s.seen == 0 then return loss end
    s.replay_turn = (s.replay_turn or 0) % #s.seen + 1
    local past = s.seen[s.replay_turn]
    local buffer = s.buffers[past.name]
    local sentences, labels = {}, {}
    for i = 1, math.min(cfg.batch, #buffer) do
      local ex = buffer[math.random(#buffer)]
      sentences[i], labels[i] = ex.sentence, ex.label
    end
    local replayed = s.learner:loss(past.name, { sentence = sentences, label = mt.tensor.tensor(labels) })
    return loss + cfg.replay_weight * replayed
  end,
}

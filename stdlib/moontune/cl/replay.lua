-- replay (experience replay): a buffer keeps `cfg.buffer_per_task` examples of each finished
-- task, chosen over its training data by reservoir sampling (`cfg.replay_buffer = "reservoir"`:
-- every example equally likely, so the buffer has the task's label mix) or class-balanced
-- (`"balanced"`: a reservoir per label, the buffer split evenly between the labels, so rare
-- labels are kept as often as common ones). Each step on a later task adds `cfg.replay_weight`
-- times the loss on `cfg.replay_batch` examples drawn from the buffer of one earlier task, in turn.
local mt = require "moontune.core"
local F = mt.nn.functional

-- A seeded draw in [0, bound): the buffer does not depend on math.random's position.
local function drawer(seed)
  local state = seed
  return function(bound)
    state = (state * 1103515245 + 12345) & 0x7fffffff
    return state % bound
  end
end

-- Reservoir sampling: after n offers, each example offered is kept with probability size / n.
local function reservoir(size, draw)
  local r = { kept = {}, n = 0 }
  function r.offer(ex)
    r.n = r.n + 1
    if #r.kept < size then
      r.kept[#r.kept + 1] = ex
    else
      local j = draw(r.n) + 1
      if j <= size then r.kept[j] = ex end
    end
  end
  return r
end

local function fill(task, cfg, seed)
  local draw = drawer(seed)
  local size = cfg.buffer_per_task
  if cfg.replay_buffer == "reservoir" then
    local r = reservoir(size, draw)
    for ex in task.train:iter() do r.offer(ex) end
    return r.kept
  elseif cfg.replay_buffer ~= "balanced" then
    error(string.format("replay: replay_buffer must be \"reservoir\" or \"balanced\", got %s", tostring(cfg.replay_buffer)), 0)
  end
  -- Balanced: label i (0-based) gets size // #labels places, the first size % #labels one more.
  local per = {}
  for i = 1, #task.labels do
    per[i - 1] = reservoir(size // #task.labels + (i <= size % #task.labels and 1 or 0), draw)
  end
  for ex in task.train:iter() do per[ex.label].offer(ex) end
  local kept = {}
  for i = 0, #task.labels - 1 do
    for _, ex in ipairs(per[i].kept) do kept[#kept + 1] = ex end
  end
  return kept
end

return {
  name = "replay",
  end_task = function(s, task, cfg)
    s.buffers = s.buffers or {}
    s.buffers[task.name] = fill(task, cfg, cfg.seed * 7919 + task.id + 1)
  end,
  -- The current batch and `cfg.replay_batch` replayed examples go through the model together
  -- (one forward and backward), each part scored as its own task.
  loss = function(s, task, batch, cfg)
    local learner = s.learner
    if #s.seen == 0 then return learner:loss(task.name, batch) end
    s.replay_turn = (s.replay_turn or 0) % #s.seen + 1
    local past = s.seen[s.replay_turn]
    local buffer = s.buffers[past.name]
    local sentences, labels = {}, {}
    for i = 1, math.min(cfg.replay_batch, #buffer) do
      local ex = buffer[math.random(#buffer)]
      sentences[i], labels[i] = ex.sentence, ex.label
    end
    local loss, replayed = table.unpack(learner:losses(task.name, {
      { task = task.name, sentences = batch.sentence, labels = batch.label },
      { task = past.name, sentences = sentences, labels = labels },
    }))
    return loss + cfg.replay_weight * replayed
  end,
}

-- moontune.cl.learner: the learner the continual-learning strategies train: a sentence encoder
-- shared by every task (all-MiniLM-L6-v2 by default) and linear heads on its mean-pooled output.
-- Task-incremental by default: a head per task, and since the task id is known at test time each
-- task is scored with its own head and label set. With `class_incremental = true`, one head over
-- every task's labels (task k's label c is class offset_k + c): training and test both score all
-- the classes and the task id picks nothing. Strategies that give each task its own adapters set
-- a route per task (`learner:route`), which the learner makes the active composition before each
-- forward; routes need the task id, so a class-incremental learner refuses them.
local mt = require "moontune.core"
local F = mt.nn.functional
local L = {}
L.__index = L

-- An error naming `call` unless `tasks` are a stream's tasks, each with a name and labels.
function L.check_tasks(call, tasks)
  if type(tasks) ~= "table" or #tasks == 0 then error(call .. ": tasks must be the tasks of a stream (mt.cl.stream{...}.tasks)", 0) end
  for i, task in ipairs(tasks) do
    if type(task) ~= "table" or type(task.name) ~= "string" or type(task.labels) ~= "table" or #task.labels == 0 then
      error(string.format("%s: tasks[%d] must be a task of a stream, with a name and labels", call, i), 0)
    end
  end
end

-- `tasks`: the stream's tasks (a head each, or one over all of them with `class_incremental`,
-- made now so that one optimizer covers them all).
function L.new(opts)
  if type(opts) ~= "table" then error("cl.learner: expected a table { model = dir, tasks = stream.tasks }, got " .. type(opts), 0) end
  if type(opts.model) ~= "string" then error("cl.learner: model must be the folder of a sentence encoder, got " .. type(opts.model), 0) end
  L.check_tasks("cl.learner", opts.tasks)
  local encoder, err = mt.models.load(opts.model)
  if not encoder then error("cl.learner: " .. tostring(err), 0) end
  local tok, tok_err = mt.tokenizer.load(opts.model)
  if not tok then error("cl.learner: " .. tostring(tok_err), 0) end
  local self = setmetatable({ model = encoder, tok = tok, max_len = opts.max_len or 64,
                              lora_targets = { "query", "value" } }, L)
  self.task_names = {}
  for i, task in ipairs(opts.tasks) do self.task_names[i] = task.name end
  local hidden = encoder:config().hidden_size
  if opts.class_incremental then
    self.class_incremental, self.offsets, self.sizes = true, {}, {}
    local classes = 0
    for _, task in ipairs(opts.tasks) do
      self.offsets[task.name], self.sizes[task.name] = classes, #task.labels
      classes = classes + #task.labels
    end
    self.head = mt.nn.linear(hidden, classes)
  else
    self.heads = {}
    for _, task in ipairs(opts.tasks) do
      self.heads[task.name] = mt.nn.linear(hidden, #task.labels)
    end
  end
  return self
end

-- The parameters an optimizer covers, by name: the encoder's trainable ones and every adapter's
-- and fusion's, trainable now or later ("model.<name>"; a frozen one has no gradient, so the
-- optimizer leaves it as it is), and every head's ("heads.<task>.<name>", or "head.<name>" for
-- the class-incremental one).
function L:parameters()
  local params = {}
  for name, p in pairs(self.model:named_parameters()) do
    if p:requires_grad() or name:find(".adapters.", 1, true) or name:find(".adapter_fusion_layer.", 1, true) then
      params["model." .. name] = p
    end
  end
  for task, head in pairs(self.heads or {}) do
    for name, p in pairs(head:named_parameters()) do params["heads." .. task .. "." .. name] = p end
  end
  for name, p in pairs(self.head and self.head:named_parameters() or {}) do params["head." .. name] = p end
  return params
end

-- Routes `task_name` through adapters: one adapter's name, or a list of names whose fusion
-- (`mt.peft.fusion`) is used. Plain data, so that checkpoints keep it.
function L:route(task_name, adapters)
  if self.class_incremental then
    error("cl.learner: routing task '" .. tostring(task_name) .. "' through its own adapters needs the task id at test time, which the class-incremental setting does not give; use the task-incremental learner (setting=encoder)", 0)
  end
  self.routes = self.routes or {}
  self.routes[task_name] = adapters
end

-- The mean-pooled embeddings of `sentences` by `model` (default the learner's encoder; a frozen
-- copy of it, for distillation) with the active adapters as they are.
function L:embed(sentences, model)
  model = model or self.model
  local enc = self.tok:encode_batch(sentences, nil, { truncation = true, max_length = self.max_len, padding = "longest" })
  local out = model{ input_ids = enc.input_ids, attention_mask = enc.attention_mask, token_type_ids = enc.token_type_ids }
  return mt.models.mean_pool(out.last_hidden_state, enc.attention_mask)
end

-- Makes `task_name`'s route the active composition (nothing without routes).
function L:activate(task_name)
  local route = self.routes and self.routes[task_name]
  if route then
    self.model:set_active(type(route) == "string" and route or #route == 1 and route[1] or mt.peft.fuse(table.unpack(route)))
  end
end

-- The pooled sentence embeddings for `task_name` (through its route, if there are routes).
function L:features(task_name, sentences)
  self:activate(task_name)
  return self:embed(sentences)
end

-- Pooled embeddings of a batch mixing tasks: `parts` = { { task = name, sentences = {...} }, ... },
-- the rows in that order. With routes, each part's rows go through its own task's adapter in
-- the same forward (a BatchSplit over the parts' routes).
function L:features_mixed(parts)
  local sentences, sizes, children = {}, {}, {}
  for i, part in ipairs(parts) do
    for _, sentence in ipairs(part.sentences) do sentences[#sentences + 1] = sentence end
    sizes[i] = #part.sentences
    local route = self.routes and self.routes[part.task]
    if self.routes and type(route) ~= "string" then
      error("cl.learner: features_mixed routes each task through one adapter; task '" .. tostring(part.task) .. "' has none", 0)
    end
    children[i] = route
  end
  if self.routes then
    children[#children + 1] = { batch_sizes = sizes }
    self.model:set_active(mt.peft.batch_split(table.unpack(children)))
  end
  return self:embed(sentences)
end

-- An error naming `call` unless the learner was made with a task called `task_name`.
local function check_task(self, call, task_name)
  for _, name in ipairs(self.task_names) do
    if name == task_name then return end
  end
  error(string.format("cl.learner:%s: unknown task '%s' (the learner's tasks: %s)", call, tostring(task_name), table.concat(self.task_names, ", ")), 0)
end

-- Logits for pooled `features` of `task_name`'s examples: its own head's (task-incremental) or
-- the shared head's over every class (class-incremental). `snapshot` (from :head_snapshot())
-- scores with heads as they were then instead.
function L:head_logits(task_name, features, snapshot)
  check_task(self, "head_logits", task_name)
  local head
  if self.class_incremental then
    head = snapshot or self.head
  else
    head = snapshot and snapshot[task_name] or self.heads[task_name]
  end
  return F.linear(features, head.weight, head.bias)
end

-- The logits of `task_name`'s own labels alone: its head's, or its slice of the shared head's.
function L:task_logits(task_name, features, snapshot)
  local logits = self:head_logits(task_name, features, snapshot)
  if self.class_incremental then return logits:narrow(1, self.offsets[task_name], self.sizes[task_name]) end
  return logits
end

-- The heads' weights and biases as they are now, detached: { weight, bias } for the shared
-- head, or one such per task.
function L:head_snapshot()
  local function copy(head) return { weight = head.weight:detach():clone(), bias = head.bias:detach():clone() } end
  if self.class_incremental then return copy(self.head) end
  local out = {}
  for task, head in pairs(self.heads) do out[task] = copy(head) end
  return out
end

-- `task_name`'s 0-based labels (a tensor or a list) as the head's classes: the same ids, or
-- shifted to the task's block of the shared head.
function L:targets(task_name, labels)
  check_task(self, "targets", task_name)
  labels = type(labels) == "table" and mt.tensor.tensor(labels) or labels
  if self.class_incremental then return labels + self.offsets[task_name] end
  return labels
end

-- Logits of `task_name`'s head for a list of sentences.
function L:logits(task_name, sentences)
  return self:head_logits(task_name, self:features(task_name, sentences))
end

-- The cross-entropy of a batch (`{ sentence = {...}, label = tensor }`, as Dataset:batch makes).
function L:loss(task_name, batch)
  return F.cross_entropy(self:logits(task_name, batch.sentence), self:targets(task_name, batch.label))
end

-- `rows`, a tensor whose first dimension runs over the parts' sentences in order, cut into one
-- slice per part.
function L.slices(parts, rows)
  local out, first = {}, 0
  for i, part in ipairs(parts) do
    out[i] = rows:narrow(0, first, #part.sentences)
    first = first + #part.sentences
  end
  return out
end

-- One forward over parts of different tasks (`{ task, sentences, labels }`, labels a tensor or a
-- list of 0-based ids) through `task_name`'s route; each part's cross-entropy by its own head.
function L:losses(task_name, parts)
  local sentences = {}
  for _, part in ipairs(parts) do
    for _, sentence in ipairs(part.sentences) do sentences[#sentences + 1] = sentence end
  end
  local out = {}
  for i, features in ipairs(L.slices(parts, self:features(task_name, sentences))) do
    local task = parts[i].task
    out[i] = F.cross_entropy(self:head_logits(task, features), self:targets(task, parts[i].labels))
  end
  return out
end

-- The accuracy on a task's test split (its first `limit` examples when given), in batches of
-- `size`: `right(sentences, labels)` (labels a tensor) counts a batch's right answers; no
-- gradients, `model` in eval mode meanwhile.
function L.test_accuracy(model, task, limit, size, right)
  model:eval()
  local hits, n = 0, 0
  mt.no_grad(function()
    for b in task.test:batch{ size = size }:iter() do
      local take = limit and math.min(#b.sentence, limit - n) or #b.sentence
      if take <= 0 then break end
      local sentences, labels = b.sentence, b.label
      if take < #b.sentence then
        sentences = { table.unpack(sentences, 1, take) }
        labels = labels:narrow(0, 0, take)
      end
      hits = hits + right(sentences, labels)
      n = n + take
    end
  end)
  model:train()
  return hits / n
end

-- Accuracy on a task's test split (its first `limit` examples when given).
function L:accuracy(task, limit)
  return L.test_accuracy(self.model, task, limit, 64, function(sentences, labels)
    return self:logits(task.name, sentences):argmax(-1):eq(self:targets(task.name, labels)):sum():item()
  end)
end

return L

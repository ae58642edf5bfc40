-- moontune.cl.generative: the O-LoRA paper's own continual-learning setting, a causal language
-- model (SmolLM2-135M-Instruct by default in scripts/continual.lua) that reads each example as
-- an instruction — what the task asks, its label names as the options, the sentence — and writes
-- the label as text. There are no heads: the tasks share the model and differ by instruction.
-- Training is the cross-entropy of the answer's tokens (the label's text and the end of the
-- turn) after the prompt; accuracy is exact match of the greedy generation against the label,
-- as the paper scores it. The base model stays frozen: with `lora_r` the learner adds one LoRA
-- ("sequential", on q_proj and v_proj) that the strategies train, else the strategy adds its
-- own (olora, adapters). It answers the encoder learner's calls that strategies make (loss,
-- losses, accuracy, route, parameters; cl/learner.lua), so the same strategy files run in both
-- settings, except those that need a head per task (lwf).
local mt = require "moontune.core"
local T = mt.tensor
local F = mt.nn.functional
local learner = require "moontune.cl.learner"
local G = {}
G.__index = G
-- What both settings share: routes through adapters and the parameters an optimizer covers.
G.route, G.activate, G.parameters = learner.route, learner.activate, learner.parameters

-- Where the sentence goes in the rendered prompt (the chat template does not touch it).
local SLOT = "\1sentence\1"

local function fail(message) error("cl.generative_learner: " .. message, 0) end

-- The prompt around the sentence, split at the slot: the user turn of the chat template when the
-- tokenizer has one, else plain text ending in "Answer:".
local function prompt_parts(tok, task)
  local user = task.instruction .. "\nOptions: " .. table.concat(task.labels, ", ") .. "\n" .. SLOT .. "\nAnswer:"
  local text = user .. " "
  -- A tokenizer without a chat template is an error there; this setting then uses plain text.
  local ok, rendered = pcall(tok.apply_chat_template, tok, { { role = "user", content = user } }, { add_generation_prompt = true })
  if ok then text = rendered end
  local at = text:find(SLOT, 1, true)
  return text:sub(1, at - 1), text:sub(at + #SLOT)
end

-- `opts`: { model = a causal LM's folder or .gguf, tasks = stream.tasks, max_len = the most
-- tokens kept of a sentence (default 64; the instruction and answer come on top), lora_r = the
-- rank of the shared LoRA }.
function G.new(opts)
  if type(opts) ~= "table" then fail("expected a table { model = path, tasks = stream.tasks }, got " .. type(opts)) end
  if type(opts.model) ~= "string" then fail("model must be a causal language model (a folder or a .gguf file), got " .. type(opts.model)) end
  learner.check_tasks("cl.generative_learner", opts.tasks)
  for i, task in ipairs(opts.tasks) do
    if type(task.instruction) ~= "string" then fail(string.format("tasks[%d] (%s) has no instruction to ask it with", i, task.name)) end
  end
  local model, err = mt.models.load(opts.model)
  if not model then fail(tostring(err)) end
  local tok, tok_err = mt.tokenizer.load(opts.model)
  if not tok then fail(tostring(tok_err)) end
  if not tok:eos_id() then fail("the tokenizer of " .. opts.model .. " has no EOS token to end an answer with") end
  local self = setmetatable({ model = model, tok = tok, max_len = opts.max_len or 64,
                              lora_targets = { "q_proj", "v_proj" }, prompts = {} }, G)
  for _, task in ipairs(opts.tasks) do
    local before, after = prompt_parts(tok, task)
    local answers, longest = {}, 0
    for i, label in ipairs(task.labels) do
      answers[i] = tok:encode(label, nil, { add_special_tokens = false })
      answers[i][#answers[i] + 1] = tok:eos_id()
      longest = math.max(longest, #answers[i])
    end
    self.prompts[task.name] = { before = tok:encode(before), after = tok:encode(after, nil, { add_special_tokens = false }),
                                answers = answers, longest = longest }
  end
  if opts.lora_r then
    mt.peft.lora(model, { name = "sequential", r = opts.lora_r, alpha = opts.lora_r * 2, targets = self.lora_targets })
  end
  return self
end

-- The prompt's token ids for one sentence of `task_name`, the sentence cut to max_len tokens.
function G:prompt_ids(task_name, sentence)
  local p = self.prompts[task_name]
  local ids = { table.unpack(p.before) }
  local words = self.tok:encode(sentence, nil, { add_special_tokens = false })
  for i = 1, math.min(self.max_len, #words) do ids[#ids + 1] = words[i] end
  for _, id in ipairs(p.after) do ids[#ids + 1] = id end
  return ids
end

-- Rows of prompt and answer, right-padded, with labels -100 except on the answers' tokens.
-- `rows`: { { task = name, sentence = text, label = 0-based id }, ... }.
function G:encode_answers(rows)
  local ids, labels, width = {}, {}, 0
  for i, row in ipairs(rows) do
    ids[i], labels[i] = self:prompt_ids(row.task, row.sentence), {}
    for j = 1, #ids[i] do labels[i][j] = -100 end
    for _, id in ipairs(self.prompts[row.task].answers[row.label + 1]) do
      ids[i][#ids[i] + 1] = id
      labels[i][#labels[i] + 1] = id
    end
    width = math.max(width, #ids[i])
  end
  local mask = {}
  for i = 1, #rows do
    mask[i] = {}
    for j = 1, width do
      mask[i][j] = ids[i][j] and 1 or 0
      ids[i][j] = ids[i][j] or self.tok:eos_id()
      labels[i][j] = labels[i][j] or -100
    end
  end
  return { input_ids = T.tensor(ids), attention_mask = T.tensor(mask), labels = T.tensor(labels) }
end

local function rows_of(task_name, sentences, labels)
  local ids = type(labels) == "table" and labels or labels:tolist()
  local rows = {}
  for i, sentence in ipairs(sentences) do rows[i] = { task = task_name, sentence = sentence, label = ids[i] } end
  return rows
end

-- The cross-entropy of the answers of a batch (`{ sentence = {...}, label = tensor }`).
function G:loss(task_name, batch)
  self:activate(task_name)
  return self.model(self:encode_answers(rows_of(task_name, batch.sentence, batch.label))).loss
end

-- One forward over parts of different tasks (`{ task, sentences, labels }`, labels a tensor or
-- a list of 0-based ids), through `task_name`'s route; the mean answer cross-entropy of each.
function G:losses(task_name, parts)
  self:activate(task_name)
  local rows = {}
  for _, part in ipairs(parts) do
    for _, row in ipairs(rows_of(part.task, part.sentences, part.labels)) do rows[#rows + 1] = row end
  end
  local enc = self:encode_answers(rows)
  local logits = self.model{ input_ids = enc.input_ids, attention_mask = enc.attention_mask }.logits
  local width = logits:shape()[2]
  -- Position t predicts token t + 1.
  local targets = learner.slices(parts, enc.labels:narrow(1, 1, width - 1))
  local out = {}
  for i, predicted in ipairs(learner.slices(parts, logits:narrow(1, 0, width - 1))) do
    out[i] = F.cross_entropy(predicted:reshape{ -1, predicted:shape()[3] }, targets[i]:reshape{ -1 })
  end
  return out
end

-- Exact-match accuracy of greedy answers on a task's test split (its first `limit` examples when
-- given): the generated text, special tokens and surrounding spaces dropped, must be the label.
function G:accuracy(task, limit)
  self:activate(task.name)
  local longest = self.prompts[task.name].longest
  return learner.test_accuracy(self.model, task, limit, 16, function(sentences, labels)
    local prompts, width = {}, 0
    for i, sentence in ipairs(sentences) do
      prompts[i] = self:prompt_ids(task.name, sentence)
      width = math.max(width, #prompts[i])
    end
    -- Left-padded, so that every row's answer starts at the same position.
    local ids, mask = {}, {}
    for i, row in ipairs(prompts) do
      ids[i], mask[i] = {}, {}
      for j = 1, width - #row do ids[i][j], mask[i][j] = self.tok:eos_id(), 0 end
      for _, id in ipairs(row) do ids[i][#ids[i] + 1], mask[i][#mask[i] + 1] = id, 1 end
    end
    local out = self.model:generate(T.tensor(ids), { attention_mask = T.tensor(mask), max_new_tokens = longest,
                                                     stop_ids = { self.tok:eos_id() }, pad_id = self.tok:eos_id() })
    local wanted, right = labels:tolist(), 0
    for i = 1, #sentences do
      local text = self.tok:decode(out[i - 1]:narrow(0, width, out:shape()[2] - width), { skip_special_tokens = true })
      if text:gsub("^%s+", ""):gsub("%s+$", "") == task.labels[wanted[i] + 1] then right = right + 1 end
    end
    return right
  end)
end

return G

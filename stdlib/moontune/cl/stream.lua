-- moontune.cl.stream: a continual-learning task stream over the O-LoRA benchmark
-- (shared/data/continual/olora: per task a JSON list of { sentence, label } for train and test,
-- and labels.json, the label set). Tasks are named in lower case (sst2, agnews, amazon, qqp,
-- mnli, rte, boolqa, wic, cb, copa, ...); the standard orders are
--
--   order 1  sst2 → agnews → amazon → qqp
--   order 2  mnli → rte → boolqa → wic → cb → copa
--   order 3  order 1 then order 2
--
-- `train_per_task` and `test_per_task` keep a seeded random subset of each split, so that a run
-- fits a laptop. Each task of the stream:
--   { name, id (0-based position in the stream), labels (its label names, in labels.json's
--     order), instruction (what the task asks, for a generative learner), train = Dataset,
--     test = Dataset }
-- with examples { sentence, label (0-based id into labels), label_text, task (the name),
-- task_id }. The setting is task-incremental: each task keeps its own label set.
local mt = require "moontune.core"
local M = {}

-- Task name → folder under the benchmark, and the instruction the generative setting
-- (cl/generative.lua) asks it with (the benchmark's examples already label their parts:
-- "sentence 1:", "question:", ...). Which splits the shared copy lacks: files of 4 MiB or more
-- were left out (see shared/data/README.md).
local SENTIMENT = "What is the sentiment of the following review? Choose one from the options."
local TOPIC = "What is the topic of the following text? Choose one from the options."
local NLI = "What is the logical relationship between sentence 1 and sentence 2? Choose one from the options."
M.tasks = {
  sst2 = { dir = "SC/SST-2", instruction = SENTIMENT }, amazon = { dir = "SC/amazon", instruction = SENTIMENT },
  yelp = { dir = "SC/yelp", instruction = SENTIMENT }, imdb = { dir = "SC/IMDB", instruction = SENTIMENT },
  agnews = { dir = "TC/agnews", instruction = TOPIC }, dbpedia = { dir = "TC/dbpedia", instruction = TOPIC },
  yahoo = { dir = "TC/yahoo", instruction = TOPIC },
  mnli = { dir = "NLI/MNLI", instruction = NLI }, rte = { dir = "NLI/RTE", instruction = NLI }, cb = { dir = "NLI/CB", instruction = NLI },
  qqp = { dir = "QQP/QQP", instruction = "Do the first sentence and the second sentence ask the same question? Choose one from the options." },
  boolqa = { dir = "BoolQA/BoolQA", instruction = "According to the passage, is the answer to the question true or false? Choose one from the options." },
  copa = { dir = "COPA/COPA", instruction = "Answer the question below. Choose one from the options." },
  multirc = { dir = "MultiRC/MultiRC", instruction = "According to the paragraph and the question, is the candidate answer true or false? Choose one from the options." },
  wic = { dir = "WiC/WiC", instruction = "Is the word used with the same meaning in the two sentences? Choose one from the options." },
}

M.orders = {
  { "sst2", "agnews", "amazon", "qqp" },
  { "mnli", "rte", "boolqa", "wic", "cb", "copa" },
}
M.orders[3] = {}
for _, o in ipairs({ M.orders[1], M.orders[2] }) do
  for _, t in ipairs(o) do M.orders[3][#M.orders[3] + 1] = t end
end

local ACCEPTED = { "tasks", "order", "dir", "train_per_task", "test_per_task", "seed" }

local function fail(message)
  error("cl.stream: " .. message, 0)
end

local function known_tasks()
  local names = {}
  for name in pairs(M.tasks) do names[#names + 1] = name end
  table.sort(names)
  return table.concat(names, ", ")
end

local function exists(path)
  local f = io.open(path, "r")
  if f then f:close() end
  return f ~= nil
end

-- A seeded random choice of `n` of `count` positions, in their original order (a small
-- generator of its own: choosing a budget does not move the run's random streams).
local function subset(count, n, seed)
  if not n or n >= count then
    local all = {}
    for i = 1, count do all[i] = i end
    return all
  end
  local state = (seed * 2654435761 + 97) & 0x7fffffff
  local function next_int(bound)
    state = (state * 1103515245 + 12345) & 0x7fffffff
    return state % bound
  end
  local order = {}
  for i = 1, count do order[i] = i end
  for i = count, 2, -1 do
    local j = next_int(i) + 1
    order[i], order[j] = order[j], order[i]
  end
  local picked = {}
  for i = 1, n do picked[i] = order[i] end
  table.sort(picked)
  return picked
end

local function read_split(task, path, split, labels, budget, seed)
  if not exists(path) then
    fail(string.format("task '%s' has no %s split (%s is absent; the shared copy leaves out files of 4 MiB or more)", task.name, split, path))
  end
  local list, err = mt.json.read(path)
  if type(list) ~= "table" then fail(string.format("%s: %s", path, tostring(err or "not a JSON list"))) end
  local ids = {}
  for i, name in ipairs(labels) do ids[name] = i - 1 end
  local rows = {}
  for _, i in ipairs(subset(#list, budget, seed)) do
    local ex = list[i]
    if type(ex) ~= "table" or type(ex.sentence) ~= "string" then
      fail(string.format("%s: example %d is not a { sentence, label } record", path, i))
    end
    local id = ids[ex.label]
    if id == nil then
      fail(string.format("%s: example %d has the label %q, which labels.json does not list (%s)", path, i, tostring(ex.label), table.concat(labels, ", ")))
    end
    rows[#rows + 1] = { sentence = ex.sentence, label = id, label_text = ex.label, task = task.name, task_id = task.id }
  end
  return mt.data.from(rows)
end

local function check_count(name, v)
  if v ~= nil and (math.type(v) ~= "integer" or v < 1) then
    fail(string.format("%s must be a whole number of at least 1, got %s", name, tostring(v)))
  end
end

function M.stream(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("the options must be a table, got " .. type(opts)) end
  for key in pairs(opts) do
    local ok = false
    for _, a in ipairs(ACCEPTED) do if a == key then ok = true end end
    if not ok then fail("unknown option '" .. tostring(key) .. "' (accepted: " .. table.concat(ACCEPTED, ", ") .. ")") end
  end
  check_count("train_per_task", opts.train_per_task)
  check_count("test_per_task", opts.test_per_task)
  local names = opts.tasks
  if names == nil then
    local order = opts.order or 1
    names = M.orders[order]
    if not names then fail(string.format("there is no order %s (orders: 1, 2, 3)", tostring(order))) end
  elseif opts.order ~= nil then
    fail("give tasks or order, not both")
  end
  if type(names) ~= "table" or #names == 0 then fail("tasks must be a list of task names (" .. known_tasks() .. ")") end
  local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
  local dir = opts.dir or (shared .. "/continual/olora")
  local seed = opts.seed or 0
  local stream = { tasks = {}, names = {} }
  local seen = {}
  for i, name in ipairs(names) do
    if type(name) ~= "string" or not M.tasks[name] then
      fail(string.format("unknown task %s (tasks: %s)", type(name) == "string" and ("'" .. name .. "'") or tostring(name), known_tasks()))
    end
    if seen[name] then fail("task '" .. name .. "' comes twice in the stream") end
    seen[name] = true
    local folder = dir .. "/" .. M.tasks[name].dir
    local labels_path = folder .. "/labels.json"
    if not exists(labels_path) then fail(string.format("task '%s': %s is missing (a task folder needs labels.json)", name, labels_path)) end
    local labels = mt.json.read(labels_path)
    if type(labels) ~= "table" or #labels == 0 then fail(labels_path .. " must be a JSON list of label names") end
    local task = { name = name, id = i - 1, labels = labels, instruction = M.tasks[name].instruction }
    task.train = read_split(task, folder .. "/train.json", "train", labels, opts.train_per_task, seed * 1000 + 2 * i)
    task.test = read_split(task, folder .. "/test.json", "test", labels, opts.test_per_task, seed * 1000 + 2 * i + 1)
    stream.tasks[i] = task
    stream.names[i] = name
  end
  return stream
end

return M

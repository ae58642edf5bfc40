-- cl.lua — mt.cl: the continual-learning metrics against values worked out by hand, and the
-- O-LoRA task stream (orders, budgets, labels) with its misuse errors.
local mt = require "moontune"

-- f() must fail with a message that contains every one of `needles`.
local function errors(f, needles)
  local ok, err = pcall(f)
  assert(not ok, "expected an error mentioning " .. table.concat(needles, ", "))
  for _, n in ipairs(needles) do
    assert(tostring(err):find(n, 1, true), string.format("%q lacks %q", tostring(err), n))
  end
end

local data = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
local olora = data .. "/continual/olora"
local have_data = io.open(olora .. "/SC/SST-2/labels.json") ~= nil

local function near(a, b, what)
  assert(math.abs(a - b) < 1e-12, string.format("%s: %.15g, want %.15g", what, a, b))
end

return {
  metrics_by_hand = function()
    -- After task 1: 0.9 on it; task 2 drops it to 0.6; task 3 to 0.5.
    local R = { { 0.9, 0.1, 0.2 }, { 0.6, 0.8, 0.3 }, { 0.5, 0.7, 0.85 } }
    local m = mt.cl.metrics(R, { baseline = { 0.5, 0.25, 0.2 } })
    near(m.average_accuracy, (0.5 + 0.7 + 0.85) / 3, "average accuracy: the last row's mean")
    -- the first task: best 0.9 before, 0.5 at the end; the second: 0.8, then 0.7; the last task
    -- has no forgetting of its own
    assert(#m.forgetting_per_task == 2)
    near(m.forgetting_per_task[1], 0.4, "forgetting of the first task")
    near(m.forgetting_per_task[2], 0.1, "forgetting of the second task")
    near(m.forgetting, 0.25, "mean forgetting")
    near(m.bwt, ((0.5 - 0.9) + (0.7 - 0.8)) / 2, "backward transfer (negative: forgetting)")
    near(m.fwt, ((0.1 - 0.25) + (0.3 - 0.2)) / 2, "forward transfer against the baseline")
    near(m.average_incremental_accuracy, (0.9 + 0.7 + (0.5 + 0.7 + 0.85) / 3) / 3, "average incremental accuracy")

    -- Positive transfer: later tasks help an earlier one; the best earlier accuracy is a later row's.
    local up = mt.cl.metrics({ { 0.6, 0.5 }, { 0.7, 0.9 } }, { baseline = { 0.5, 0.3 } })
    near(up.bwt, 0.1, "bwt is positive when a task improves")
    near(up.forgetting, -0.1, "forgetting is negative then (max over earlier rows minus final)")
    near(up.fwt, 0.2, "fwt: R[1][2] - baseline[2]")

    -- After one task: nothing forgotten, no transfer to measure; partial rows are accepted.
    local one = mt.cl.metrics({ { 0.75 } })
    near(one.average_accuracy, 0.75, "one task")
    assert(one.forgetting == 0 and one.bwt == 0 and one.fwt == nil and #one.forgetting_per_task == 0)
    local partial = mt.cl.metrics({ { 0.8 }, { 0.6, 0.9 } })
    near(partial.forgetting, 0.2, "rows with only the tasks trained so far")
    assert(partial.fwt == nil, "no fwt without entries for untrained tasks and a baseline")
  end,

  metrics_misuse = function()
    errors(function() mt.cl.metrics({}) end, { "cl.metrics", "no rows" })
    errors(function() mt.cl.metrics({ { 0.5 }, { 0.4 } }) end, { "cl.metrics", "row 2" })
    errors(function() mt.cl.metrics({ { "a" } }) end, { "cl.metrics", "R[1][1]" })
    errors(function() mt.cl.metrics({ { 0 / 0 } }) end, { "cl.metrics", "nan" })
    errors(function() mt.cl.metrics({ { 0.5 } }, { baseline = 3 }) end, { "cl.metrics", "baseline" })
    errors(function() mt.cl.metrics({ { 0.5 } }, { base = {} }) end, { "cl.metrics", "unknown option 'base'" })
  end,

  stream_orders_and_budgets = function()
    if not have_data then print("SKIPPED: no O-LoRA data at " .. olora) return end
    assert(#mt.cl.order(1) == 4 and #mt.cl.order(2) == 6 and #mt.cl.order(3) == 10 and mt.cl.order(4) == nil)
    assert(table.concat(mt.cl.order(3), " ") == table.concat(mt.cl.order(1), " ") .. " " .. table.concat(mt.cl.order(2), " "))
    assert(#mt.cl.task_names() == 15)
    local s = mt.cl.stream{ order = 1, train_per_task = 40, test_per_task = 16, dir = olora, seed = 3 }
    assert(table.concat(s.names, " ") == "sst2 agnews amazon qqp")
    for i, t in ipairs(s.tasks) do
      assert(t.id == i - 1 and #t.train == 40 and #t.test == 16, t.name)
      for ex in t.train:iter() do
        assert(ex.task == t.name and ex.task_id == t.id)
        assert(math.type(ex.label) == "integer" and t.labels[ex.label + 1] == ex.label_text, t.name .. ": label ids follow labels.json")
      end
    end
    assert(#s.tasks[3].labels == 5, "amazon has five labels")
    -- The same seed keeps the same subset; another seed another one.
    local again = mt.cl.stream{ tasks = { "sst2" }, train_per_task = 40, test_per_task = 16, dir = olora, seed = 3 }
    local other = mt.cl.stream{ tasks = { "sst2" }, train_per_task = 40, test_per_task = 16, dir = olora, seed = 4 }
    local function first(st) return st.tasks[1].train:head(1)[1].sentence end
    assert(first(again) == first(s), "a seed picks the same examples")
    assert(first(other) ~= first(s), "another seed picks others")
    local full = mt.cl.stream{ tasks = { "cb" }, dir = olora }
    assert(#full.tasks[1].train == 250 and #full.tasks[1].test == 56, "without a budget every example")
  end,

  stream_misuse = function()
    if not have_data then print("SKIPPED: no O-LoRA data at " .. olora) return end
    errors(function() mt.cl.stream{ tasks = { "sst3" }, dir = olora } end, { "cl.stream", "unknown task 'sst3'", "agnews" })
    errors(function() mt.cl.stream{ tasks = { "multirc" }, dir = olora } end, { "cl.stream", "multirc", "test", "absent" })
    errors(function() mt.cl.stream{ order = 4, dir = olora } end, { "cl.stream", "order 4" })
    errors(function() mt.cl.stream{ order = 1, tasks = { "sst2" }, dir = olora } end, { "cl.stream", "not both" })
    errors(function() mt.cl.stream{ tasks = { "sst2", "sst2" }, dir = olora } end, { "cl.stream", "twice" })
    errors(function() mt.cl.stream{ train_per_task = 0.5, dir = olora } end, { "cl.stream", "train_per_task" })
    -- A task folder without labels.json, and a label labels.json does not list.
    local dir = os.tmpname(); os.remove(dir); assert(os.execute("mkdir -p " .. dir .. "/SC/SST-2"))
    local function write(path, text) local f = assert(io.open(path, "w")); f:write(text); f:close() end
    write(dir .. "/SC/SST-2/train.json", '[{"sentence": "good", "label": "Good"}]')
    write(dir .. "/SC/SST-2/test.json", '[{"sentence": "meh", "label": "Fine"}]')
    errors(function() mt.cl.stream{ tasks = { "sst2" }, dir = dir } end, { "cl.stream", "labels.json", "missing" })
    write(dir .. "/SC/SST-2/labels.json", '["Good", "Bad"]')
    errors(function() mt.cl.stream{ tasks = { "sst2" }, dir = dir } end, { "cl.stream", "test.json", "example 1", "Fine", "Good, Bad" })
    os.execute("rm -rf " .. dir)
  end,

  sampler_by_hand = function()
    local p = mt.cl.sampler{ sizes = { 100, 400 }, how = "proportional" }.probabilities()
    near(p[1], 0.2, "proportional"); near(p[2], 0.8, "proportional")
    -- T = 2: p ∝ √n, so 10 : 20
    local t = mt.cl.sampler{ sizes = { 100, 400 }, how = "temperature", temperature = 2 }.probabilities()
    near(t[1], 1 / 3, "temperature 2"); near(t[2], 2 / 3, "temperature 2")
    local rr = mt.cl.sampler{ sizes = { 100, 400, 7 }, how = "round_robin" }
    assert(table.concat(rr.draw(7), ",") == "1,2,3,1,2,3,1", "round robin takes the tasks in turn")
    -- Draws follow the probabilities (10,000 rows: 3 standard deviations ≈ 0.012).
    math.randomseed(1)
    local counts = { 0, 0 }
    for _, k in ipairs(mt.cl.sampler{ sizes = { 100, 400 }, how = "temperature", temperature = 2 }.draw(10000)) do counts[k] = counts[k] + 1 end
    assert(math.abs(counts[1] / 10000 - 1 / 3) < 0.015, "drawn share " .. counts[1] / 10000)
    errors(function() mt.cl.sampler{ sizes = { 1 }, how = "uniformly" } end, { "cl.sampler", "round_robin", "uniformly" })
    errors(function() mt.cl.sampler{ sizes = { 0 } } end, { "cl.sampler", "sizes[1]" })
    errors(function() mt.cl.sampler{ sizes = { 1 }, how = "temperature", temperature = 0 } end, { "cl.sampler", "temperature" })
  end,

  weighting_by_hand = function()
    local a, b = mt.tensor.tensor(2.0), mt.tensor.tensor(0.5)
    near(mt.cl.weighting{ how = "fixed", weights = { 1, 3 } }.combine({ a, b }):item(), 3.5, "fixed")
    near(mt.cl.weighting{ how = "fixed", weights = { 1, 3 } }.combine({ nil, b }):item(), 1.5, "a task absent from the batch")
    local u = mt.cl.weighting{ how = "uncertainty", tasks = 2 }
    mt.no_grad(function() u.log_variance:copy_(mt.tensor.tensor({ 0.0, math.log(4) })) end)
    -- exp(-0)·2 + 0/2 + exp(-log 4)·0.5 + log(4)/2
    local loss = u.combine({ a, b })
    assert(math.abs(loss:item() - (2 + 0.125 + math.log(4) / 2)) < 1e-6, "uncertainty weighting (Kendall et al.), float32: " .. loss:item())
    loss:backward()
    -- d/ds (e^{-s} L + s/2) = −e^{-s} L + 1/2: −1.5 for the first task, 0.375 for the second
    local g = u.log_variance.grad:tolist()
    assert(math.abs(g[1] + 1.5) < 1e-6 and math.abs(g[2] - 0.375) < 1e-6, "gradients " .. g[1] .. ", " .. g[2])
    assert(math.abs(u.weights()[2] - 0.25) < 1e-7, "the weight is exp(-s)")
    errors(function() mt.cl.weighting{ how = "softmax" } end, { "cl.weighting", "softmax" })
    errors(function() mt.cl.weighting{ how = "uncertainty" } end, { "cl.weighting", "tasks" })
  end,

  -- A mixed batch routed row by row (BatchSplit) gives each task's rows what that task's own
  -- adapter alone gives them.
  batch_split_routes_rows = function()
    if not have_data or not os.getenv("MOONTUNE_MINILM") then print("SKIPPED: no O-LoRA data or MiniLM") return end
    mt.manual_seed(0)
    local s = mt.cl.stream{ tasks = { "sst2", "agnews" }, train_per_task = 8, test_per_task = 4, dir = olora }
    local l = mt.cl.learner{ model = os.getenv("MOONTUNE_MINILM"), tasks = s.tasks, max_len = 24 }
    for _, t in ipairs(s.tasks) do
      mt.peft.bottleneck(l.model, { name = t.name, reduction_factor = 16, init_weights = "bert" })
      l:route(t.name, t.name)
    end
    l.model:eval()
    local a = { s.tasks[1].train:head(3)[1].sentence, s.tasks[1].train:head(3)[2].sentence, s.tasks[1].train:head(3)[3].sentence }
    local b = { s.tasks[2].train:head(2)[1].sentence, s.tasks[2].train:head(2)[2].sentence }
    mt.no_grad(function()
      local mixed = l:features_mixed{ { task = "sst2", sentences = a }, { task = "agnews", sentences = b } }
      local fa, fb = l:features("sst2", a), l:features("agnews", b)
      assert(mixed:narrow(0, 0, 3):allclose(fa, { atol = 1e-5 }), "sst2 rows through sst2's adapter")
      assert(mixed:narrow(0, 3, 2):allclose(fb, { atol = 1e-5 }), "agnews rows through agnews's adapter")
      assert(not fb:allclose(l:features("sst2", b), { atol = 1e-5 }), "the two adapters differ (bert init)")
    end)
    errors(function() l:features_mixed{ { task = "rte", sentences = a } } end, { "cl.learner", "features_mixed", "'rte'" })
  end,

  -- The class-incremental learner: one head over every task's labels, each task's labels a block
  -- of its classes; the loss and the accuracy score all the classes, and routes by task id are
  -- refused.
  class_incremental_learner_scores_every_class = function()
    if not have_data or not os.getenv("MOONTUNE_MINILM") then print("SKIPPED: no O-LoRA data or MiniLM") return end
    mt.manual_seed(0)
    local s = mt.cl.stream{ tasks = { "sst2", "agnews", "cb" }, train_per_task = 8, test_per_task = 6, dir = olora }
    local l = mt.cl.learner{ model = os.getenv("MOONTUNE_MINILM"), tasks = s.tasks, max_len = 24, class_incremental = true }
    local classes = #s.tasks[1].labels + #s.tasks[2].labels + #s.tasks[3].labels
    assert(classes == 2 + 4 + 3, "sst2, agnews and cb have 2, 4 and 3 labels")
    local params = l:parameters()
    assert(params["head.weight"] and params["head.weight"]:size()[1] == classes and not l.heads, "one head over every class")
    local batch = s.tasks[3].train:batch{ size = 4 }:iter():next()
    l.model:eval()
    mt.no_grad(function()
      local logits = l:logits("cb", batch.sentence)
      assert(logits:size()[2] == classes, "the logits cover every class, not cb's alone")
      local targets = batch.label + 6
      near(l:loss("cb", batch):item(), mt.nn.functional.cross_entropy(logits, targets):item(), "cb's labels are classes 6..8")
      assert(l:task_logits("cb", l:features("cb", batch.sentence)):equal(logits:narrow(1, 6, 3)), "cb's own block")
      -- (a forward of other rows pads differently: equal to float32 precision)
      local function close(a, b, what) assert(math.abs(a - b) < 1e-5, string.format("%s: %.9g, want %.9g", what, a, b)) end
      local losses = l:losses("cb", { { task = "sst2", sentences = { batch.sentence[1] }, labels = { 1 } },
                                      { task = "cb", sentences = { batch.sentence[2] }, labels = { 0 } } })
      close(losses[1]:item(), mt.nn.functional.cross_entropy(logits:narrow(0, 0, 1), mt.tensor.tensor{ 1 }):item(), "sst2's label 1 is class 1")
      close(losses[2]:item(), mt.nn.functional.cross_entropy(logits:narrow(0, 1, 1), mt.tensor.tensor{ 6 }):item(), "cb's label 0 is class 6")
      -- Accuracy: right only where the argmax over all nine classes is the task's own class.
      local task = s.tasks[2]
      local hits, n = 0, 0
      for b in task.test:batch{ size = 64 }:iter() do
        local predicted = l:logits(task.name, b.sentence):argmax(-1)
        for i = 1, #b.sentence do
          n = n + 1
          if predicted[i - 1]:item() == b.label[i - 1]:item() + 2 then hits = hits + 1 end
        end
      end
      near(l:accuracy(task), hits / n, "agnews accuracy over every class")
    end)
    errors(function() l:route("sst2", "sst2") end, { "cl.learner", "task id", "class-incremental" })
    errors(function() l:loss("rte", batch) end, { "cl.learner:head_logits", "unknown task 'rte'", "sst2, agnews, cb" })
    errors(function() l:targets("rte", { 0 }) end, { "cl.learner:targets", "unknown task 'rte'" })
  end,
}

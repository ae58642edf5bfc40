-- moontune.eval (mt.eval): the evaluations that tell whether fine-tuning helped.
--
--   classify     a causal LM as a classifier: each label string scored by its log-likelihood
--                after the prompt, the best one predicted; zero-shot, or k-shot with k examples
--                of a train split in the prompt (the baseline before fine-tuning)
--   generate     generation scored against references with BLEU, chrF and ROUGE
--   perplexity   token-weighted perplexity of a model on a text (a file or a string), in windows
--   write_errors the worst examples (input, prediction, reference, score) as JSON Lines
--
-- Each returns the metrics and `records`, one per example, for error analysis.
local mt = require "moontune.core"
local E = {}

local function check_options(call, opts, accepted)
  if type(opts) ~= "table" then error(string.format("%s: the options must be a table, got %s", call, type(opts)), 3) end
  for k in pairs(opts) do
    local ok = false
    for _, a in ipairs(accepted) do if a == k then ok = true end end
    if not ok then
      table.sort(accepted)
      error(string.format("%s: unknown option '%s' (accepted: %s)", call, tostring(k), table.concat(accepted, ", ")), 3)
    end
  end
end

-- Checks the model and tokenizer arguments of an evaluation.
local function check_model(call, model, tok)
  local kind = mt.checkpoint.kind(model)
  if kind ~= "model" then error(string.format("%s: argument 1 (model) must be a loaded model (mt.models.load), got %s", call, kind), 3) end
  if tok ~= nil and mt.checkpoint.kind(tok) ~= "tokenizer" then
    error(string.format("%s: argument 2 (tok) must be a tokenizer (mt.tokenizer.load), got %s", call, mt.checkpoint.kind(tok)), 3)
  end
end

-- A prompt maker: a function of the example, or a template whose {field}s name fields.
local function prompter(call, p)
  if type(p) == "function" then return p end
  if type(p) ~= "string" then error(call .. ": prompt must be a template string or a function, got " .. type(p), 3) end
  return function(ex)
    return (p:gsub("{([%w_]+)}", function(field)
      local v = ex[field]
      if v == nil then error(call .. ": the prompt template names '" .. field .. "', which the example lacks", 0) end
      return tostring(v)
    end))
  end
end

-- The examples of a dataset or a Lua list, up to `limit`.
local function examples_of(call, data, limit)
  local out = {}
  if type(data) == "table" then
    for i, ex in ipairs(data) do if limit and i > limit then break end out[i] = ex end
  elseif mt.checkpoint.kind(data) == "dataset" then
    for ex in data:iter() do
      out[#out + 1] = ex
      if limit and #out >= limit then break end
    end
  else
    error(call .. ": data must be a dataset or a list of examples, got " .. type(data), 3)
  end
  if #out == 0 then error(call .. ": no examples to evaluate", 3) end
  return out
end

local function last_n(ids, n)
  if #ids <= n then return ids end
  local out = {}
  for i = #ids - n + 1, #ids do out[#out + 1] = ids[i] end
  return out
end

-- Sum (and count) of the log-probabilities of each continuation after its context, by batches:
-- rows = { { context_ids, continuation_ids }, ... }.
function E.continuation_logprobs(model, rows, opts)
  local call = "eval.continuation_logprobs"
  check_model(call, model)
  opts = opts or {}
  check_options(call, opts, { "batch_size", "pad_id" })
  if type(rows) ~= "table" then error(call .. ": argument 2 (rows) must be a list of { context_ids, continuation_ids }, got " .. type(rows), 2) end
  for i, r in ipairs(rows) do
    if type(r) ~= "table" or type(r[1]) ~= "table" or type(r[2]) ~= "table" then
      error(string.format("%s: row %d must be { context_ids, continuation_ids } (two lists of token ids)", call, i), 2)
    end
    if #r[1] == 0 then error(string.format("%s: row %d has no context (the first token predicts nothing)", call, i), 2) end
  end
  if type(opts.batch_size or 1) ~= "number" or (opts.batch_size or 1) < 1 then error(call .. ": batch_size must be a positive number", 2) end
  local batch_size, pad = opts.batch_size or 8, opts.pad_id or 0
  local sums = {}
  mt.no_grad(function()
    for first = 1, #rows, batch_size do
      local ids, masks, label_masks, width = {}, {}, {}, 0
      local last = math.min(first + batch_size - 1, #rows)
      for r = first, last do width = math.max(width, #rows[r][1] + #rows[r][2]) end
      for r = first, last do
        local ctx, cont = rows[r][1], rows[r][2]
        local row, mask, lm = {}, {}, {}
        for _, t in ipairs(ctx) do row[#row + 1] = t end
        for _, t in ipairs(cont) do row[#row + 1] = t end
        for j = 1, width do
          mask[j] = j <= #row and 1 or 0
          if j > #row then row[j] = pad end
        end
        -- Target j (0-based j+1 in the row) is a continuation token when it lies after the context.
        for j = 1, width - 1 do lm[j] = (j >= #ctx and j < #ctx + #cont) and 1 or 0 end
        ids[#ids + 1], masks[#masks + 1], label_masks[#label_masks + 1] = row, mask, lm
      end
      local input = mt.tensor.tensor(ids)
      local logits = model{ input_ids = input, attention_mask = mt.tensor.tensor(masks) }.logits:float()
      local logp = logits:narrow(1, 0, width - 1):log_softmax(-1)
      local targets = input:narrow(1, 1, width - 1):unsqueeze(-1)
      local picked = logp:gather(-1, targets):squeeze(-1)
      local s = (picked * mt.tensor.tensor(label_masks):float()):sum(-1):tolist()
      for k, v in ipairs(s) do sums[first + k - 1] = v end
    end
  end)
  return sums
end

-- k examples of `train` for the prompt: in a seeded order, taking labels in turn when a label
-- field is given, so that every class is shown.
local function pick_shots(train, k, label_field, seed)
  local pool = examples_of("eval.classify", train)
  local order = {}
  for i = 1, #pool do order[i] = i end
  local x = seed or 0
  for i = #order, 2, -1 do
    x = (x * 6364136223846793005 + 1442695040888963407)
    local j = ((x >> 33) % i) + 1
    order[i], order[j] = order[j], order[i]
  end
  if not label_field then
    local out = {}
    for i = 1, math.min(k, #order) do out[i] = pool[order[i]] end
    return out
  end
  local by_label, labels = {}, {}
  for _, i in ipairs(order) do
    local l = tostring(pool[i][label_field])
    if not by_label[l] then by_label[l] = {}; labels[#labels + 1] = l end
    table.insert(by_label[l], pool[i])
  end
  table.sort(labels)
  local out, round = {}, 1
  while #out < k do
    local added = false
    for _, l in ipairs(labels) do
      if #out < k and by_label[l][round] then out[#out + 1] = by_label[l][round]; added = true end
    end
    if not added then break end
    round = round + 1
  end
  return out
end

-- mt.eval.classify(model, tok, data, { labels = { "negative", "positive" }, prompt = "{sentence}",
--   label_field = "label", shots = 0, train = ds, seed = 0, separator = "\n\n", label_prefix = " ",
--   batch_size = 8, max_length = 512, limit = n }):
-- { accuracy, macro_f1, confusion, predictions, references, records }. A label field holding
-- 0-based indices or the label strings themselves both work.
function E.classify(model, tok, data, opts)
  local call = "eval.classify"
  check_model(call, model, tok)
  opts = opts or {}
  check_options(call, opts, { "labels", "prompt", "label_field", "shots", "train", "seed", "separator", "label_prefix", "batch_size", "max_length", "limit" })
  local labels = opts.labels
  if type(labels) ~= "table" or #labels < 2 then error(call .. ": labels must list at least two label strings", 2) end
  local label_field = opts.label_field or "label"
  local prompt = prompter(call, opts.prompt or "{text}")
  local prefix_label, sep = opts.label_prefix or " ", opts.separator or "\n\n"
  local max_length = opts.max_length or 512
  local examples = examples_of(call, data, opts.limit)
  local index_of = {}
  for i, l in ipairs(labels) do index_of[l] = i end
  local function reference(ex)
    local v = ex[label_field]
    if math.type(v) == "integer" and labels[v + 1] then return v + 1 end
    if index_of[v] then return index_of[v] end
    error(string.format("%s: the example's %s (%s) is neither a 0-based index into labels nor one of them", call, label_field, tostring(v)), 0)
  end
  local context = ""
  if (opts.shots or 0) > 0 then
    if not opts.train then error(call .. ": shots > 0 needs train = the examples to take them from", 2) end
    for _, shot in ipairs(pick_shots(opts.train, opts.shots, label_field, opts.seed)) do
      context = context .. prompt(shot) .. prefix_label .. labels[reference(shot)] .. sep
    end
  end
  local label_ids = {}
  for i, l in ipairs(labels) do label_ids[i] = tok:encode(prefix_label .. l, { add_special_tokens = false }) end
  local longest = 0
  for _, ids in ipairs(label_ids) do longest = math.max(longest, #ids) end
  local rows, inputs = {}, {}
  for i, ex in ipairs(examples) do
    inputs[i] = prompt(ex)
    local ctx = tok:encode(context .. inputs[i])
    ctx = last_n(ctx, max_length - longest)
    for j = 1, #labels do rows[#rows + 1] = { ctx, label_ids[j] } end
  end
  local scores = E.continuation_logprobs(model, rows, { batch_size = (opts.batch_size or 8) * #labels, pad_id = tok:pad_id() or 0 })
  local predictions, references, records = {}, {}, {}
  for i, ex in ipairs(examples) do
    local best, best_score, ref = 1, -math.huge, reference(ex)
    local row = {}
    for j = 1, #labels do
      local s = scores[(i - 1) * #labels + j]
      row[j] = s
      if s > best_score then best, best_score = j, s end
    end
    predictions[i], references[i] = labels[best], labels[ref]
    local others = -math.huge
    for j = 1, #labels do if j ~= ref then others = math.max(others, row[j]) end end
    -- The margin of the right label over the best wrong one: negative when the prediction is wrong.
    records[i] = { input = inputs[i], prediction = labels[best], reference = labels[ref], score = row[ref] - others, correct = best == ref }
  end
  return {
    accuracy = mt.metrics.accuracy(predictions, references),
    macro_f1 = mt.metrics.f1(predictions, references, { average = "macro", labels = labels }),
    confusion = mt.metrics.confusion_matrix(predictions, references, { labels = labels }),
    predictions = predictions, references = references, records = records, shots = opts.shots or 0,
  }
end

-- mt.eval.generate(model, tok, data, { prompt = "{source}", reference = "target",
--   max_new_tokens = 64, batch_size = 8, limit = n, metrics = { "bleu", "chrf", "rouge" } }):
-- greedy generations scored against the references; records scored by sentence BLEU.
function E.generate(model, tok, data, opts)
  local call = "eval.generate"
  check_model(call, model, tok)
  opts = opts or {}
  check_options(call, opts, { "prompt", "reference", "max_new_tokens", "batch_size", "limit", "metrics" })
  local wanted = opts.metrics or { "bleu", "chrf", "rouge" }
  for _, m in ipairs(wanted) do
    if m ~= "bleu" and m ~= "chrf" and m ~= "rouge" then error(call .. ": unknown metric '" .. tostring(m) .. "' (known: bleu, chrf, rouge)", 2) end
  end
  local prompt = prompter(call, opts.prompt or "{text}")
  local ref_field = opts.reference or "reference"
  local examples = examples_of(call, data, opts.limit)
  local predictions, references, inputs = {}, {}, {}
  local batch_size = opts.batch_size or 8
  mt.no_grad(function()
    for first = 1, #examples, batch_size do
      local texts = {}
      for i = first, math.min(first + batch_size - 1, #examples) do
        inputs[i] = prompt(examples[i])
        local ref = examples[i][ref_field]
        if type(ref) ~= "string" then error(string.format("%s: example %d has no string field '%s' to compare with", call, i, ref_field), 0) end
        references[i] = ref
        texts[#texts + 1] = inputs[i]
      end
      local enc = tok:encode_batch(texts, { padding_side = "left" })
      local out = model:generate(enc.input_ids, { attention_mask = enc.attention_mask, max_new_tokens = opts.max_new_tokens or 64, tokenizer = tok })
      local width = enc.input_ids:shape()[2]
      for k = 1, #texts do
        local new = out[k - 1]:narrow(0, width, out:shape()[2] - width):tolist()
        predictions[first + k - 1] = tok:decode(new, { skip_special_tokens = true }):gsub("^%s+", ""):gsub("%s+$", "")
      end
    end
  end)
  local result = { predictions = predictions, references = references, records = {} }
  for _, m in ipairs(wanted) do
    if m == "bleu" then result.bleu = mt.metrics.bleu(predictions, { references }).score
    elseif m == "chrf" then result.chrf = mt.metrics.chrf(predictions, { references }).score
    elseif m == "rouge" then
      local r = mt.metrics.rouge(predictions, references, { use_stemmer = true })
      result.rouge1, result.rouge2, result.rougeL = r.rouge1.fmeasure, r.rouge2.fmeasure, r.rougeL.fmeasure
    end
  end
  for i = 1, #examples do
    result.records[i] = { input = inputs[i], prediction = predictions[i], reference = references[i], score = mt.metrics.sentence_bleu(predictions[i], { references[i] }).score }
  end
  return result
end

-- mt.eval.perplexity(model, tok, path_or_text, { max_length = 256, stride = max_length,
--   batch_size = 4 }): the text cut into windows of max_length tokens, each window after the first
-- starting `stride` tokens after the one before and scoring only its new tokens (as transformers'
-- perplexity guide); token-weighted over the whole text. { perplexity, loss, tokens }.
function E.perplexity(model, tok, source, opts)
  local call = "eval.perplexity"
  check_model(call, model, tok)
  opts = opts or {}
  check_options(call, opts, { "max_length", "stride", "batch_size" })
  if type(source) ~= "string" then error(call .. ": expected a file path or a text, got " .. type(source), 2) end
  local text = source
  local f = io.open(source, "r")
  if f then text = f:read("a"); f:close() end
  local ids = tok:encode(text)
  local max_length = opts.max_length or 256
  local stride = opts.stride or max_length
  if stride < 1 or stride > max_length then error(call .. ": stride must be between 1 and max_length", 2) end
  if #ids < 2 then error(call .. ": the text has fewer than two tokens", 2) end
  local rows, prev_end = {}, 1
  local start = 1
  while true do
    local stop = math.min(start + max_length - 1, #ids)
    local new_from = math.max(prev_end + 1, start + 1)
    local ctx, cont = {}, {}
    for i = start, new_from - 1 do ctx[#ctx + 1] = ids[i] end
    for i = new_from, stop do cont[#cont + 1] = ids[i] end
    if #cont > 0 then rows[#rows + 1] = { ctx, cont } end
    prev_end = stop
    if stop == #ids then break end
    start = start + stride
  end
  local sums = E.continuation_logprobs(model, rows, { batch_size = opts.batch_size or 4, pad_id = tok:pad_id() or 0 })
  local total, tokens = 0, 0
  for i, s in ipairs(sums) do total = total - s; tokens = tokens + #rows[i][2] end
  return { perplexity = math.exp(total / tokens), loss = total / tokens, tokens = tokens }
end

-- mt.eval.write_errors(path, records, { worst = 20 }): the `worst` records by score (lowest
-- first), one JSON object per line with input, prediction, reference and score.
function E.write_errors(path, records, opts)
  local call = "eval.write_errors"
  if type(path) ~= "string" then error(call .. ": argument 1 (path) must be a file path, got " .. type(path), 2) end
  opts = opts or {}
  check_options(call, opts, { "worst" })
  if type(records) ~= "table" then error(call .. ": records must be the list an evaluation returned", 2) end
  local sorted = {}
  for i, r in ipairs(records) do
    if type(r) ~= "table" then error(string.format("%s: record %d must be a table (input, prediction, reference, score), got %s", call, i, type(r)), 2) end
    if r.score ~= nil and type(r.score) ~= "number" then error(string.format("%s: record %d's score must be a number, got %s", call, i, type(r.score)), 2) end
    sorted[i] = r
  end
  table.sort(sorted, function(a, b) return (a.score or 0) < (b.score or 0) end)
  local f, err = io.open(path, "w")
  if not f then return nil, call .. ": " .. tostring(err) end
  for i = 1, math.min(opts.worst or 20, #sorted) do
    local r = sorted[i]
    f:write(mt.json.encode({ input = r.input, prediction = r.prediction, reference = r.reference, score = r.score }), "\n")
  end
  f:close()
  return true
end

mt.eval = E
return E

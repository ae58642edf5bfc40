-- sentence_tasks.lua — the sentence classification sets of ../shared/data/classification as
-- tasks for recipes on a sentence encoder (scripts/adapter_fusion.lua, scripts/unipelt.lua):
-- reading them, a deterministic train/test split, tokenised batches, a head on the mean-pooled
-- encoder output and accuracy on held-out rows.

local mt = require "moontune"
local T = mt.tensor

local M = {}

local shared = os.getenv("MOONTUNE_TEST_DATA") or "../shared/data"
M.shared = shared
local classification = shared .. "/classification/"

-- Lines of a tab-separated file as { text, label } (label by `labels`, a map from the file's
-- label strings), skipping a header. Bytes outside ASCII in these corpora are mostly Latin-1
-- punctuation: they become spaces.
local function read_tsv(path, text_col, label_col, labels, skip_header)
  local out = {}
  local f = assert(io.open(path), "cannot open " .. path)
  local first = true
  for line in f:lines() do
    if not (first and skip_header) then
      local cols = {}
      for c in (line .. "\t"):gmatch("([^\t]*)\t") do cols[#cols + 1] = c end
      local label = labels[cols[label_col]]
      if label and cols[text_col] then out[#out + 1] = { text = cols[text_col]:gsub("[\128-\255]", " "), label = label } end
    end
    first = false
  end
  f:close()
  return out
end

local function read_lines(path, label, out)
  for line in io.lines(path) do out[#out + 1] = { text = line:gsub("[\128-\255]", " "), label = label } end
  return out
end

M.TASKS = {
  { name = "sst2", classes = 2, read = function() return read_tsv(classification .. "sst2/dev.tsv", 1, 2, { ["0"] = 0, ["1"] = 1 }, true) end },
  { name = "agnews", classes = 4, read = function() return read_tsv(classification .. "agnews/dev.tsv", 1, 2, { World = 0, Sports = 1, Business = 2, ["Sci/Tech"] = 3 }, false) end },
  { name = "spam", classes = 2, read = function() return read_tsv(classification .. "sms_spam/SMSSpamCollection", 2, 1, { ham = 0, spam = 1 }, true) end },
}
M.TARGET = { name = "rt", classes = 2, read = function()
  return read_lines(classification .. "rt_polarity/rt-polarity.pos", 1, read_lines(classification .. "rt_polarity/rt-polarity.neg", 0, {}))
end }

-- A deterministic shuffle, then train / test parts.
function M.split(rows, seed, test_n)
  math.randomseed(seed)
  for i = #rows, 2, -1 do
    local j = math.random(i)
    rows[i], rows[j] = rows[j], rows[i]
  end
  local test, train = {}, {}
  for i, r in ipairs(rows) do
    if i <= test_n then test[#test + 1] = r else train[#train + 1] = r end
  end
  return train, test
end

function M.batch_of(tok, rows, from, n, max_len)
  local texts, labels = {}, {}
  for i = 0, n - 1 do
    local r = rows[(from + i - 1) % #rows + 1]
    texts[#texts + 1], labels[#labels + 1] = r.text, r.label
  end
  local enc = tok:encode_batch(texts, nil, { truncation = true, max_length = max_len, padding = "longest" })
  return enc, T.tensor(labels):long()
end

-- Mean-pooled sentence vectors → the head's logits.
function M.logits(state, head, enc)
  local out = state.encoder{ input_ids = enc.input_ids, attention_mask = enc.attention_mask, token_type_ids = enc.token_type_ids }
  return head(mt.models.mean_pool(out.last_hidden_state, enc.attention_mask))
end

function M.accuracy(state, head, rows, cfg)
  state.encoder:eval()
  local right, n = 0, cfg.eval_limit > 0 and math.min(cfg.eval_limit, #rows) or #rows
  mt.no_grad(function()
    for from = 1, n, 64 do
      local size = math.min(64, n - from + 1)
      local enc, labels = M.batch_of(state.tok, rows, from, size, cfg.max_len)
      right = right + M.logits(state, head, enc):argmax(-1):eq(labels):sum():item()
    end
  end)
  return right / n
end

return M

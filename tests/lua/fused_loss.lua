-- The causal-LM loss fused with a bare output head (training with gradients on): the same loss
-- and the same gradients as cross-entropy over the logits (float32 1e-5; under bf16 autocast a
-- bfloat16 rounding apart), for a trainable and a frozen head, ignored labels and prompt
-- tuning's virtual tokens, a batch without labels; `logits` is still there, made when read.
local mt = require "moontune"
local T, F = mt.tensor, mt.nn.functional

local tests = {}

-- A vocabulary of 30000 makes the fused loss work in chunks of 69 rows: two for these 120.
local llama = { vocab_size = 30000, hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, num_attention_heads = 4,
                num_key_value_heads = 2, max_position_embeddings = 64, tie_word_embeddings = false }
local gpt2 = { vocab_size = 30000, n_embd = 32, n_layer = 2, n_head = 4, n_positions = 64 }

local function data()
  mt.manual_seed(3)
  local ids = T.randint(0, 300, { 3, 40 })
  local labels = ids:clone()
  labels[0]:narrow(0, 0, 10):fill_(-100)
  labels[2]:narrow(0, 30, 10):fill_(-100)
  return ids, labels
end

-- Cross-entropy of logits at t against labels at t+1, from the logits.
local function reference_loss(logits, labels)
  local t = logits:size()[2]
  local l = logits:narrow(1, 0, t - 1):float():reshape{ -1, logits:size()[3] }
  local y = labels:narrow(1, 1, t - 1):reshape{ -1 }
  return F.cross_entropy(l, y)
end

local function gradients(model)
  local out = {}
  for name, p in pairs(model:named_parameters{ trainable = true }) do out[name] = p.grad and p.grad:clone() end
  model:zero_grad()
  return out
end

local function compare(model, autocast, tolerance)
  local ids, labels = data()
  local function run(f) if autocast then return mt.autocast(autocast, f) end return f() end
  model:zero_grad()
  local fused = run(function() return model{ input_ids = ids, labels = labels } end)
  fused.loss:backward()
  local fused_grads = gradients(model)
  local plain = run(function()
    local logits = model{ input_ids = ids }.logits
    return { logits = logits, loss = reference_loss(logits, labels) }
  end)
  plain.loss:backward()
  local plain_grads = gradients(model)
  local d = math.abs(fused.loss:item() - plain.loss:item())
  assert(d <= tolerance, string.format("loss %g fused, %g from the logits", fused.loss:item(), plain.loss:item()))
  local n = 0
  for name, g in pairs(plain_grads) do
    local diff = (fused_grads[name] - g):abs():max():item()
    assert(diff <= tolerance * math.max(1, g:abs():max():item()), string.format("%s: gradients differ by %g", name, diff))
    n = n + 1
  end
  -- The logits are made on demand, equal to those of a pass without labels.
  local logits = mt.no_grad(function() return fused.logits end)
  assert((logits:float() - plain.logits:float()):abs():max():item() <= tolerance, "lazy logits")
  assert(rawget(fused, "logits") ~= nil, "made once, then kept")
  return n
end

function tests.full_fine_tuning_matches_the_loss_from_logits()
  for _, case in ipairs{ { "LlamaForCausalLM", llama }, { "GPT2LMHeadModel", gpt2 } } do
    local arch, config = case[1], case[2]
    local model = mt.models.new(arch, config)
    model:eval()
    local n = compare(model, nil, 1e-5)
    assert(n == #model:parameters(), arch .. ": every parameter, the head's included")
    compare(model, "bf16", 2e-2)
  end
end

function tests.lora_and_prompt_tuning_match_the_loss_from_logits()
  local model = mt.models.new("LlamaForCausalLM", llama)
  mt.peft.lora(model, { r = 4, alpha = 8, targets = "all-linear" })
  model:eval()
  compare(model, nil, 1e-5)
  local prompted = mt.models.new("GPT2LMHeadModel", gpt2)
  mt.peft.prompt_tuning(prompted, { num_virtual_tokens = 4 })
  prompted:eval()
  local ids, labels = data()
  local out = prompted{ input_ids = ids, labels = labels }
  out.loss:backward()
  local logits = out.logits
  assert(logits:size()[2] == 44, "the virtual tokens' logits come first")
  local virtual = T.full({ 3, 4 }, -100):long()
  local expected = reference_loss(logits, T.cat({ virtual, labels }, 1))
  assert(math.abs(out.loss:item() - expected:item()) < 1e-5)
end

-- With no label at all the loss is nan and no gradient reaches the model, as cross_entropy's
-- (the rows without a label are left out of the products, so there are none to compute).
function tests.a_batch_without_labels_gives_a_nan_loss_and_zero_gradients()
  local model = mt.models.new("LlamaForCausalLM", llama)
  local ids = data()
  local out = model{ input_ids = ids, labels = T.full({ 3, 40 }, -100):long() }
  assert(out.loss:item() ~= out.loss:item(), "the loss is nan")
  out.loss:backward()
  for name, p in pairs(model:named_parameters{ trainable = true }) do
    assert(p.grad == nil or p.grad:abs():max():item() == 0, name .. ": a gradient from no label")
  end
  local logits = model{ input_ids = ids }.logits
  local plain = reference_loss(logits, T.full({ 3, 40 }, -100):long())
  assert(plain:item() ~= plain:item(), "cross_entropy says nan too")
end

-- A label outside the vocabulary (other than -100) is an error naming it, as cross_entropy's.
function tests.a_label_outside_the_vocabulary_is_an_error()
  local model = mt.models.new("LlamaForCausalLM", llama)
  local ids, labels = data()
  for _, bad in ipairs{ 30000, -3 } do
    local wrong = labels:clone()
    wrong[1][5] = bad
    local ok, err = pcall(function() return model{ input_ids = ids, labels = wrong }.loss end)
    assert(not ok and tostring(err):find("label " .. bad .. " is outside the vocabulary [0, 30000)", 1, true), tostring(err))
  end
end

function tests.without_gradients_or_with_a_hooked_head_the_logits_come_first()
  local model = mt.models.new("LlamaForCausalLM", llama)
  local ids, labels = data()
  local out = mt.no_grad(function() return model{ input_ids = ids, labels = labels } end)
  assert(rawget(out, "logits") ~= nil, "evaluation computes the logits with the loss")
  model:register_forward_hook("lm_head", function(_, _, o) return o * 0 end)
  out = model{ input_ids = ids, labels = labels }
  assert(rawget(out, "logits") ~= nil)
  assert(math.abs(out.loss:item() - math.log(30000)) < 1e-4, "the hook's zeroed logits give a uniform loss")
end

return tests

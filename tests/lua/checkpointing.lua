-- Gradient checkpointing (model:gradient_checkpointing): the same loss and the same gradients
-- as without it — with dropout on (the recomputation draws the forward's masks), under autocast,
-- with LoRA, on Llama, GPT-2 and a BERT classifier — and clear errors when the model is gone.
-- Float32 gradients agree to 1e-6; under bf16 autocast to 1e-5 (relative to the largest), as the
-- float32 sums of a layer input's gradients from its several uses may be added in another order.
local mt = require "moontune"
local T = mt.tensor
local expect = require "support.expect"

local tests = {}

local configs = {
  LlamaForCausalLM = { vocab_size = 64, hidden_size = 32, intermediate_size = 48, num_hidden_layers = 3, num_attention_heads = 4,
                       num_key_value_heads = 2, max_position_embeddings = 32, attention_dropout = 0.2 },
  GPT2LMHeadModel = { vocab_size = 64, n_embd = 32, n_layer = 3, n_head = 4, n_positions = 32 },
  BertForSequenceClassification = { vocab_size = 64, hidden_size = 32, num_hidden_layers = 3, num_attention_heads = 4,
                                     intermediate_size = 48, max_position_embeddings = 32, num_labels = 3 },
}

local archs = { "BertForSequenceClassification", "GPT2LMHeadModel", "LlamaForCausalLM" }

local function batch(arch)
  mt.manual_seed(11)
  local ids = T.randint(1, 64, { 2, 10 })
  local mask = T.ones{ 2, 10 }:long()
  mask[1]:narrow(0, 8, 2):zero_()
  local labels = arch == "BertForSequenceClassification" and T.tensor({ 2, 0 }):long() or ids
  return { input_ids = ids, attention_mask = mask, labels = labels }
end

-- Loss and gradients of one training step (dropout on), seeded so both runs draw alike.
local function step(model, inputs, autocast)
  model:zero_grad()
  mt.manual_seed(5)
  local loss
  if autocast then
    loss = mt.autocast(autocast, function() return model(inputs).loss end)
  else
    loss = model(inputs).loss
  end
  loss:backward()
  local grads = {}
  for name, p in pairs(model:named_parameters{ trainable = true }) do grads[name] = p.grad and p.grad:clone() end
  return loss:item(), grads
end

local function same_step(model, inputs, autocast, tolerance)
  local plain_loss, plain = step(model, inputs, autocast)
  model:gradient_checkpointing(true)
  assert(model:is_gradient_checkpointing())
  local loss, grads = step(model, inputs, autocast)
  model:gradient_checkpointing(false)
  assert(math.abs(loss - plain_loss) <= tolerance, string.format("loss %g with checkpointing, %g without", loss, plain_loss))
  local n = 0
  for name, g in pairs(plain) do
    assert(grads[name], name .. ": no gradient with checkpointing")
    local d = (grads[name] - g):abs():max():item() / math.max(1, g:abs():max():item())
    assert(d <= tolerance, string.format("%s: gradients differ by %g with checkpointing", name, d))
    n = n + 1
  end
  assert(n > 0)
  return n
end

function tests.full_fine_tuning_gets_the_same_gradients_with_dropout_on()
  for _, arch in ipairs(archs) do
    local model = mt.models.new(arch, configs[arch])
    model:train()
    local n = same_step(model, batch(arch), nil, 1e-6)
    assert(n == #model:parameters(), arch .. ": every parameter has its gradient")
  end
end

function tests.lora_gets_the_same_gradients_also_under_autocast()
  for _, arch in ipairs(archs) do
    local model = mt.models.new(arch, configs[arch])
    mt.peft.lora(model, { r = 4, alpha = 8, targets = "all-linear", dropout = 0.1 })
    model:train()
    same_step(model, batch(arch), nil, 1e-6)
    same_step(model, batch(arch), "bf16", 1e-5)
  end
end

function tests.eval_mode_and_no_grad_run_plainly()
  local model = mt.models.new("LlamaForCausalLM", configs.LlamaForCausalLM)
  model:gradient_checkpointing()
  model:eval()
  local inputs = batch("LlamaForCausalLM")
  local a = mt.no_grad(function() return model(inputs).logits end)
  model:gradient_checkpointing(false)
  local b = mt.no_grad(function() return model(inputs).logits end)
  assert(a:equal(b))
  -- Generation runs with a cache: layers are not checkpointed there.
  model:gradient_checkpointing(true):train()
  local out = model:generate(inputs.input_ids:narrow(0, 0, 1), { max_new_tokens = 3, do_sample = false })
  assert(out:size()[2] == 13)
end

function tests.backward_after_the_model_is_gone_is_an_error()
  local model = mt.models.new("LlamaForCausalLM", configs.LlamaForCausalLM)
  model:gradient_checkpointing(true)
  local loss = model(batch("LlamaForCausalLM")).loss
  model = nil
  collectgarbage()
  collectgarbage()
  expect.raises(function() loss:backward() end, "the model was freed after the forward pass")
end

function tests.hooks_see_the_recomputation_and_errors_in_it_surface_in_backward()
  local model = mt.models.new("GPT2LMHeadModel", configs.GPT2LMHeadModel)
  model:gradient_checkpointing(true)
  local calls, fail = 0, false
  model:register_forward_hook("transformer.h.1.mlp", function()
    calls = calls + 1
    if fail then error("hook refused") end
  end)
  local loss = model(batch("GPT2LMHeadModel")).loss
  assert(calls == 1)
  fail = true
  expect.raises(function() loss:backward() end, "hook refused")
  fail = false
  loss = model(batch("GPT2LMHeadModel")).loss
  loss:backward()
  assert(calls == 4, "once in the forward, once when backward recomputes the layer: " .. calls)
end

return tests

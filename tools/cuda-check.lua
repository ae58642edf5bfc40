-- tools/cuda-check.lua — what CI cannot check, for a machine with an NVIDIA GPU:
-- `moontune test tools/cuda-check.lua`. Each test runs one model on the CPU, moves that same
-- model to the GPU with `to("cuda")` and runs it again: outputs, losses and gradients must agree
-- (float32; TF32 stays off, libtorch's default, so 1e-4 relative), for the causal LMs, the fused
-- head and loss with ignored labels, LoRA, QLoRA's 4-bit base, GGUF weights kept quantised,
-- bottleneck adapters with fusion, bf16 autocast (2% apart) and greedy generation. On the GPU
-- alone: gradient checkpointing gives the same gradients, a checkpoint resumes a run with dropout
-- exactly, and a LoRA run in bf16 learns. Not part of the suite:
-- a machine without CUDA fails every test here with a message saying so.
local mt = require "moontune"
local T = mt.tensor

local tests = {}

local function need_cuda()
  assert(mt.device.cuda_available(), "tools/cuda-check.lua needs a CUDA device; this machine has none")
end

local llama = { vocab_size = 1000, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, num_attention_heads = 4,
                num_key_value_heads = 2, max_position_embeddings = 128, tie_word_embeddings = false }
-- Llama's config with some keys changed.
local function llama_with(changes)
  local c = {}
  for k, v in pairs(llama) do c[k] = v end
  for k, v in pairs(changes) do c[k] = v end
  return c
end
local configs = {
  LlamaForCausalLM = llama,
  Qwen2ForCausalLM = llama,
  GPT2LMHeadModel = { vocab_size = 1000, n_embd = 64, n_layer = 2, n_head = 4, n_positions = 128 },
}

local function ids_and_labels()
  mt.manual_seed(7)
  local ids = T.randint(3, 1000, { 2, 24 })
  local labels = ids:clone()
  labels[0]:narrow(0, 0, 8):fill_(-100)
  return ids, labels
end

-- Loss, logits and trainable gradients of one pass with labels, on the model's device.
local function pass(model, ids, labels)
  local device = model:device()
  model:zero_grad()
  local out = model{ input_ids = ids:to(device), labels = labels:to(device) }
  out.loss:backward()
  local grads = {}
  for name, p in pairs(model:named_parameters{ trainable = true }) do
    if p.grad then grads[name] = p.grad:to("cpu") end
  end
  return { loss = out.loss:item(), logits = out.logits:to("cpu"), grads = grads }
end

local function close(what, a, b, tolerance)
  local diff = (a - b):abs():max():item()
  local scale = math.max(1, b:abs():max():item())
  assert(diff <= tolerance * scale, string.format("%s: CPU and CUDA differ by %g (scale %g)", what, diff, scale))
end

-- The same model on the CPU, then on the GPU: same loss, logits and gradients.
local function cpu_against_cuda(model, tolerance)
  need_cuda()
  model:eval()                                           -- no dropout: both passes the same
  local ids, labels = ids_and_labels()
  local cpu = pass(model, ids, labels)
  model:to("cuda")
  assert(tostring(model:device()):find("cuda"), "model:to('cuda') left the model on " .. tostring(model:device()))
  local gpu = pass(model, ids, labels)
  assert(math.abs(cpu.loss - gpu.loss) <= tolerance * math.max(1, math.abs(cpu.loss)),
         string.format("loss %g on the CPU, %g on CUDA", cpu.loss, gpu.loss))
  close("logits", gpu.logits, cpu.logits, tolerance)
  local n = 0
  for name, g in pairs(cpu.grads) do
    assert(gpu.grads[name], name .. " has a gradient on the CPU only")
    close(name .. "'s gradient", gpu.grads[name], g, tolerance)
    n = n + 1
  end
  return n
end

-- Adapters start as the identity (LoRA's B and a bottleneck's up-projection are zero): nudge
-- every trainable parameter so that they take part in the comparison.
local function nudge(model)
  mt.manual_seed(11)
  mt.no_grad(function()
    for _, p in pairs(model:named_parameters{ trainable = true }) do p:add_(T.randn_like(p) * 0.05) end
  end)
end

for arch, config in pairs(configs) do
  tests[arch .. "_full_fine_tuning_matches_the_cpu"] = function()
    mt.manual_seed(1)
    local model = mt.models.new(arch, config)
    assert(cpu_against_cuda(model, 1e-4) > 10, "too few gradients compared")
  end
end

function tests.lora_matches_the_cpu()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  mt.peft.lora(model, { r = 4, alpha = 8, targets = { "q_proj", "v_proj", "down_proj" } })
  nudge(model)
  assert(cpu_against_cuda(model, 1e-4) == 12, "LoRA's A and B on 3 targets in 2 layers")
end

function tests.qlora_base_matches_the_cpu()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  mt.peft.quantize(model, { type = "nf4", compute_dtype = "float32" })
  mt.peft.lora(model, { r = 4, alpha = 8, targets = { "q_proj", "v_proj" } })
  nudge(model)
  assert(cpu_against_cuda(model, 1e-4) == 8)
end

function tests.bottleneck_adapters_and_fusion_match_the_cpu()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  mt.peft.bottleneck(model, { name = "a" })
  mt.peft.bottleneck(model, { name = "b", config = "par_bn" })
  mt.peft.fusion(model, { "a", "b" })
  model:set_active(mt.peft.fuse("a", "b"))
  model:train_adapter({ "a", "b" })
  nudge(model)
  assert(cpu_against_cuda(model, 1e-4) > 0)
end

function tests.gguf_weights_kept_quantized_match_the_cpu()
  need_cuda()
  local path = os.tmpname() .. ".gguf"
  mt.manual_seed(1)
  -- Rows of 256 and 512 values: whole Q4_K blocks.
  local config = llama_with{ hidden_size = 256, intermediate_size = 512 }
  assert(mt.models.new("LlamaForCausalLM", config):save_gguf(path, { type = "q4_k_m" }))
  local model = assert(mt.models.load(path, { quantized = true }))
  os.remove(path)
  cpu_against_cuda(model, 1e-4)
end

function tests.autocast_bf16_matches_the_cpu()
  need_cuda()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  model:eval()
  local ids, labels = ids_and_labels()
  local function loss() return model{ input_ids = ids:to(model:device()), labels = labels:to(model:device()) }.loss:item() end
  local cpu = mt.autocast("bf16", loss)
  model:to("cuda")
  local gpu = mt.autocast("bf16", loss)
  assert(math.abs(cpu - gpu) < 2e-2 * cpu, string.format("bf16 autocast loss %g on the CPU, %g on CUDA", cpu, gpu))
end

function tests.gradient_checkpointing_on_the_gpu_gives_the_same_gradients()
  need_cuda()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama, { device = "cuda" })
  mt.peft.lora(model, { r = 4, targets = { "q_proj", "v_proj" }, init = false })
  model:eval()
  local ids, labels = ids_and_labels()
  local plain = pass(model, ids, labels)
  model:gradient_checkpointing(true)
  local recomputed = pass(model, ids, labels)
  for name, g in pairs(plain.grads) do close(name .. " with checkpointing", recomputed.grads[name], g, 1e-5) end
end

-- A LoRA run on the GPU with dropout (CUDA's random stream) saved after 3 steps and resumed in
-- a fresh state gives the losses the run itself gave after them.
function tests.a_checkpoint_resumes_a_gpu_run_exactly()
  need_cuda()
  local function setup()
    mt.manual_seed(1)
    local model = mt.models.new("LlamaForCausalLM", llama, { device = "cuda" })
    mt.peft.lora(model, { r = 4, dropout = 0.2, targets = { "q_proj", "v_proj" } })
    model:train()
    return { model = model, opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-2 }) }
  end
  local ids = T.randint(3, 1000, { 2, 16 }):to("cuda")
  local function step(s)
    local loss = s.model{ input_ids = ids, labels = ids }.loss
    s.opt:zero_grad()
    loss:backward()
    s.opt:step()
    return loss:item()
  end
  local run = setup()
  for _ = 1, 3 do step(run) end
  local dir = os.tmpname() .. ".ckpt"
  mt.checkpoint.save(dir, run, { step = 3 })
  local after = { step(run), step(run), step(run) }
  local resumed = setup()
  mt.checkpoint.load(dir, resumed)
  os.execute("rm -rf " .. dir)
  for i = 1, 3 do
    local loss = step(resumed)
    assert(loss == after[i], string.format("step %d after resuming: loss %.9g, the run had %.9g", 3 + i, loss, after[i]))
  end
end

function tests.greedy_generation_matches_the_cpu()
  need_cuda()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  model:eval()
  local prompt = T.randint(3, 1000, { 2, 6 })
  local cpu = model:generate(prompt, { max_new_tokens = 12 }):tolist()
  model:to("cuda")
  local gpu = model:generate(prompt:to("cuda"), { max_new_tokens = 12 }):to("cpu"):tolist()
  assert(mt.json.encode(cpu) == mt.json.encode(gpu), "greedy tokens differ: " .. mt.json.encode(cpu) .. " against " .. mt.json.encode(gpu))
end

function tests.lora_in_bf16_learns_on_the_gpu()
  need_cuda()
  mt.manual_seed(1)
  local model = mt.models.new("LlamaForCausalLM", llama)
  model:to{ device = "cuda", dtype = "bf16" }
  mt.peft.lora(model, { r = 8, alpha = 16, targets = { "q_proj", "k_proj", "v_proj", "o_proj" } })
  local opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = 1e-2 })
  local ids = T.randint(3, 1000, { 4, 32 }):to("cuda")
  local first, last
  for step = 1, 30 do
    local loss = model{ input_ids = ids, labels = ids }.loss
    opt:zero_grad()
    loss:backward()
    opt:step()
    if step == 1 then first = loss:item() end
    last = loss:item()
  end
  assert(last == last and last < first - 0.5, string.format("loss %g at the first step, %g at the 30th", first, last))
  local used = mt.memory().tensor_bytes
  assert(used > 0, "mt.memory() counts no tensor bytes")
end

return tests

-- train.lua — the data-parallel tests' recipe (tests/dist.rs): LoRA on stories260K over packed
-- TinyShakespeare rows of equal length, the loss a plain mean over every predicted token, so
-- that the mean of the ranks' losses is the loss of their batches together.
--   mode=grads: one backward, the trainable gradients saved per rank, then stop.
--   mode=train: `steps` AdamW steps, the trainable weights saved per rank at the end.
-- checkpointing=true recomputes each layer in backward (gradient checkpointing); device=cuda
-- trains on this rank's GPU (tools/cuda-dist-check.sh).
-- With noise > 0 each rank seeds its own random stream (seed + rank) and scales its loss by
-- 1 + noise · randn, so that the weights depend on every rank's draws (the resume test).
-- Each rank writes <out>/<mode>-rank<r>.safetensors; a world of one writes rank0.
local mt = require "moontune"
local F = mt.nn.functional

return {
  config = { steps = 20, batch = 4, lr = 1e-2, seed = 11, mode = "train", dtype = "float32", noise = 0.0, checkpointing = false, data = "", out = "", pause = 0.0, save_every = 0,
             device = "cpu" },
  setup = function(cfg)
    if cfg.noise > 0 then mt.manual_seed(cfg.seed + mt.dist.rank()) end
    local dir = cfg.data .. "/models/stories260K"
    local model = assert(mt.models.load(dir, { dtype = cfg.dtype, device = cfg.device }))
    mt.peft.lora(model, { name = "task", r = 4, alpha = 8, targets = { "q_proj", "v_proj" }, init = false })
    if cfg.checkpointing then model:gradient_checkpointing(true) end
    local dp = mt.dist.data_parallel(model, { bucket_mb = 0.01 })
    local tok = assert(mt.tokenizer.load(dir))
    local rows = mt.data.read(cfg.data .. "/text/tinyshakespeare.txt"):take(300)
      :tokenize(tok, { field = "text" })
      :pack{ length = 24, split = true, drop_last = true }
      :shuffle{ seed = 5 }:batch{ size = cfg.batch }
    return { model = model, dp = dp, it = rows:iter{ epochs = math.huge },
             opt = mt.optim.adamw(model:parameters{ trainable = true }, { lr = cfg.lr }) }
  end,
  step = function(s, cfg)
    local b = s.it:next()
    local ids = b.input_ids:to(cfg.device)
    local logits = s.model{ input_ids = ids }.logits
    local n = ids:size(1)
    local loss = F.cross_entropy(logits:narrow(1, 0, n - 1):reshape{ -1, logits:size(2) }, ids:narrow(1, 1, n - 1):reshape{ -1 })
    if cfg.noise > 0 then loss = loss * (1 + cfg.noise * mt.tensor.randn{ 1 }:item()) end
    loss:backward()
    if cfg.mode == "grads" then
      local grads = {}
      for name, p in pairs(s.model:named_parameters{ trainable = true }) do grads[name] = p.grad:to("cpu") end
      mt.save(cfg.out .. "/grads-rank" .. mt.dist.rank() .. ".safetensors", grads)
      s.done = true
    else
      s.opt:step()
      s.opt:zero_grad()
    end
    local t = mt.clock()
    while mt.clock() - t < cfg.pause do end
    return { loss = loss, tokens = ids:numel() }
  end,
  done = function(s) return s.done end,
  finish = function(s, cfg)
    if cfg.mode == "train" then
      local weights = {}
      for name, p in pairs(s.model:named_parameters{ trainable = true }) do weights[name] = p:to("cpu") end
      mt.save(cfg.out .. "/train-rank" .. mt.dist.rank() .. ".safetensors", weights)
    end
  end,
}

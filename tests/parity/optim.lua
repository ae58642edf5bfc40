-- Parity with torch.optim (trajectories from gen_optim.py, run beside this test): 10 steps of
-- SGD (plain, momentum with dampening, Nesterov), Adam (with L2 decay, AMSGrad) and AdamW
-- (also with parameter groups), each on the single-tensor, foreach and fused kernels against
-- torch.optim's same kernel, equal to within 1e-6 in float32 after every step.

local mt = require "moontune"
local F = mt.nn.functional

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local ref = assert(mt.load(fixtures .. "/optim.safetensors"))

local configs = {
  sgd = { "sgd", { lr = 0.1 } },
  sgd_momentum = { "sgd", { lr = 0.05, momentum = 0.9, dampening = 0.1, weight_decay = 0.01 } },
  sgd_nesterov = { "sgd", { lr = 0.05, momentum = 0.9, nesterov = true, weight_decay = 0.01 } },
  adam = { "adam", { lr = 0.01, betas = { 0.8, 0.99 }, eps = 1e-6, weight_decay = 0.01 } },
  adam_amsgrad = { "adam", { lr = 0.01, amsgrad = true } },
  adamw = { "adamw", { lr = 0.01, weight_decay = 0.1 } },
  adamw_groups = { "adamw", { lr = 0.01, weight_decay = 0.1 } },
}

local kernels = {
  single = { foreach = false, fused = false },
  foreach = { foreach = true },
  fused = { fused = true },
}

local tests = {}

for name, config in pairs(configs) do
  for kernel, choice in pairs(kernels) do
    tests[name .. "_" .. kernel] = function()
      local W, b = ref.W0:clone():requires_grad_(), ref.b0:clone():requires_grad_()
      local params = { W, b }
      if name == "adamw_groups" then
        params = { { params = { W }, lr = 0.02 }, { params = { b }, weight_decay = 0.0 } }
      end
      local opts = {}
      for k, v in pairs(config[2]) do opts[k] = v end
      for k, v in pairs(choice) do opts[k] = v end
      local opt = mt.optim[config[1]](params, opts)
      assert(opt:kernel() == ({ single = "single-tensor", foreach = "foreach", fused = "fused" })[kernel])
      for step = 1, 10 do
        opt:zero_grad()
        F.mse_loss(F.linear(ref.X, W, b), ref.Y):backward()
        opt:step()
        for pname, p in pairs({ W = W, b = b }) do
          local want = ref[string.format("%s.%s.%s.%d", name, kernel, pname, step)]
          local diff = (p - want):abs():max():item()
          if diff > 1e-6 then
            error(string.format("%s (%s): %s differs from torch.optim by %g after step %d", name, kernel, pname, diff, step))
          end
        end
      end
    end
  end
end

return tests

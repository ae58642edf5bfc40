-- custom_peft.lua — a new adapter method written in Lua, trained like a built-in: LoRA with a
-- learned gate per rank, y = W x + s · B diag(σ(g)) A x (g starts at 0: every rank half open).
-- It is registered by name, injected by the same options as mt.peft.lora, saved with peft_type
-- "GATED_LORA" and its tensors under each layer's name, and loaded back by mt.peft.load once the
-- method is registered. Edit `forward` while it runs: the hot reload registers the new one and
-- the trained parameters stay.
--
--   moontune run scripts/custom_peft.lua                    (lora_sft.lua's recipe and options)

local mt = require "moontune"
local T = mt.tensor

mt.peft.register{
  name = "GATED_LORA",
  -- Called once per target layer: the tensor fields set on self are its parameters.
  init = function(self, layer, opts)
    local r = opts.r or 8
    self["lora_A.weight"] = T.randn{ r, layer.in_features } / math.sqrt(layer.in_features)
    self["lora_B.weight"] = T.zeros{ layer.out_features, r }
    self.gate = T.zeros{ r }
    self.scale = (opts.alpha or r) / r
  end,
  forward = function(self, x, base_out)
    local h = x:matmul(self["lora_A.weight"]:t()) * self.gate:sigmoid()
    return base_out + h:matmul(self["lora_B.weight"]:t()) * self.scale
  end,
  -- W + s · B diag(σ(g)) A, so that merge_and_unload folds it away.
  merge = function(self, weight)
    return weight + (self["lora_B.weight"] * self.gate:sigmoid()):mm(self["lora_A.weight"]) * self.scale
  end,
}

local recipe = require "lora_sft"   -- the recipe's folder comes first on package.path
recipe.config.method = "GATED_LORA"
return recipe

-- qlora_sft.lua — scripts/lora_sft.lua on a 4-bit base (QLoRA): the same recipe with the model's
-- linear weights stored in NF4 with double quantisation before LoRA is added.
--
--   moontune run scripts/qlora_sft.lua                      (any key=value of lora_sft.lua works)

local recipe = require "lora_sft"   -- the recipe's folder comes first on package.path
recipe.config.quantize = true
return recipe

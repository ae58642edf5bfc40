-- AdapterHub parity (references from gen_adapters.py, `adapters` 1.3.0 on transformers 4.57): for
-- every case the adapters (and fusion) `adapters` saved load here, and with the case's setup
-- active the output (LM logits, or the encoder's last hidden state) equals `adapters`' and the
-- gradient of every trainable tensor after one backward of sum(output · w) too (each 1e-5,
-- relative to its largest entry where that is above 1; on all-MiniLM-L6-v2, where `adapters`'
-- own float32 gradients are up to 3.4e-5 from its float64 ones, against the float64 gradient
-- within 5e-5 or twice adapters' float32 error, the larger), and each
-- fusion's mean attention per point equals `adapters`' fusion attentions (1e-5), summing to 1,
-- and each gated adapter's gates per layer and part (lora, prefix, adapter) equal the mean of
-- `adapters`' gating scores there (1e-5).
-- Everything is saved again here in AdapterHub's format (into MOONTUNE_OUTPUT) with the output,
-- for check_adapters.py to load in `adapters`.
local mt = require "moontune"

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local output = assert(os.getenv("MOONTUNE_OUTPUT"), "MOONTUNE_OUTPUT is not set (run through cargo test)")
local cases = dofile(fixtures .. "/cases.lua")

local function near(what, a, b, tol)
  assert(a ~= nil, what .. ": missing here")
  assert(b ~= nil, what .. ": missing in the reference")
  local shape_a, shape_b = table.concat(a:size(), "x"), table.concat(b:size(), "x")
  assert(shape_a == shape_b, string.format("%s: shape %s here, %s in adapters", what, shape_a, shape_b))
  local d = (a:float() - b:float()):abs():max():item()
  assert(d <= tol, string.format("%s differs from adapters by %g (tolerance %g)", what, d, tol))
  return d
end

-- A tree name as AdapterHub's state dict spells it.
local function file_key(name)
  for _, projection in ipairs{ "q_proj", "k_proj", "v_proj", "query", "key", "value", "c_attn" } do
    name = name:gsub("%." .. projection .. "%.adapters%.", "." .. projection .. ".loras.")
  end
  name = name:gsub("^(.-)prefix_tuning%.([^.]+)%.", "%1prefix_tuning.prefix_tunings.%2.self_prefix.")
  name = name:gsub("%.prefix_gates%.", ".prefix_tuning.prefix_gates.")
  return (name:gsub("%.attention_adapters%.", ".attention_adapters.adapters.")
              :gsub("%.output_adapters%.", ".output_adapters.adapters.")
              :gsub("%.attention_fusion%.", ".attention_adapters.adapter_fusion_layer.")
              :gsub("%.output_fusion%.", ".output_adapters.adapter_fusion_layer."))
end

-- A fusion point's path as (layer, AdapterHub's location).
local function point_of(path)
  local layer = tonumber(path:match("%.(%d+)%."))
  local location = (path:find("attention") and "mh_adapter") or "output_adapter"
  return layer, location
end

local checked, worst = 0, 0
for _, c in ipairs(cases) do
  local dir = fixtures .. "/" .. c.case
  local base = c.base:find("^base/") and (fixtures .. "/" .. c.base) or c.base
  local ref = assert(mt.load(dir .. "/expected.safetensors"))
  local model = assert(mt.models.load(base))
  for _, name in ipairs(c.adapters) do
    local _, loaded = assert(mt.peft.load(model, dir .. "/" .. name))
    assert(loaded == name, c.case .. ": loaded as " .. tostring(loaded))
  end
  if c.fusion then
    assert(mt.peft.load(model, dir .. "/fusion"))
    model:train_fusion(c.setup)
  else
    model:train_adapter(c.adapters)
    model:set_active(c.setup)
  end
  model:eval()
  local out = model{ input_ids = ref.input_ids, attention_mask = ref.attention_mask }
  local result = out.logits or out.last_hidden_state
  -- all-MiniLM-L6-v2 (384 channels, 6 layers): `adapters`' own float32 results there are up to
  -- 1.4e-5 (mam output) and 1.9e-5 (unipelt gradients, relative) from its float64 ones.
  local tol = c.arch == "minilm" and 5e-5 or 1e-5
  local out_scale = math.max(1, ref.output:abs():max():item())
  worst = math.max(worst, near(c.case .. " output", result, ref.output, tol * out_scale) / out_scale)
  ;(result * ref.w):sum():backward()
  local grads = 0
  for name, p in pairs(model:named_parameters{ trainable = true }) do
    local key = file_key(name)
    local expected = ref["grad." .. key] or ref["grad." .. key:gsub("adapter_down%.0%.", "adapter_norm_before.")]
    if p.grad == nil then
      -- An adapter whose output the setup discards (a parallel adapter after it in a Stack).
      assert(expected == nil, c.case .. ": no gradient here for " .. name .. ", but adapters has one")
    else
      local scale = expected and math.max(1, expected:abs():max():item()) or 1
      local exact = ref["grad64." .. key] or ref["grad64." .. key:gsub("adapter_down%.0%.", "adapter_norm_before.")]
      if exact and expected then
        -- MiniLM: against `adapters`' float64 gradient, within tol or twice adapters' own float32
        -- error there, whichever is larger (float32 cannot promise more than the reference does).
        local own = (expected:double() - exact):abs():max():item()
        worst = math.max(worst, near(c.case .. " grad of " .. name .. " (float64)", p.grad, exact, math.max(tol * scale, 2 * own)) / scale)
      else
        worst = math.max(worst, near(c.case .. " grad of " .. name, p.grad, expected, tol * scale) / scale)
      end
      grads = grads + 1
    end
  end
  assert(grads > 0, c.case .. ": nothing trains")
  if c.fusion then
    local weights, points = model:fusion_weights()
    for i, path in ipairs(points) do
      local layer, location = point_of(path)
      local row = weights[i - 1]
      assert(math.abs(row:sum():item() - 1) < 1e-5, c.case .. ": fusion weights at " .. path .. " do not sum to 1")
      worst = math.max(worst, near(c.case .. " fusion weights at " .. path, row, ref[string.format("fusion.%d.%s", layer, location)], 1e-5))
    end
  end
  -- adapters' gating scores per (adapter, layer, location), as (layer, part) means.
  local gated = {}
  for key, value in pairs(ref) do
    local name, layer, location = key:match("^gate%.([^.]+)%.(%d+)%.(.+)$")
    if name then
      local part = (location:find("lora") and "lora") or (location:find("prefix") and "prefix") or "adapter"
      gated[name] = gated[name] or {}
      local cell = string.format("layer %s %s", layer, part)
      gated[name][cell] = gated[name][cell] or {}
      table.insert(gated[name][cell], value)
    end
  end
  for name, cells in pairs(gated) do
    local gates, layers, parts = model:gates(name)
    local seen = 0
    for i, layer in ipairs(layers) do
      for j, part in ipairs(parts) do
        local refs = cells[layer .. " " .. part]
        if refs then
          local mean = 0
          for _, r in ipairs(refs) do mean = mean + r:item() / #refs end
          worst = math.max(worst, near(c.case .. " gate of " .. name .. " " .. part .. " at " .. layer, gates[i - 1][j - 1]:reshape{ 1 }, mt.tensor.tensor{ mean }, 1e-5))
          seen = seen + 1
        end
      end
    end
    local expected = 0
    for _ in pairs(cells) do expected = expected + 1 end
    assert(seen == expected, string.format("%s: %d gates of %s here, %d in adapters", c.case, seen, name, expected))
  end
  for _, name in ipairs(c.adapters) do
    assert(model:save_adapter(output .. "/" .. c.case .. "/" .. name, { name = name, format = "adapterhub" }))
  end
  if c.fusion then
    local fused = c.setup
    if fused.block ~= "Fuse" then
      for _, child in ipairs(c.setup) do if type(child) == "table" and child.block == "Fuse" then fused = child end end
    end
    assert(model:save_adapter(output .. "/" .. c.case .. "/fusion", { name = table.concat(fused, ","), format = "adapterhub" }))
  end
  mt.save(output .. "/" .. c.case .. "/output.safetensors", { output = result:detach() })
  checked = checked + 1
end
print(string.format("adapters parity: %d cases, largest difference %.2e", checked, worst))

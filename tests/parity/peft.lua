-- PEFT parity (references from gen_peft.py, PEFT 0.21): for every case an adapter PEFT saved
-- loads here and gives PEFT's logits (1e-5) and, after one backward of the causal-LM loss, PEFT's
-- gradient for every trainable tensor (1e-5), and its logits under autocast to bfloat16 those
-- under torch.autocast (1e-2: a bfloat16 rounding apart at most); saved again here (into MOONTUNE_OUTPUT, for
-- check_peft.py to load in PEFT); merge_and_unload gives PEFT's merged weights (1e-5). PiSSA,
-- OLoRA and DoRA initialisation give PEFT's A, B, magnitudes and residual base weights;
-- combine gives add_weighted_adapter's factors for linear, cat and svd. The merged models are
-- saved too, for check_peft.py to load in transformers.
local mt = require "moontune"

local fixtures = assert(os.getenv("MOONTUNE_FIXTURES"), "MOONTUNE_FIXTURES is not set (run through cargo test)")
local output = assert(os.getenv("MOONTUNE_OUTPUT"), "MOONTUNE_OUTPUT is not set (run through cargo test)")
local cases = dofile(fixtures .. "/cases.lua")
-- A generated base lies in the fixtures folder; stories260K in the shared data.
for _, c in ipairs(cases) do
  if c.base:find("^base/") then c.base = fixtures .. "/" .. c.base end
end

local function max_diff(a, b) return (a:float() - b:float()):abs():max():item() end

local function near(what, a, b, tol)
  assert(a ~= nil, what .. ": missing here")
  assert(b ~= nil, what .. ": missing in the reference")
  local shape_a, shape_b = table.concat(a:size(), "x"), table.concat(b:size(), "x")
  assert(shape_a == shape_b, string.format("%s: shape %s here, %s in PEFT", what, shape_a, shape_b))
  local d = max_diff(a, b)
  assert(d <= tol, string.format("%s differs from PEFT by %g (tolerance %g)", what, d, tol))
  return d
end

-- A tree name of adapter `name`'s parameter as PEFT's file key.
local function peft_key(name, adapter)
  return "base_model.model." .. name:gsub("%.adapters%." .. adapter .. "%.", ".")
end

local function logits_on_real_tokens(model, ref)
  local out = mt.no_grad(function() return model{ input_ids = ref.input_ids, attention_mask = ref.attention_mask } end)
  -- `real` covers prompt tuning's virtual tokens too.
  local pad = (ref.real or ref.attention_mask):bool():unsqueeze(-1):logical_not()
  return out.logits:masked_fill(pad, 0), ref.logits:masked_fill(pad, 0)
end

local function load_case(c)
  local dir = fixtures .. "/" .. c.case
  local ref = assert(mt.load(dir .. "/expected.safetensors"))
  local model = assert(mt.models.load(c.base))
  assert(mt.peft.load(model, dir .. "/adapter"))
  local ours, theirs = logits_on_real_tokens(model, ref)
  local worst = near(c.case .. " logits", ours, theirs, 1e-5)
  -- Under autocast to bfloat16, as torch.autocast: the same ops in the same precision.
  local pad = (ref.real or ref.attention_mask):bool():unsqueeze(-1):logical_not()
  local bf16 = mt.no_grad(function()
    return mt.autocast("bf16", function() return model{ input_ids = ref.input_ids, attention_mask = ref.attention_mask }.logits end)
  end)
  local bf16_diff = near(c.case .. " logits under autocast", bf16:float():masked_fill(pad, 0), ref.logits_bf16:masked_fill(pad, 0), 1e-2)
  print(string.format("%s: logits under autocast differ from torch.autocast by %.2e (largest logit %.2f)", c.case, bf16_diff, ref.logits:abs():max():item()))
  local loss = model{ input_ids = ref.input_ids, attention_mask = ref.attention_mask, labels = ref.labels }.loss
  near(c.case .. " loss", loss, ref.loss, 1e-5)
  loss:backward()
  local checked, expected = 0, 0
  for key in pairs(ref) do if key:find("^grad%.") then expected = expected + 1 end end
  -- A projected prefix trains its MLP in PEFT, which its file folds away: no gradients to compare.
  for name, p in pairs(expected > 0 and model:named_parameters{ trainable = true } or {}) do
    local key = name:find("^prompt_encoder%.") and "grad." .. name or "grad." .. peft_key(name, "default")
    -- PEFT names the bias of a layer it wraps `<layer>.base_layer.bias`.
    if ref[key] == nil then key = key:gsub("%.bias$", ".base_layer.bias") end
    worst = math.max(worst, near(c.case .. " gradient of " .. name, p.grad, ref[key], 1e-5))
    checked = checked + 1
  end
  assert(checked == expected, string.format("%s: %d trainable tensors here, %d in PEFT", c.case, checked, expected))
  assert(model:save_adapter(output .. "/" .. c.case))
  mt.save(output .. "/" .. c.case .. "/logits.safetensors", { logits = ours })
  if ref.greedy then
    -- Virtual tokens: generation (KV cache, prefix in it) equals greedy decoding by PEFT's forward;
    -- there is nothing to merge.
    local greedy = model:generate(ref.prompt, { max_new_tokens = 8, stop_ids = {} })
    assert(greedy:equal(ref.greedy), string.format("%s: greedy tokens differ\n%s\n%s", c.case, tostring(greedy), tostring(ref.greedy)))
    local ok, err = pcall(function() model:merge_and_unload() end)
    assert(not ok and tostring(err):find("cannot be merged into the weights", 1, true), tostring(err))
    print(string.format("%s: logits, %d gradients and greedy generation match PEFT (largest difference %.2e)", c.case, checked, worst))
    return
  end
  model:merge_and_unload()
  local merged = 0
  for name, t in pairs(model:state_dict()) do
    worst = math.max(worst, near(c.case .. " merged " .. name, t, ref["merged." .. name], 1e-5))
    merged = merged + 1
  end
  assert(#model:adapters() == 0, "merge_and_unload leaves no adapter")
  assert(model:save(output .. "/" .. c.case .. "/merged"))
  print(string.format("%s: logits, %d gradients and %d merged weights match PEFT (largest difference %.2e)", c.case, checked, merged, worst))
end

local function init_case(c)
  local ref = assert(mt.load(fixtures .. "/" .. c.case .. "/expected.safetensors"))
  local model = assert(mt.models.load(c.base))
  mt.peft.lora(model, c.options)
  local checked, worst = 0, 0
  for name, p in pairs(model:named_parameters()) do
    local want = ref["init." .. peft_key(name, "default")]
    if want then
      worst = math.max(worst, near(c.case .. " initial " .. name, p, want, 1e-5))
      checked = checked + 1
    end
    local base = ref["base." .. name]
    if base then
      worst = math.max(worst, near(c.case .. " residual base weight " .. name, p, base, 1e-5))
      checked = checked + 1
    end
  end
  local expected = 0
  for _ in pairs(ref) do expected = expected + 1 end
  assert(checked == expected, string.format("%s: %d tensors compared, %d in the reference", c.case, checked, expected))
  print(string.format("%s: %d initial tensors match PEFT (largest difference %.2e)", c.case, checked, worst))
end

local function combine_case(c)
  local dir = fixtures .. "/" .. c.case
  local ref = assert(mt.load(dir .. "/expected.safetensors"))
  local model = assert(mt.models.load(c.base))
  mt.peft.load(model, dir .. "/a", { name = "a" })
  mt.peft.load(model, dir .. "/b", { name = "b" })
  local checked, worst = 0, 0
  for _, how in ipairs{ "linear", "cat", "svd" } do
    local name = "c_" .. how
    mt.peft.combine(model, { "a", "b" }, { weights = { 0.7, -0.4 }, how = how, name = name, rank = how == "svd" and 3 or nil })
    for pname, p in pairs(model:named_parameters()) do
      if pname:find("%.adapters%." .. name .. "%.") then
        local key = how .. "." .. peft_key(pname, name)
        local want = ref[key]
        if how == "svd" then
          -- Singular vectors are unique up to sign: compare the product B·A instead, below.
          assert(want, key .. " missing in the reference")
        else
          worst = math.max(worst, near(c.case .. " " .. key, p, want, 1e-5))
        end
        checked = checked + 1
      end
    end
  end
  -- svd: the products B·A agree.
  for pname, p in pairs(model:named_parameters()) do
    if pname:find("%.adapters%.c_svd%.lora_A") then
      local b_name = pname:gsub("lora_A", "lora_B")
      local ours = model:named_parameters()[b_name]:mm(p)
      local key_a, key_b = "svd." .. peft_key(pname, "c_svd"), "svd." .. peft_key(b_name, "c_svd")
      worst = math.max(worst, near(c.case .. " svd product on " .. pname, ours, ref[key_b]:mm(ref[key_a]), 1e-5))
    end
  end
  local expected = 0
  for _ in pairs(ref) do expected = expected + 1 end
  assert(checked == expected, string.format("%s: %d factors compared, %d in the reference", c.case, checked, expected))
  print(string.format("%s: %d combined factors match add_weighted_adapter (largest difference %.2e)", c.case, checked, worst))
end

local tests = {}
for _, c in ipairs(cases) do
  tests[c.case] = function()
    if c.kind == "load" then load_case(c) elseif c.kind == "init" then init_case(c) else combine_case(c) end
  end
end
return tests

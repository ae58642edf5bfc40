-- Inputs that used to crash, hang or mislead (issue 9), as they behave now: named chat
-- templates, a template that would loop for ever, optimizer state of another dtype, numbers
-- libtorch cannot hold, a Lua module whose child points back at it, config values no model has.

local mt = require "moontune"
local T, nn = mt.tensor, mt.nn
local raises = require("support.expect").raises

local tests = {}

-- A tokenizer directory with the given tokenizer_config.json.
local function tokenizer_with(config_json)
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  local corpus = dir .. "/corpus.txt"
  local f = assert(io.open(corpus, "w")); f:write("hello world\n"); f:close()
  mt.tokenizer.train_bpe{ files = { corpus }, vocab_size = 40 }:save(dir .. "/tokenizer.json")
  f = assert(io.open(dir .. "/tokenizer_config.json", "w")); f:write(config_json); f:close()
  return assert(mt.tokenizer.load(dir))
end

function tests.named_chat_templates_are_chosen_as_transformers_does()
  local tok = tokenizer_with([[{"chat_template": [
    {"name": "default", "template": "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}"},
    {"name": "tool_use", "template": "tools"}]}]])
  local chat = { { role = "user", content = "hi" } }
  assert(tok:apply_chat_template(chat) == "<user>hi")
  assert(tok:apply_chat_template(chat, { chat_template = "tool_use" }) == "tools")
  raises(function() return tok:apply_chat_template(chat, { chat_template = "nope" }) end, "no chat template named 'nope' (it has: default, tool_use)")
  local two = tokenizer_with([[{"chat_template": [{"name": "a", "template": "A"}, {"name": "b", "template": "B"}]}]])
  raises(function() return two:apply_chat_template(chat) end, "several chat templates (a, b) and none named 'default'")
end

function tests.a_chat_template_that_never_ends_is_stopped()
  local tok = tokenizer_with([[{"chat_template": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"}]])
  local started = mt.clock()
  raises(function() return tok:apply_chat_template({}) end, "ran for more than")
  assert(mt.clock() - started < 30, "the fuel limit stops it quickly")
end

function tests.optimizer_state_of_another_dtype_is_cast_to_the_parameters()
  local p = T.zeros({ 2 }, { requires_grad = true })
  local opt = mt.optim.adam({ p }, { lr = 0.1 })
  p.grad = T.ones{ 2 }
  opt:step()
  local sd = opt:state_dict()
  for _, st in pairs(sd.state) do
    for name, t in pairs(st) do if T.is_tensor(t) then st[name] = t:double() end end
  end
  opt:load_state_dict(sd)
  p.grad = T.ones{ 2 }
  opt:step()
  assert(p:dtype() == "float32" and opt:state_dict().state[1].exp_avg:dtype() == "float32")
end

function tests.numbers_follow_pytorchs_scalar_rules()
  local bytes = T.ones({ 2 }, { dtype = "uint8" })
  local sum = bytes + 300
  assert(sum:dtype() == "uint8" and sum[0]:item() == 45, tostring(sum))   -- wraps, as in PyTorch
  assert(not bytes:eq(256):any():item())
  assert((T.ones{ 2 } * 1e300)[0]:item() == math.huge)
  assert((T.tensor{ 1, 5 }:int():clamp(0, 2.5)):dtype() == "float32")      -- as torch.clamp
end

function tests.a_child_that_points_back_at_its_parent_is_walked_once()
  local Net = nn.module("Net")
  function Net:init() self.block = nn.linear(2, 2); self.block.owner = self end
  local net = Net()
  assert(#net:parameters() == 2)
  local names = {}
  for name in pairs(net:named_modules()) do names[#names + 1] = name end
  table.sort(names)
  assert(table.concat(names, " ") == " block", table.concat(names, ","))
end

-- Every architecture's config keys, each given values no model has: the model is built (and
-- runs), or the error names models.new and the key at fault.
function tests.bad_config_values_name_their_key_in_every_architecture()
  local archs = {
    GPT2LMHeadModel = { vocab_size = 16, n_embd = 8, n_layer = 1, n_head = 2, n_positions = 16 },
    BertModel = { vocab_size = 16, hidden_size = 8, num_hidden_layers = 1, num_attention_heads = 2, intermediate_size = 8,
      max_position_embeddings = 16, type_vocab_size = 2 },
    Qwen3ForCausalLM = { vocab_size = 16, hidden_size = 8, intermediate_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
      num_key_value_heads = 1, head_dim = 4, max_position_embeddings = 16 },
    MistralForCausalLM = { vocab_size = 16, hidden_size = 8, intermediate_size = 8, num_hidden_layers = 1, num_attention_heads = 2,
      max_position_embeddings = 16, sliding_window = 4 },
  }
  local optional = { "num_key_value_heads", "head_dim", "rope_theta", "layer_norm_epsilon", "layer_norm_eps", "rms_norm_eps",
    "n_inner", "sliding_window", "max_window_layers", "pad_token_id", "rope_scaling", "tie_word_embeddings" }
  local bad = { 0, -1, 1e12, 2^62, 1.5, "abc", true, {}, 0/0 }
  local checked = 0
  for arch, base in pairs(archs) do
    local keys = {}
    for k in pairs(base) do keys[#keys + 1] = k end
    for _, k in ipairs(optional) do keys[#keys + 1] = k end
    for _, key in ipairs(keys) do
      for _, value in ipairs(bad) do
        local config = {}
        for k, v in pairs(base) do config[k] = v end
        config[key] = value
        local ok, model = pcall(mt.models.new, arch, config)
        if ok then
          model{ input_ids = T.tensor{ { 1, 2, 3 } } }
        else
          local message = tostring(model)
          assert(message:find("models.new", 1, true) and message:find(key, 1, true),
            string.format("%s with %s = %s: %s", arch, key, tostring(value), message))
        end
        checked = checked + 1
      end
    end
  end
  assert(checked > 600, checked)
end

return tests

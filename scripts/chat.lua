-- chat.lua — chat with a model in the terminal: each reply streams token by token, and the
-- conversation is rendered with the model's chat template. Any causal model moontune loads works
-- (a GGUF file, or a Hugging Face directory with a chat template); the default is
-- SmolLM2-135M-Instruct, which the set-up installs (MOONTUNE_SMOLLM2).
--
--   ./dev run scripts/chat.lua --headless
--   MODEL=path/to/model.gguf SYSTEM="You are terse." MAX_NEW_TOKENS=200 ./dev run scripts/chat.lua --headless
--   echo "What is the capital of France?" | ./target/release/moontune run scripts/chat.lua
--
-- Settings come from the environment (a plain script takes no key=value overrides): MODEL,
-- SYSTEM (a system message), MAX_NEW_TOKENS (default 256), TEMPERATURE (0, the default, is
-- greedy), TOP_P, SEED. Lines typed: a message; `/reset` forgets the conversation; `/quit` (or
-- end of input) leaves. It reads standard input, so run it with --headless on a terminal (the
-- terminal UI would take the keyboard).

local mt = require "moontune"

local function setting(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return type(default) == "number" and assert(tonumber(v), name .. " must be a number, got " .. v) or v
end

local path = setting("MODEL", os.getenv("MOONTUNE_SMOLLM2"))
assert(path, "set MODEL to a model (a .gguf file or a Hugging Face directory); MOONTUNE_SMOLLM2 is set by ./dev")
local max_new_tokens = setting("MAX_NEW_TOKENS", 256)
local temperature = setting("TEMPERATURE", 0)
local top_p = setting("TOP_P", 1.0)
local seed = setting("SEED", 0)
local system = setting("SYSTEM", nil)

local t0 = mt.clock()
local model = assert(mt.models.load(path))
local tok = assert(mt.tokenizer.load(path))
io.stderr:write(string.format("loaded %s (%s, %.1f M parameters) in %.2f s; /reset, /quit\n",
  path, model:architecture(), model:num_parameters() / 1e6, mt.clock() - t0))

local messages = {}
local function reset()
  messages = {}
  if system then messages[1] = { role = "system", content = system } end
end
reset()

-- Prints the newly decoded text of `ids` after `shown` characters; holds back a trailing
-- incomplete UTF-8 character (decoded as U+FFFD) until its other bytes arrive.
local function stream(ids, shown)
  local text = tok:decode(ids, { skip_special_tokens = true })
  if text:sub(-3) == "\239\191\189" then return shown end
  io.write(text:sub(shown + 1))
  io.flush()
  return #text
end

while true do
  io.write("> ")
  io.flush()
  local line = io.read("l")
  if line == nil or line == "/quit" then break end
  if line == "/reset" then
    reset()
    io.write("(conversation reset)\n")
  elseif line:match("%S") then
    messages[#messages + 1] = { role = "user", content = line }
    local ids = tok:apply_chat_template(messages, { add_generation_prompt = true, tokenize = true })
    local input = mt.tensor.tensor({ ids }, { dtype = "int64" })
    local new, shown = {}, 0
    local started = mt.clock()
    mt.no_grad(function()
      model:generate(input, {
        max_new_tokens = max_new_tokens,
        do_sample = temperature > 0,
        temperature = temperature > 0 and temperature or nil,
        top_p = top_p,
        seed = seed,
        on_token = function(_, tokens)
          new[#new + 1] = tokens[1]
          shown = stream(new, shown)
        end,
      })
    end)
    local reply = tok:decode(new, { skip_special_tokens = true })
    io.write("\n")
    io.flush()
    io.stderr:write(string.format("[%d tokens, %.1f tokens/s]\n\n", #new, #new / math.max(mt.clock() - started, 1e-9)))
    messages[#messages + 1] = { role = "assistant", content = reply }
  end
end

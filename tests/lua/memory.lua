-- Memory stays bounded without the user's help: a 1,000-step loop making 24 MB of temporary
-- tensors per step (24 GB in all) keeps its resident set flat. Lua's collector alone sees only
-- the small userdata, so this relies on the runtime counting tensor bytes.

local mt = require "moontune"
local T = mt.tensor

local function rss_mb()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096 / 2^20
end

local w = T.ones({ 1000, 2000 }, { requires_grad = true })
local baseline
for step = 1, 1000 do
  local a = T.ones{ 1000, 2000 }            -- 8 MB
  local b = a * 2                           -- 8 MB
  local loss = (b * w):mean()               -- 8 MB, and a graph
  loss:backward()
  w.grad:zero_()
  if step == 100 then baseline = rss_mb() end
end
local growth = rss_mb() - baseline
print(string.format("memory: RSS grew %.1f MB over 900 steps (24 MB of temporaries per step)", growth))
assert(growth < 200, string.format("RSS grew by %.1f MB", growth))

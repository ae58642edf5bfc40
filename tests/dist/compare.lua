-- compare.lua — the largest difference between the tensors of safetensors files, name by name
-- (tests/dist.rs): MOONTUNE_COMPARE="reference.safetensors other.safetensors ..."; prints
-- "max_diff <x> max_abs <y> tensors <n>" and fails when a file misses a name of the reference
-- or a shape differs.
local mt = require "moontune"

local files = {}
for f in (os.getenv("MOONTUNE_COMPARE") or ""):gmatch("%S+") do files[#files + 1] = f end
assert(#files >= 2, "MOONTUNE_COMPARE needs at least two files")
local reference = mt.load(files[1])
local max_diff, max_abs, n = 0, 0, 0
for i = 2, #files do
  local other = mt.load(files[i])
  for name, t in pairs(reference) do
    local o = assert(other[name], files[i] .. " has no " .. name)
    assert(table.concat(o:shape(), "x") == table.concat(t:shape(), "x"), name .. ": shapes differ")
    max_diff = math.max(max_diff, (o:double() - t:double()):abs():max():item())
    max_abs = math.max(max_abs, t:double():abs():max():item())
    n = n + 1
  end
end
print(string.format("max_diff %.3e max_abs %.3e tensors %d", max_diff, max_abs, n))

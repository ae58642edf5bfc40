-- collectives.lua — mt.dist's collectives against values worked out by hand, on every rank and
-- in every dtype a recipe uses (tests/dist.rs runs it under `moontune launch` and in a plain
-- run, a world of one). Rank r contributes (r + 1) · [1, 2, 3, 4]; any mismatch is an error.
-- MOONTUNE_TEST_DEVICE=cuda runs them on this rank's GPU (NCCL under --backend nccl).
local mt = require "moontune"
local T = mt.tensor
local device = os.getenv("MOONTUNE_TEST_DEVICE") or "cpu"

local r, n = mt.dist.rank(), mt.dist.world_size()
assert(mt.dist.is_main() == (r == 0))
assert(mt.dist.local_rank() <= r)

-- Σ (k + 1) over ranks, and the largest and smallest factor.
local sum_factor = n * (n + 1) // 2

local function expect(t, want, what)
  assert(t:device() == mt.tensor.zeros{ 1 }:to(device):device(), what .. ": left its device")
  local got = t:to("cpu"):double()
  assert(got:equal(T.tensor(want):double()), what .. ": got " .. tostring(got) .. ", want " .. table.concat(want, " "))
end

local function scaled(f) return { f * 1, f * 2, f * 3, f * 4 } end

local checked = 0
for _, dtype in ipairs({ "float32", "float64", "bfloat16", "float16", "int64", "int32", "uint8" }) do
  local function mine() return (T.tensor({ 1, 2, 3, 4 }) * (r + 1)):to(dtype):to(device) end
  local floating = dtype:match("float") ~= nil

  local t = mine()
  assert(mt.dist.all_reduce(t) == t, "all_reduce returns its tensor")
  expect(t, scaled(sum_factor), dtype .. " sum")
  t = mine(); mt.dist.all_reduce(t, { op = "max" }); expect(t, scaled(n), dtype .. " max")
  t = mine(); mt.dist.all_reduce(t, { op = "min" }); expect(t, scaled(1), dtype .. " min")
  if floating then
    t = mine(); mt.dist.all_reduce(t, { op = "avg" }); expect(t, scaled(sum_factor / n), dtype .. " avg")
  else
    local ok, err = pcall(mt.dist.all_reduce, mine(), { op = "avg" })
    err = tostring(err)
    assert(not ok and err:find("floating"), dtype .. " avg must be refused: " .. tostring(err))
  end

  -- broadcast from the last rank: everyone gets n · [1, 2, 3, 4]
  t = mine(); mt.dist.broadcast(t, { src = n - 1 }); expect(t, scaled(n), dtype .. " broadcast")
  assert(t:dtype() == dtype)

  -- all_gather: row k is rank k's
  local g = mt.dist.all_gather(mine())
  assert(g:dtype() == dtype and g:size(0) == n and g:size(1) == 4, dtype .. " all_gather shape")
  for k = 0, n - 1 do expect(g[k], scaled(k + 1), dtype .. " all_gather row " .. k) end

  -- reduce_scatter of n rows of [1, 2]·(r+1): rank r gets row r of the sum
  local rows = (T.tensor({ 1, 2 }) * (r + 1)):to(dtype):to(device):unsqueeze(0):expand{ n, 2 }:contiguous()
  local part = mt.dist.reduce_scatter(rows)
  expect(part:reshape{ -1 }, { sum_factor, 2 * sum_factor }, dtype .. " reduce_scatter")
  checked = checked + 1
end

-- a non-contiguous tensor is reduced in place too
local wide = T.tensor({ { 1, 2 }, { 3, 4 } }):to(device):t()
mt.dist.all_reduce(wide)
expect(wide:reshape{ -1 }, { n, 3 * n, 2 * n, 4 * n }, "non-contiguous sum")

-- misuse is an error naming the call
local ok, err = pcall(mt.dist.broadcast, T.zeros{ 2 }, { src = n })
err = tostring(err)
assert(not ok and err:find("mt.dist.broadcast") and err:find("not a rank"), tostring(err))
ok, err = pcall(mt.dist.all_reduce, T.zeros{ 2 }, { op = "mul" })
err = tostring(err)
assert(not ok and err:find("sum, avg, max or min"), tostring(err))
if n > 1 then
  ok, err = pcall(mt.dist.reduce_scatter, T.zeros{ n + 1 })
  err = tostring(err)
  assert(not ok and err:find("divide by the world size"), tostring(err))
end
mt.dist.barrier()
print(string.format("collectives: rank %d of %d, %d dtypes checked", r, n, checked))

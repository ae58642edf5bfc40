-- cl_benchmark.lua — every continual-learning strategy on one order of the O-LoRA benchmark,
-- with the same budget and seeds: each step runs scripts/continual.lua for one strategy and
-- seed in its own process (`moontune run --headless`, so each wall time and peak memory is its
-- own), reads its results.json, and logs its metrics. At the end the run directory holds
-- results.csv (one row per run), results.md (mean ± standard deviation over the seeds per
-- strategy, with seconds per step and peak memory) and accuracy_matrices.svg (each
-- strategy's accuracy matrix R, side by side, from its first seed).
--
--   moontune run scripts/cl_benchmark.lua order=1 seeds=0,1,2
--   moontune run scripts/cl_benchmark.lua strategies=naive,replay args="steps_per_task=20 batch=8"
local mt = require "moontune"

local config = {
  order = 1,
  strategies = "naive,joint,replay,ewc,lwf,olora,adapters,fusion,scripts/strategies/cl_mas.lua",
  seeds = "0",
  args = "",   -- more key=value arguments for every scripts/continual.lua run (the budget)
}

local function list(text)
  local out = {}
  for item in text:gmatch("[^,%s]+") do out[#out + 1] = item end
  return out
end

-- The path of this moontune executable (Linux: /proc), else the one on PATH.
local function executable()
  local stat = io.open("/proc/self/stat")
  if stat then
    local pid = stat:read("l"):match("^(%d+)")
    stat:close()
    local link = io.popen("readlink /proc/" .. pid .. "/exe")
    local path = link and link:read("l")
    if link then link:close() end
    if path and path ~= "" then return path end
  end
  return "moontune"
end

local function quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function setup(cfg)
  local s = { runs = {}, plan = {}, exe = executable(), dir = nil }
  for _, strategy in ipairs(list(cfg.strategies)) do
    mt.cl.strategy(strategy)   -- an unknown name fails now, not after an hour of the others
    for _, seed in ipairs(list(cfg.seeds)) do
      s.plan[#s.plan + 1] = { strategy = strategy, seed = math.tointeger(tonumber(seed)) or error("cl_benchmark: seeds must be whole numbers, got " .. seed, 0) }
    end
  end
  cfg.steps = math.min(cfg.steps or math.huge, #s.plan)
  s.runs_dir = os.tmpname() .. "-cl-benchmark"
  if not os.execute("mkdir -p " .. quote(s.runs_dir)) then error("cl_benchmark: cannot make " .. s.runs_dir, 0) end
  return s
end

local function step(s, cfg)
  local run = s.plan[#s.runs + 1]
  local runs = s.runs_dir .. "/" .. run.strategy:gsub("[^%w_]", "_") .. "-seed" .. run.seed
  local command = table.concat({ quote(s.exe), "run --headless --runs-dir", quote(runs), "scripts/continual.lua",
    "strategy=" .. quote(run.strategy), "order=" .. cfg.order, "seed=" .. run.seed, cfg.args }, " ")
  mt.log("%s", command)
  local ok = os.execute(command .. " > " .. quote(runs .. ".log") .. " 2>&1")
  local found = io.popen("ls -d " .. quote(runs) .. "/*/results.json 2>/dev/null")
  local path = found:read("l")
  found:close()
  if not ok or not path then
    local log = io.open(runs .. ".log")
    local text = log and log:read("a") or ""
    if log then log:close() end
    error(string.format("cl_benchmark: %s (seed %d) failed:\n%s", run.strategy, run.seed, text:sub(-2000)), 0)
  end
  local result = mt.json.read(path)
  result.seed = run.seed
  s.runs[#s.runs + 1] = result
  local m = result.metrics
  return { average_accuracy = m.average_accuracy, forgetting = m.forgetting, bwt = m.bwt, fwt = m.fwt,
           wall_seconds = result.wall_seconds, seconds_per_step = result.seconds_per_step }
end

local function done(s) return #s.runs == #s.plan end

local function mean_sd(values)
  local sum = 0
  for _, v in ipairs(values) do sum = sum + v end
  local mean = sum / #values
  local sq = 0
  for _, v in ipairs(values) do sq = sq + (v - mean) ^ 2 end
  return mean, #values > 1 and math.sqrt(sq / (#values - 1)) or 0
end

local COLUMNS = { "average_accuracy", "forgetting", "bwt", "fwt", "average_incremental_accuracy" }

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function csv(s)
  local lines = { "strategy,seed," .. table.concat(COLUMNS, ",") .. ",wall_seconds,seconds_per_step,peak_memory_mb" }
  for _, r in ipairs(s.runs) do
    local row = { r.strategy, r.seed }
    for _, c in ipairs(COLUMNS) do row[#row + 1] = r.metrics[c] and string.format("%.4f", r.metrics[c]) or "" end
    row[#row + 1] = string.format("%.1f", r.wall_seconds)
    row[#row + 1] = string.format("%.3f", r.seconds_per_step)
    row[#row + 1] = r.peak_memory_bytes and string.format("%.0f", r.peak_memory_bytes / 2 ^ 20) or ""
    lines[#lines + 1] = table.concat(row, ",")
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Per strategy, in the order run: mean ± sd over the seeds.
local function markdown(s, cfg)
  local order, by = {}, {}
  for _, r in ipairs(s.runs) do
    if not by[r.strategy] then by[r.strategy] = {}; order[#order + 1] = r.strategy end
    table.insert(by[r.strategy], r)
  end
  local lines = {
    string.format("%s, seeds %s, arguments `%s`.", table.concat(s.runs[1].tasks, " → "), cfg.seeds, cfg.args),
    "",
    "| strategy | average accuracy | forgetting | BWT | FWT | average incremental accuracy | wall s | s/step | × naive s/step | peak MB |",
    "|---|---|---|---|---|---|---|---|---|---|",
  }
  -- The mean over a strategy's runs of what `get` reads from each.
  local function mean_of(runs, get)
    local v = {}
    for _, r in ipairs(runs) do v[#v + 1] = get(r) end
    return (mean_sd(v))
  end
  local function per_step(r) return r.seconds_per_step end
  local naive_step = by.naive and mean_of(by.naive, per_step)
  for _, name in ipairs(order) do
    local cells = { name }
    for _, c in ipairs(COLUMNS) do
      local v = {}
      for _, r in ipairs(by[name]) do if r.metrics[c] then v[#v + 1] = r.metrics[c] end end
      if #v == 0 then cells[#cells + 1] = "n/a" else
        local m, sd = mean_sd(v)
        cells[#cells + 1] = #v > 1 and string.format("%.3f ± %.3f", m, sd) or string.format("%.3f", m)
      end
    end
    local per_mean = mean_of(by[name], per_step)
    cells[#cells + 1] = string.format("%.0f", mean_of(by[name], function(r) return r.wall_seconds end))
    cells[#cells + 1] = string.format("%.3f", per_mean)
    cells[#cells + 1] = naive_step and string.format("%.2f", per_mean / naive_step) or "n/a"
    cells[#cells + 1] = string.format("%.0f", mean_of(by[name], function(r) return (r.peak_memory_bytes or 0) / 2 ^ 20 end))
    lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
  end
  return table.concat(lines, "\n") .. "\n"
end

-- Each strategy's R (first seed) as a grid of coloured cells with the accuracy written in.
local function svg(s)
  local first, order = {}, {}
  for _, r in ipairs(s.runs) do
    if not first[r.strategy] then first[r.strategy] = r; order[#order + 1] = r.strategy end
  end
  local n = #s.runs[1].tasks
  local cell, gap, left, top = 46, 40, 70, 40
  local width = left + #order * (n * cell + gap)
  local height = top + n * cell + 60
  local out = { string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">', width, height) }
  out[#out + 1] = string.format('<rect width="%d" height="%d" fill="white"/>', width, height)
  for k, name in ipairs(order) do
    local r = first[name]
    local x0 = left + (k - 1) * (n * cell + gap)
    out[#out + 1] = string.format('<text x="%d" y="%d" font-weight="bold">%s</text>', x0, top - 22, name:gsub("&", "&amp;"):gsub("<", "&lt;"))
    for j, task in ipairs(r.tasks) do
      out[#out + 1] = string.format('<text x="%d" y="%d" text-anchor="middle">%s</text>', x0 + (j - 0.5) * cell, top - 6, task)
      if k == 1 then out[#out + 1] = string.format('<text x="%d" y="%d" text-anchor="end">after %s</text>', left - 4, top + (j - 0.5) * cell + 4, task) end
    end
    for i, row in ipairs(r.R) do
      for j, v in ipairs(row) do
        local shade = math.floor(255 - 200 * math.max(0, math.min(1, v)))
        out[#out + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="rgb(%d,%d,255)" stroke="white"/>',
          x0 + (j - 1) * cell, top + (i - 1) * cell, cell, cell, shade, shade)
        out[#out + 1] = string.format('<text x="%d" y="%d" text-anchor="middle" fill="%s">%.2f</text>',
          x0 + (j - 0.5) * cell, top + (i - 0.5) * cell + 4, shade < 128 and "white" or "black", v)
      end
    end
    out[#out + 1] = string.format('<text x="%d" y="%d">%.0f s, avg %.3f</text>', x0, top + n * cell + 18, r.wall_seconds, r.metrics.average_accuracy)
  end
  out[#out + 1] = "</svg>"
  return table.concat(out, "\n") .. "\n"
end

local function finish(s, cfg, dir)
  if #s.runs == 0 then return end
  write(dir .. "/results.csv", csv(s))
  write(dir .. "/results.md", markdown(s, cfg))
  write(dir .. "/accuracy_matrices.svg", svg(s))
  mt.log("\n%s", markdown(s, cfg))
  mt.log("wrote %s/results.csv, results.md and accuracy_matrices.svg (each run's own directory under %s)", dir, s.runs_dir)
end

return { config = config, setup = setup, step = step, done = done, finish = finish }

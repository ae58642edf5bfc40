-- mt.json: JSON text to Lua values and back, and its errors.
local mt = require "moontune"
local expect = require "support.expect"

local tests = {}

function tests.decode_and_encode_round_trip()
  local v = assert(mt.json.decode('{"a": [1, 2.5, "x", true], "b": {"c": null}, "n": -3}'))
  assert(v.a[1] == 1 and v.a[2] == 2.5 and v.a[3] == "x" and v.a[4] == true and v.n == -3)
  assert(v.b.c == nil, "null is nil")
  local again = assert(mt.json.decode(mt.json.encode(v)))
  assert(again.a[3] == "x" and again.n == -3)
  assert(mt.json.encode({ 1, 2 }) == "[1,2]")
end

function tests.read_reads_a_file()
  local path = os.tmpname()
  local f = assert(io.open(path, "w")); f:write('[{"instruction": "hi", "output": "there"}]'); f:close()
  local rows = assert(mt.json.read(path))
  assert(#rows == 1 and rows[1].output == "there")
  os.remove(path)
end

function tests.bad_text_and_files_are_nil_and_a_message()
  local v, err = mt.json.decode("{bad")
  assert(v == nil and err:find("json.decode: key must be a string at line 1 column 2", 1, true), err)
  v, err = mt.json.read("/nonexistent/file.json")
  assert(v == nil and err:find("json.read: cannot read /nonexistent/file.json", 1, true), err)
  expect.raises(function() mt.json.encode(print) end, "json.encode")
end

return tests

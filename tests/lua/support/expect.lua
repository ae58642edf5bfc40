-- Assertions shared by the Lua test files (tests/lua/support is not itself run as tests).

local expect = {}

-- expect.raises(f, needle): f() must raise an error whose message contains needle.
function expect.raises(f, needle)
  local ok, err = pcall(f)
  assert(not ok, "expected an error containing " .. needle)
  assert(tostring(err):find(needle, 1, true), string.format("%q lacks %q", tostring(err), needle))
end

return expect

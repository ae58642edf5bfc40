-- Token ids against a reference (tests/parity/support is not itself run as tests).

-- check_ids(tok, lines, ref): tok encodes each of `lines` to the ids in `ref.ids` (all lines'
-- ids concatenated), `ref.lengths` giving each line's count.
return function(tok, lines, ref)
  local want, lengths = ref.ids:tolist(), ref.lengths:tolist()
  assert(#lines == #lengths, #lines .. " lines for " .. #lengths .. " lengths")
  local at = 0
  for i, line in ipairs(lines) do
    local got = tok:encode(line)
    assert(#got == lengths[i], string.format("line %d (%q): %d ids, expected %d", i, line, #got, lengths[i]))
    for j, id in ipairs(got) do
      assert(id == want[at + j], string.format("line %d token %d: %d, expected %d", i, j, id, want[at + j]))
    end
    at = at + lengths[i]
  end
end

//! The API reference covers the bindings: every function and field a recipe can reach through
//! `require "moontune"` (module tables, the methods of tensors, modules, optimizers, schedules,
//! tokenizers, caches, parameter groups and hook handles, the nn classes) is described in
//! types/moontune.lua, and docs/api.md is what `moontune types --markdown` makes of that file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use mlua::{Lua, LuaOptions, StdLib};
use moontune::reference::annotations::{self, Item, Reference};
use moontune::reference::ANNOTATIONS;

/// Lists the live bindings as "Class.member" lines, in a VM with the whole debug library (to
/// read the method tables mlua keeps in the upvalues of a userdata's `__index`).
const ENUMERATE: &str = r#"
local mt = require "moontune"
local out = {}
local function add(class, member) out[#out + 1] = class .. "." .. member end

-- Module tables: every key; tables below are module tables of their own, except nn's classes.
local function walk_table(class, t, seen)
  if seen[t] then return end
  seen[t] = true
  for k, v in pairs(t) do
    if type(k) == "string" then
      if type(v) == "table" and rawget(v, "__is_module") then
        add(class, k)
        local members = {}
        for mk in pairs(v) do
          if type(mk) == "string" and not mk:match("^__") then add(class .. "." .. k, mk) end
        end
        for mk, mv in pairs(getmetatable(v) or {}) do
          if mk == "__call" then add(class .. "." .. k, "__call") end
        end
      elseif type(v) == "table" then
        add(class, k)
        walk_table(class .. "." .. k, v, seen)
      else
        add(class, k)
      end
    end
  end
end
walk_table("moontune", mt, {})

-- Userdata: the metatable's entries, and the methods and fields behind a closure __index.
local function walk_userdata(class, ud)
  local meta = debug.getmetatable(ud)
  assert(meta, class .. " has no metatable")
  for k, v in pairs(meta) do
    if type(k) == "string" and k ~= "__index" and k ~= "__name" and k ~= "__type" and k ~= "__gc"
       and k ~= "__metatable" then
      add(class, k)
    end
  end
  local function names_of(t) for k in pairs(t) do add(class, k) end end
  local index = meta.__index
  if type(index) == "table" then names_of(index)
  elseif type(index) == "function" then
    local found = false
    for i = 1, 16 do
      local name, v = debug.getupvalue(index, i)
      if not name then break end
      if type(v) == "table" then names_of(v); found = true end
    end
    if not found and meta.__pairs then
      for k in pairs(ud) do add(class, k) end
      found = true
    end
    assert(found, class .. ": its __index keeps no method table in an upvalue (has mlua changed?) and it has no __pairs")
  end
end

local T = mt.tensor
local model = mt.models.new("LlamaForCausalLM", { vocab_size = 16, hidden_size = 8, intermediate_size = 8,
  num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 8 })
local opt = mt.optim.adamw(model:parameters(), { lr = 1e-3 })
local corpus = os.tmpname()
local f = assert(io.open(corpus, "w")); f:write("a b c\nb c d\n"); f:close()
local tok = mt.tokenizer.train_bpe{ files = { corpus }, vocab_size = 40 }
os.remove(corpus)
walk_userdata("moontune.Tensor", T.zeros{ 1 })
walk_userdata("moontune.Module", model)
walk_userdata("moontune.Optimizer", opt)
walk_userdata("moontune.Schedule", mt.sched.cosine(opt, { warmup = 1, total = 2 }))
walk_userdata("moontune.ParamGroup", opt:param_groups()[1])
walk_userdata("moontune.Tokenizer", tok)
walk_userdata("moontune.Cache", model:new_cache())
walk_userdata("moontune.HookHandle", model:register_forward_hook({ "mlp" }, function() end))
walk_userdata("moontune.Dataset", mt.data.from({ 1, 2 }))
walk_userdata("moontune.DataIterator", mt.data.from({ 1, 2 }):iter())
table.sort(out)
return table.concat(out, "\n")
"#;

fn live_bindings() -> BTreeMap<String, BTreeSet<String>> {
    // SAFETY: the whole debug library is loaded on purpose, to enumerate the bindings; this VM
    // runs only the enumeration script above.
    let lua = unsafe { Lua::unsafe_new_with(StdLib::ALL, LuaOptions::new()) };
    moontune::lua::runtime::install_moontune(&lua, None).expect("installing moontune");
    let listing: String = lua.load(ENUMERATE).set_name("=enumerate").eval().unwrap_or_else(|e| panic!("{e}"));
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in listing.lines() {
        let (class, member) = line.rsplit_once('.').expect("class.member");
        out.entry(class.to_string()).or_default().insert(member.to_string());
    }
    out
}

fn reference() -> Reference {
    annotations::parse(ANNOTATIONS).unwrap_or_else(|e| panic!("types/moontune.lua: {e:#}"))
}

#[test]
fn every_binding_is_described_by_the_reference() {
    let reference = reference();
    let live = live_bindings();
    assert!(live.len() > 30 && live["moontune.Tensor"].len() > 100, "the enumeration found too little: {live:?}");
    let mut missing = Vec::new();
    for (class, members) in &live {
        if reference.section(class).is_none() {
            missing.push(format!("{class} (no ---@class {class})"));
            continue;
        }
        let documented = reference.members(class);
        missing.extend(members.iter().filter(|m| !documented.contains(*m)).map(|m| format!("{class}.{m}")));
    }
    assert!(missing.is_empty(), "bindings that types/moontune.lua does not describe:\n  {}", missing.join("\n  "));
}

#[test]
fn the_reference_describes_no_function_that_does_not_exist() {
    let reference = reference();
    let live = live_bindings();
    let mut stale = Vec::new();
    for section in &reference.sections {
        if !live.contains_key(&section.class) {
            continue;
        }
        // A function documented on a base class exists on the classes derived from it.
        let mut exists: BTreeSet<String> = live[&section.class].clone();
        for derived in &reference.sections {
            let mut parent = derived.parent.clone();
            while let Some(p) = parent {
                if p == section.class {
                    exists.extend(live.get(&derived.class).into_iter().flatten().cloned());
                }
                parent = reference.section(&p).and_then(|s| s.parent.clone());
            }
        }
        for item in &section.items {
            if let Item::Function(f) = item {
                if !exists.contains(&f.name) {
                    stale.push(f.signature());
                }
            }
        }
    }
    assert!(stale.is_empty(), "types/moontune.lua describes functions that do not exist:\n  {}", stale.join("\n  "));
}

#[test]
fn the_annotations_are_lua_that_compiles() {
    let lua = Lua::new();
    lua.load(ANNOTATIONS).set_name("@types/moontune.lua").into_function().unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn docs_api_md_is_made_from_the_annotations() {
    let expected = moontune::commands::types::reference_markdown().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/api.md");
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(actual == expected, "docs/api.md is not what types/moontune.lua makes: run `moontune types --markdown docs/api.md`");
}

#[test]
fn moontune_types_installs_the_annotations() {
    let dir = std::env::temp_dir().join(format!("moontune-types-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_moontune")).arg("types").arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let written = std::fs::read_to_string(dir.join("moontune.lua")).unwrap();
    assert_eq!(written, ANNOTATIONS);
    assert!(String::from_utf8_lossy(&out.stdout).contains("workspace.library"));
    std::fs::remove_dir_all(&dir).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_moontune")).arg("types").output().unwrap();
    assert!(!out.status.success(), "types without a folder must fail");
}

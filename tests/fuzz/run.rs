//! Running one fuzz case as a child process and saying how it ended: a crash (a signal, a Rust
//! panic, an abort), a hang (past the time limit), an unclear message (one that does not name
//! the call, file or key at fault, or that shows internals), a clear error, or ok.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cases::Case;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Crash,
    Hang,
    Unclear,
    ClearError,
    Ok,
}

impl Outcome {
    pub fn is_failure(self) -> bool {
        matches!(self, Outcome::Crash | Outcome::Hang | Outcome::Unclear)
    }
}

/// Text that shows a user moontune's internals rather than their mistake.
const INTERNALS: &[&str] = &[
    "frame #", "Exception raised from", "error converting Lua", "bad argument #", "LuaTensor", "LuaModule", "LuaTokenizer", "LuaOptimizer",
    "LuaSchedule", "LuaCache", "LuaParamGroup", "LuaHookHandle", "AnyUserData", "table: 0x", "userdata: 0x", ".rs:", "called `Result",
    "called `Option", "Torch(\"", "TchError", "deserialize error", "expected f64", "expected i64", "expected u64", "expected usize",
    "expected u32", "mlua", "serde", "runtime error: ",
];

/// Text that only a crash prints.
const CRASHES: &[&str] = &["internal error", "panicked at", "fatal runtime error", "has overflowed its stack", "Segmentation fault", "core dumped", "memory allocation of"];

pub struct Ended {
    pub outcome: Outcome,
    pub output: String,
}

/// Writes the case's files into `dir` and runs it there.
pub fn run(binary: &Path, case: &Case, dir: &Path, limit: Duration) -> Ended {
    std::fs::create_dir_all(dir).unwrap();
    for (name, bytes) in &case.files {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    let mut child = Command::new(binary)
        .args(&case.args)
        .current_dir(dir)
        .env("MOONTUNE_FUZZ_DIR", dir)
        .stdin(if case.stdin.is_empty() { Stdio::null() } else { Stdio::piped() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting moontune");
    if let Some(mut input) = child.stdin.take() {
        let bytes = case.stdin.clone();
        std::thread::spawn(move || {
            let _ = input.write_all(&bytes);
        });
    }
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        let mut e = Vec::new();
        let _ = err.read_to_end(&mut e);
        text.extend(e);
        String::from_utf8_lossy(&text).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = reader.join().unwrap_or_default();
    let Some(status) = status else { return Ended { outcome: Outcome::Hang, output } };
    Ended { outcome: classify(status.code(), &output, &case.names, case.must_print), output }
}

fn classify(code: Option<i32>, output: &str, names: &[String], must_print: Option<&str>) -> Outcome {
    // No exit code: killed by a signal (an abort, a segfault, the OOM killer).
    let Some(code) = code else { return Outcome::Crash };
    if code == 101 || code >= 128 || CRASHES.iter().any(|c| output.contains(c)) {
        return Outcome::Crash;
    }
    // A session that did not go on past the mistake lost the user's work.
    if must_print.is_some_and(|p| !output.contains(p)) {
        return Outcome::Crash;
    }
    if code == 0 && (must_print.is_none() || names.is_empty()) {
        return Outcome::Ok;
    }
    let message = output.split("\nstack traceback:").next().unwrap_or(output);
    if INTERNALS.iter().any(|i| message.contains(i)) || !names.iter().any(|n| message.contains(n.as_str())) {
        return Outcome::Unclear;
    }
    Outcome::ClearError
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_told_apart() {
        let names = vec!["tensor.narrow".to_string()];
        assert_eq!(classify(None, "", &names, None), Outcome::Crash);
        assert_eq!(classify(Some(101), "thread 'main' panicked at src/x.rs:1", &names, None), Outcome::Crash);
        assert_eq!(classify(Some(1), "moontune: internal error: boom", &names, None), Outcome::Crash);
        assert_eq!(classify(Some(0), "", &names, None), Outcome::Ok);
        assert_eq!(classify(Some(1), "moontune: error: tensor.narrow: argument 2: expected an integer", &names, None), Outcome::ClearError);
        assert_eq!(classify(Some(1), "moontune: error: bad argument #3 to `LuaTensor.narrow`", &names, None), Outcome::Unclear);
        assert_eq!(classify(Some(1), "moontune: error: something failed", &names, None), Outcome::Unclear);
        // Sessions: the REPL must go on after the mistake, and say what it was.
        assert_eq!(classify(Some(0), "error: tensor.narrow: bad\nstill here", &names, Some("still here")), Outcome::ClearError);
        assert_eq!(classify(Some(0), "error: bad argument #1\nstill here", &names, Some("still here")), Outcome::Unclear);
        assert_eq!(classify(Some(0), "error: tensor.narrow: bad", &names, Some("still here")), Outcome::Crash);
    }
}

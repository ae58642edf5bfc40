//! The TUI end to end, as a person sees it: `moontune run` in a tmux pane; the screen shows the
//! gauge advancing and a chart; `p` stops the steps and `p` again resumes them; `q` then `n`
//! quits and leaves the terminal restored (the alternate screen off, the closing line printed);
//! and `moontune repl` runs every line of a paste.
//! Skipped, saying so, where tmux is not installed.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux").args(args).output().expect("tmux runs");
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-t", session, "-p"])
}

/// The step shown in the gauge ("step N/total").
fn shown_step(screen: &str) -> Option<u64> {
    let at = screen.find("step ")?;
    screen[at + 5..].split('/').next()?.trim().parse().ok()
}

fn wait_for(session: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let s = screen(session);
        if ok(&s) {
            return s;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "timed out waiting for {what}; screen:\n{s}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// False (after saying SKIPPED) where tmux is not installed.
fn have_tmux(test: &str) -> bool {
    let found = Command::new("tmux").arg("-V").output().is_ok();
    if !found {
        println!("SKIPPED {test}: tmux is not installed");
    }
    found
}

#[test]
fn tui_shows_progress_pauses_resumes_and_restores_the_terminal() {
    if !have_tmux("tui_shows_progress_pauses_resumes_and_restores_the_terminal") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("slow.lua");
    std::fs::write(
        &recipe,
        r#"local mt = require "moontune"
return {
  config = { steps = 100000 },
  step = function(state, cfg)
    local t = mt.clock() while mt.clock() - t < 0.02 do end
    state.n = (state.n or 0) + 1
    return { loss = 1 / state.n, acc = state.n / 1000 }
  end,
}
"#,
    )
    .unwrap();
    let session = format!("moontune-tui-{}", std::process::id());
    let command = format!("{} run {} --runs-dir {}; echo EXITED $?; sleep 30", env!("CARGO_BIN_EXE_moontune"), recipe.display(), dir.path().join("runs").display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "100", "-y", "30", &command]);
    let guard = KillSession(session.clone());

    let first = wait_for(&session, "the gauge", |s| shown_step(s).is_some_and(|n| n >= 5));
    let n0 = shown_step(&first).unwrap();
    let s = wait_for(&session, "progress", |s| shown_step(s).is_some_and(|n| n > n0 + 10));
    assert!(s.chars().any(|c| ('\u{2801}'..='\u{28ff}').contains(&c)), "a chart is drawn (braille):\n{s}");
    assert!(s.contains("running") && s.contains("loss"), "{s}");

    tmux(&["send-keys", "-t", &session, "p"]);
    let paused = wait_for(&session, "the paused status", |s| s.contains("paused"));
    std::thread::sleep(Duration::from_millis(300));
    let n1 = shown_step(&screen(&session)).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    let n2 = shown_step(&screen(&session)).unwrap();
    assert_eq!(n1, n2, "steps advanced while paused:\n{paused}");

    tmux(&["send-keys", "-t", &session, "p"]);
    wait_for(&session, "steps after resuming", |s| shown_step(s).is_some_and(|n| n > n2 + 5) && s.contains("running"));

    tmux(&["send-keys", "-t", &session, "q"]);
    wait_for(&session, "the quit prompt", |s| s.contains("save a checkpoint before quitting?"));
    tmux(&["send-keys", "-t", &session, "n"]);
    let after = wait_for(&session, "the process to end", |s| s.contains("EXITED"));
    // A quit the user asked for is a success (130 is Ctrl-C's).
    assert!(after.contains("EXITED 0") && after.contains("stopped after"), "{after}");
    assert_eq!(tmux(&["display-message", "-t", &session, "-p", "#{alternate_on}"]).trim(), "0", "the alternate screen is left");
    assert!(!after.contains("┌ log"), "the TUI is gone from the screen:\n{after}");
    drop(guard);
    assert!(Path::new(&dir.path().join("runs")).exists());
}

struct KillSession(String);

impl Drop for KillSession {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

#[test]
fn a_terminal_that_hangs_up_ends_the_run() {
    if !have_tmux("a_terminal_that_hangs_up_ends_the_run") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let recipe = dir.path().join("forever.lua");
    std::fs::write(&recipe, "return { config = { steps = 1000000 }, step = function() return { loss = 1 } end }\n").unwrap();
    let runs = dir.path().join("runs");
    let session = format!("moontune-hup-{}", std::process::id());
    let command = format!("{} run {} --runs-dir {}", env!("CARGO_BIN_EXE_moontune"), recipe.display(), runs.display());
    tmux(&["new-session", "-d", "-s", &session, "-x", "80", "-y", "24", &command]);
    wait_for(&session, "the run", |s| shown_step(s).is_some_and(|n| n > 10));
    tmux(&["kill-session", "-t", &session]);
    let start = Instant::now();
    let pattern = runs.display().to_string();
    while Command::new("pgrep").args(["-f", &pattern]).output().map(|o| o.status.success()).unwrap_or(false) {
        assert!(start.elapsed() < Duration::from_secs(10), "moontune still runs after its terminal went away");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn repl_runs_every_line_of_a_paste() {
    if !have_tmux("repl_runs_every_line_of_a_paste") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let session = format!("moontune-repl-{}", std::process::id());
    let command = format!("HOME={} {} repl", home.path().display(), env!("CARGO_BIN_EXE_moontune"));
    tmux(&["new-session", "-d", "-s", &session, "-x", "100", "-y", "30", &command]);
    let _guard = KillSession(session.clone());
    wait_for(&session, "the prompt", |s| s.contains("Ctrl-D exits.\n>"));
    // Several lines arriving at once, as a terminal without bracketed paste delivers a paste.
    tmux(&["send-keys", "-t", &session, "-l", "a = 20\nb = 22\nprint(a + b)\nc = a * b\nc\n"]);
    let shown = wait_for(&session, "the last line's value", |s| s.contains("440"));
    assert!(shown.contains("42") && shown.contains("> c = a * b"), "{shown}");
}

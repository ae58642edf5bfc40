//! The watcher thread: turns changes of the recipe file, and of the Lua modules it `require`d
//! from its own folder, into one debounced `Command::Reload` (editors save in several writes).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use notify::{RecursiveMode, Watcher};

use super::command::Command;

/// Quiet time after the last change before a reload is asked for.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// The files whose changes reload the recipe; the run loop updates it after each load.
pub type WatchedFiles = Arc<Mutex<HashSet<PathBuf>>>;

/// Watches `dir` (recursively) and sends `Command::Reload` to `commands` after changes to any of
/// `files` settle. Returns the watcher, which stops when dropped.
pub fn spawn(dir: &Path, files: WatchedFiles, commands: Sender<Command>) -> Result<notify::RecommendedWatcher> {
    let (raw_tx, raw_rx) = channel::<notify::Result<notify::Event>>();
    let mut watcher = notify::recommended_watcher(raw_tx)?;
    watcher.watch(dir, RecursiveMode::Recursive)?;
    std::thread::spawn(move || {
        let relevant = |event: &notify::Result<notify::Event>| match event {
            Ok(e) if e.kind.is_modify() || e.kind.is_create() => {
                let watched = files.lock().map(|f| f.clone()).unwrap_or_default();
                e.paths.iter().any(|p| watched.contains(&canonical(p)))
            }
            _ => false,
        };
        while let Ok(event) = raw_rx.recv() {
            if !relevant(&event) {
                continue;
            }
            // Wait until writes to the watched files stop (other files in the folder, such as a
            // run directory's metrics, may keep changing), then ask once.
            let mut deadline = Instant::now() + DEBOUNCE;
            loop {
                match raw_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(event) if relevant(&event) => deadline = Instant::now() + DEBOUNCE,
                    Ok(_) => {}
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            }
            if commands.send(Command::Reload).is_err() {
                return;
            }
        }
    });
    Ok(watcher)
}

/// The path with symlinks and `..` resolved (as far as it exists), for comparing paths.
pub fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

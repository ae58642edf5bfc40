//! A test's scratch directory under the system's temporary folder, named after the test and the
//! process: made empty when the test starts and removed when it passes. A failing test keeps it
//! (its path is printed) for inspection. The runs these tests start write checkpoints of
//! hundreds of megabytes, which left in /tmp filled the disk after a few dozen suite runs.

use std::ops::Deref;
use std::path::{Path, PathBuf};

pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `<tmp>/moontune-<name>-<pid>`, empty and existing.
    pub fn new(name: &str) -> ScratchDir {
        let dir = std::env::temp_dir().join(format!("moontune-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot make {}: {e}", dir.display()));
        ScratchDir(dir)
    }
}

impl Deref for ScratchDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's directory {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

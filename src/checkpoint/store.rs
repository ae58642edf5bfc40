//! Checkpoints on disk: `<run>/checkpoints/step-N/` directories, each written in a temporary
//! sibling, fsynced file by file, renamed into place, and only then named by the `latest` file.
//! A write that is interrupted leaves a `.step-N.tmp-*` directory that is never read and is
//! removed by the next write; the checkpoint `latest` names stays whole.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::io::write_atomic;

/// The file in each checkpoint that says what it holds (written last, read first).
pub const MANIFEST: &str = "checkpoint.json";
pub const TENSORS: &str = "tensors.safetensors";

pub fn root(run_dir: &Path) -> PathBuf {
    run_dir.join("checkpoints")
}

pub fn name(step: u64) -> String {
    format!("step-{step}")
}

/// A fresh temporary sibling of `target` to write a checkpoint into, after removing what
/// interrupted writes of `target` left behind.
pub fn begin(target: &Path) -> Result<PathBuf> {
    let parent = parent_of(target);
    let name = target.file_name().with_context(|| format!("{} is not a directory path", target.display()))?.to_string_lossy().to_string();
    fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    for entry in fs::read_dir(parent)?.flatten() {
        let n = entry.file_name().to_string_lossy().to_string();
        if n.starts_with(&format!(".{name}.tmp-")) || n.starts_with(&format!(".{name}.old-")) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    Ok(tmp)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

fn sync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            sync_tree(&path)?;
        } else {
            File::open(&path).and_then(|f| f.sync_all()).with_context(|| format!("cannot sync {}", path.display()))?;
        }
    }
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", dir.display()))
}

/// Puts the finished temporary directory in place as `target` (replacing an older one of that
/// name only once the new one is whole).
pub fn commit(tmp: &Path, target: &Path) -> Result<()> {
    if !tmp.join(MANIFEST).exists() {
        bail!("{} has no {MANIFEST}: the checkpoint was not written", tmp.display());
    }
    sync_tree(tmp)?;
    let parent = parent_of(target);
    let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let old = parent.join(format!(".{name}.old-{}", std::process::id()));
    if target.exists() {
        fs::rename(target, &old).with_context(|| format!("cannot move {} aside", target.display()))?;
    }
    fs::rename(tmp, target).with_context(|| format!("cannot rename {} to {}", tmp.display(), target.display()))?;
    File::open(parent).and_then(|d| d.sync_all()).with_context(|| format!("cannot sync {}", parent.display()))?;
    let _ = fs::remove_dir_all(&old);
    Ok(())
}

/// Makes `root/latest` name the checkpoint `step` (after it is committed).
pub fn point_latest(root: &Path, step: u64) -> Result<()> {
    write_atomic(&root.join("latest"), name(step).as_bytes())
}

/// The checkpoint `latest` names, checked to be readable.
pub fn latest(root: &Path) -> Result<PathBuf> {
    let pointer = root.join("latest");
    let Ok(name) = fs::read_to_string(&pointer) else {
        bail!("{} holds no checkpoint (no {}): was the run started with save_every, or saved with `s` / :save?", root.parent().unwrap_or(root).display(), pointer.display());
    };
    let dir = root.join(name.trim());
    check(&dir)?;
    Ok(dir)
}

/// Checks that `dir` is a whole checkpoint: its manifest parses and its tensors file is there.
pub fn check(dir: &Path) -> Result<serde_json::Value> {
    let manifest = dir.join(MANIFEST);
    let text = fs::read_to_string(&manifest).with_context(|| format!("the checkpoint {} is incomplete or corrupted: cannot read {MANIFEST}", dir.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("the checkpoint {} is corrupted: {MANIFEST} is not valid JSON", dir.display()))?;
    if json.get("format").and_then(|f| f.as_str()) != Some("moontune-checkpoint") {
        bail!("{} is not a moontune checkpoint", manifest.display());
    }
    let tensors = dir.join(TENSORS);
    let bytes = fs::metadata(&tensors).with_context(|| format!("the checkpoint {} is incomplete: {TENSORS} is missing", dir.display()))?.len();
    if json.get("tensor_bytes").and_then(|b| b.as_u64()).is_some_and(|b| b != bytes) {
        bail!("the checkpoint {} is corrupted: {TENSORS} has {bytes} bytes, its manifest says {}", dir.display(), json["tensor_bytes"]);
    }
    Ok(json)
}

/// The steps of the checkpoints under `root`, ascending.
pub fn steps(root: &Path) -> Vec<u64> {
    let mut out: Vec<u64> = fs::read_dir(root)
        .map(|entries| entries.flatten().filter_map(|e| e.file_name().to_string_lossy().strip_prefix("step-").and_then(|s| s.parse().ok())).collect())
        .unwrap_or_default();
    out.sort_unstable();
    out
}

/// Removes the checkpoints whose steps are not in `keep` (never the one `latest` names).
pub fn prune(root: &Path, keep: &[u64]) -> Result<()> {
    let latest = fs::read_to_string(root.join("latest")).unwrap_or_default();
    for step in steps(root) {
        if !keep.contains(&step) && latest.trim() != name(step) {
            fs::remove_dir_all(root.join(name(step))).with_context(|| format!("cannot remove {}", root.join(name(step)).display()))?;
        }
    }
    Ok(())
}

//! The run folder's lock file: `RUN_DIR/.lock` holds the pid of the one process that may write into the folder.
//!
//! The lock is created atomically with its content (written to a private temporary file, then hard-linked to
//! `.lock`, which fails if the lock exists), so a second process never reads a half-written pid. A lock left by a
//! process that no longer exists (killed with `kill -9`) is stale and taken over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// File name of the lock inside a run folder.
pub use super::paths::LOCK_FILE;

/// A held lock; dropping it removes the lock file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
}

impl RunLock {
    /// Takes the lock of `dir` (which must exist), or says which process holds it and, as `other_way`, what
    /// else the user can do (e.g. "choose another --name").
    pub fn acquire(dir: &Path, other_way: &str) -> Result<Self> {
        let path = super::RunPaths::new(dir).lock();
        let pid = std::process::id();
        let tmp = dir.join(format!(".lock.{pid}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            writeln!(f, "{pid}")?;
            f.sync_all()
        };
        if path.is_dir() {
            return Err(Error::invalid(format!(
                "{} is a folder where catdog keeps its lock file: remove that folder (nothing of catdog's is in it), \
                 then start again",
                path.display()
            )));
        }
        write().map_err(|e| Error::io(&tmp, e))?;
        // Two tries: the second after removing a stale lock.
        let mut result = Err(Error::Other(String::new()));
        for _ in 0..2 {
            result = match std::fs::hard_link(&tmp, &path) {
                Ok(()) => Ok(RunLock { path: path.clone() }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match holder(&path) {
                    Some(other) if process_alive(other) => Err(Error::invalid(held_by(dir, &path, other, other_way))),
                    _ => {
                        // Stale (its process is gone) or unreadable: take it over.
                        let _ = std::fs::remove_file(&path);
                        continue;
                    }
                },
                Err(e) => Err(Error::io(&path, e)),
            };
            break;
        }
        let _ = std::fs::remove_file(&tmp);
        result
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only remove a lock that is still ours.
        if holder(&self.path) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The message for a lock that live process `pid` holds. A process that is not catdog (its command line does not
/// name it) holds the pid of a catdog run that was killed: the pid was reused, and the lock is stale.
fn held_by(dir: &Path, lock: &Path, pid: u32, other_way: &str) -> String {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let name = std::fs::read_to_string(proc_dir.join("comm"))
        .ok()
        .map(|n| n.trim().to_string());
    let cmdline = std::fs::read(proc_dir.join("cmdline")).unwrap_or_default();
    let is_catdog = String::from_utf8_lossy(&cmdline).contains("catdog");
    match name {
        Some(name) if !is_catdog => format!(
            "{} is locked by pid {pid} ({name}), which is not catdog: the lock was probably left by a catdog run \
             that was killed, and its pid has since been reused. If no catdog is using {}, delete {} and start \
             again; or {other_way}",
            dir.display(),
            dir.display(),
            lock.display()
        ),
        _ => format!(
            "{} is in use by another catdog process (pid {pid}{}, see {}): wait for it to finish, stop it, or \
             {other_way}",
            dir.display(),
            name.map(|n| format!(", {n}")).unwrap_or_default(),
            lock.display()
        ),
    }
}

/// The pid recorded in a lock file.
fn holder(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True when a process with this pid exists (signal 0 checks without sending anything).
fn process_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    #[cfg(unix)]
    {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return false;
        };
        // SAFETY: kill with signal 0 sends nothing; it only reports whether the pid exists and may be signalled.
        let r = unsafe { libc::kill(pid, 0) };
        r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
    }
    #[cfg(not(unix))]
    {
        true
    }
}

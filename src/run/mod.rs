//! The run folder: created atomically and owned by one process for the life of a run (a lock file with its
//! pid), named safely, cleaned of what an interrupted process left behind, and checked before a resume.

mod lock;
mod name;
mod paths;
pub mod resume;

use std::path::{Path, PathBuf};

pub use lock::{RunLock, LOCK_FILE};
pub use name::{validate_name, MAX_NAME_BYTES};
pub use paths::RunPaths;

use crate::error::{Error, Result};

/// A run folder this process owns until it is dropped.
#[derive(Debug)]
pub struct RunFolder {
    pub dir: PathBuf,
    /// This process made the folder: it may remove it again if nothing was written into it.
    created: bool,
    _lock: RunLock,
}

/// True when `dir` holds a run that got as far as its first checkpoint.
pub fn has_checkpoint(dir: &Path) -> bool {
    RunPaths::new(dir).last().exists()
}

impl RunFolder {
    /// Creates `runs_dir/name` for a new run and locks it. With an explicit name, a folder of a run that never
    /// wrote a checkpoint (killed before its first epoch ended) is taken over and started again; one holding a
    /// checkpoint is refused with the way to resume it. Without a name, a timestamp is used, with `-2`, `-3`, …
    /// appended when runs start in the same second.
    pub fn create(runs_dir: &Path, name: Option<&str>, log: &mut dyn FnMut(&str)) -> Result<Self> {
        std::fs::create_dir_all(runs_dir).map_err(|e| Error::io(runs_dir, e))?;
        let Some(name) = name else {
            let stamp = timestamp();
            for k in 1..1000 {
                let candidate = if k == 1 { stamp.clone() } else { format!("{stamp}-{k}") };
                let dir = runs_dir.join(candidate);
                // create_dir is the atomic step: of two processes only one creates a given folder.
                match std::fs::create_dir(&dir) {
                    Ok(()) => return Self::lock(dir, true),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(Error::io(&dir, e)),
                }
            }
            return Err(Error::Other(format!(
                "{}: no free run name for {stamp}; pass --name",
                runs_dir.display()
            )));
        };
        validate_name(name)?;
        let dir = runs_dir.join(name);
        let fresh = match std::fs::create_dir(&dir) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let folder = Self::lock(dir, fresh)?;
        if !fresh {
            if has_checkpoint(&folder.dir) {
                return Err(Error::invalid(format!(
                    "{} already holds a run; continue it with --resume {}, or choose another --name",
                    folder.dir.display(),
                    folder.dir.display()
                )));
            }
            if folder.paths().config().exists() {
                log(&format!(
                    "{}: its run stopped before the first epoch ended (no last.safetensors); starting it again",
                    folder.dir.display()
                ));
            }
        }
        Ok(folder)
    }

    /// Locks the folder of an existing run (for `--resume`). A folder that holds no run (no `config.json`) is
    /// refused before anything in it is touched: `--resume` never removes a folder or another program's files.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::invalid(format!(
                "--resume {}: no such run folder",
                dir.display()
            )));
        }
        if !RunPaths::new(dir).config().exists() {
            let name = dir
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned());
            let only_lock = std::fs::read_dir(dir)
                .map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE))
                .unwrap_or(false);
            return Err(Error::invalid(if only_lock {
                format!(
                    "--resume {}: nothing to resume (its run was stopped before it wrote config.json); start it \
                     again with the same --name {name}",
                    dir.display()
                )
            } else {
                format!("--resume {}: not a run folder (no config.json)", dir.display())
            }));
        }
        Self::lock(dir.to_path_buf(), false)
    }

    /// The paths of the folder's files.
    pub fn paths(&self) -> RunPaths {
        RunPaths::new(&self.dir)
    }

    fn lock(dir: PathBuf, created: bool) -> Result<Self> {
        let lock = RunLock::acquire(&dir, "choose another --name")?;
        remove_leftovers(&dir);
        Ok(RunFolder {
            dir,
            created,
            _lock: lock,
        })
    }
}

impl Drop for RunFolder {
    /// A folder this process created but never wrote into (the run failed before its config was written, e.g.
    /// the weights could not be loaded) is removed, so failed starts leave no empty timestamp folders behind.
    /// A folder it did not create is left, whatever it holds.
    fn drop(&mut self) {
        if !self.created {
            return;
        }
        let only_lock = std::fs::read_dir(&self.dir)
            .map(|entries| entries.flatten().all(|e| e.file_name() == LOCK_FILE))
            .unwrap_or(false);
        if only_lock {
            let _ = std::fs::remove_file(self.paths().lock());
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}

/// Removes what an interrupted process may have left: temporary files of atomic writes (`*.tmp`) and spilled
/// feature caches (`feature-cache-*.f32`). Only called while holding the lock, so no live process owns them.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if RunPaths::is_leftover(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `YYYYMMDD-HHMMSS` in UTC.
pub fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0) as i64;
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

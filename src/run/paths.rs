//! The files of a run folder, named in one place: every reader and writer asks [`RunPaths`] for a path (as
//! burn-train's `FileCheckpointer::path_for_epoch` does for its checkpoints), so no file name of a run folder is
//! spelled anywhere else.

use std::path::{Path, PathBuf};

/// The lock file that says which process owns the folder.
pub const LOCK_FILE: &str = ".lock";

/// The paths of one run folder's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunPaths {
    dir: PathBuf,
}

impl RunPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        RunPaths { dir: dir.into() }
    }

    /// The folder itself.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the run was started with (`TrainConfig`).
    pub fn config(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// The checkpoint of the last finished epoch (or batch, after an interrupt), with the optimizer and train state.
    pub fn last(&self) -> PathBuf {
        self.dir.join("last.safetensors")
    }

    /// The checkpoint of the best epoch by the monitored metric.
    pub fn best(&self) -> PathBuf {
        self.dir.join("best.safetensors")
    }

    /// One row per epoch, for spreadsheets and pandas.
    pub fn history_csv(&self) -> PathBuf {
        self.dir.join("history.csv")
    }

    /// The same rows, read back by `--resume` and the report.
    pub fn history_json(&self) -> PathBuf {
        self.dir.join("history.json")
    }

    /// The loss and accuracy curves.
    pub fn curves(&self) -> PathBuf {
        self.dir.join("curves.png")
    }

    /// The run's summary for people.
    pub fn summary(&self) -> PathBuf {
        self.dir.join("summary.md")
    }

    /// The images that could not be read, with the reason.
    pub fn bad_files(&self) -> PathBuf {
        self.dir.join("bad_files.txt")
    }

    /// The owner's lock file.
    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// The spill file of a feature cache too large for memory (`label`: train, val), one per process.
    pub fn feature_cache(&self, label: &str) -> PathBuf {
        self.dir.join(format!(
            "{FEATURE_CACHE_PREFIX}{label}-{}{FEATURE_CACHE_SUFFIX}",
            std::process::id()
        ))
    }

    /// True for a file name an interrupted process may have left: a temporary file of an atomic write, or a
    /// feature cache's spill file.
    pub fn is_leftover(name: &str) -> bool {
        (name.ends_with(".tmp") && !name.starts_with(".lock."))
            || (name.starts_with(FEATURE_CACHE_PREFIX) && name.ends_with(FEATURE_CACHE_SUFFIX))
    }
}

const FEATURE_CACHE_PREFIX: &str = "feature-cache-";
const FEATURE_CACHE_SUFFIX: &str = ".f32";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_one_name_and_leftovers_are_recognised() {
        let p = RunPaths::new("runs/x");
        let names: Vec<PathBuf> = vec![
            p.config(),
            p.last(),
            p.best(),
            p.history_csv(),
            p.history_json(),
            p.curves(),
            p.summary(),
            p.bad_files(),
            p.lock(),
        ];
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert!(names.iter().all(|n| n.parent() == Some(Path::new("runs/x"))));
        let spill = p.feature_cache("train");
        assert!(RunPaths::is_leftover(&spill.file_name().unwrap().to_string_lossy()));
        assert!(RunPaths::is_leftover(".history.csv.123.tmp"));
        assert!(!RunPaths::is_leftover(".lock.123.tmp"));
        assert!(!RunPaths::is_leftover("best.safetensors"));
    }
}

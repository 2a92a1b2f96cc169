//! The Hugging Face cache as Python's huggingface_hub lays it out, so that both share it:
//! `<cache>/<kind>s--org--name/` holds `refs/<revision>` (a commit hash), `blobs/<etag>` (the files, named by
//! their sha256 for LFS files) and `snapshots/<commit>/<path>` (relative symlinks into `blobs`); a download in
//! progress is `blobs/<etag>.incomplete`, and `<cache>/.locks/<kind>s--org--name/<etag>.lock` keeps two processes
//! from writing it at once.

use std::path::{Path, PathBuf};

use super::names::{check_commit, check_etag, check_repo_path, check_revision, is_commit, RepoKind};
use crate::error::{Error, Result};

/// One repository's folder in the cache.
pub struct RepoCache {
    root: PathBuf,
    locks: PathBuf,
}

impl RepoCache {
    /// The folder of `repo` in the cache at `cache_dir`.
    pub fn new(cache_dir: &Path, kind: RepoKind, repo: &str) -> RepoCache {
        let folder = format!("{}--{}", kind.folder_prefix(), repo.replace('/', "--"));
        RepoCache {
            root: cache_dir.join(&folder),
            locks: cache_dir.join(".locks").join(folder),
        }
    }

    /// The commit `revision` names: `refs/<revision>`, or the revision itself when it is a commit hash. A
    /// revision that is not a plain relative name, or a ref file that does not hold a commit, names none.
    pub fn commit_of(&self, revision: &str) -> Option<String> {
        check_revision(revision).ok()?;
        std::fs::read_to_string(self.root.join("refs").join(revision))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| is_commit(s))
            .or_else(|| is_commit(revision).then(|| revision.to_string()))
    }

    /// `snapshots/<commit>/<file>`.
    pub fn snapshot_file(&self, commit: &str, file: &str) -> PathBuf {
        self.root.join("snapshots").join(commit).join(file)
    }

    /// The file of `revision`, when the cache has it (no network).
    pub fn lookup(&self, revision: &str, file: &str) -> Option<(PathBuf, String)> {
        check_repo_path(file).ok()?;
        let commit = self.commit_of(revision)?;
        let p = self.snapshot_file(&commit, file);
        p.exists().then_some((p, commit))
    }

    /// `blobs/<etag>`.
    pub fn blob(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(etag)
    }

    /// `blobs/<etag>.incomplete`, where a download grows (and is resumed from).
    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.root.join("blobs").join(format!("{etag}.incomplete"))
    }

    /// Records that `revision` is at `commit` (nothing to record when the revision is the commit). Both are
    /// checked first: neither may steer the write out of `refs/`.
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        check_revision(revision)
            .and_then(|()| check_commit(commit))
            .map_err(refused)?;
        if revision == commit {
            return Ok(());
        }
        let path = self.root.join("refs").join(revision);
        self.check_inside(&path)?;
        crate::io::atomic_write(&path, commit.as_bytes())
    }

    /// Makes `snapshots/<commit>/<file>` point at `blobs/<etag>` (a relative symlink, replaced atomically; a copy
    /// where symlinks are not available) and returns it. The three names are checked first.
    pub fn link(&self, commit: &str, file: &str, etag: &str) -> Result<PathBuf> {
        check_commit(commit)
            .and_then(|()| check_repo_path(file))
            .and_then(|()| check_etag(etag))
            .map_err(refused)?;
        let link = self.snapshot_file(commit, file);
        self.check_inside(&link)?;
        let parent = link.parent().expect("a snapshot file has a folder");
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        // From snapshots/<commit>/<dirs…>/ back up to the repository folder, then into blobs.
        let depth = file.split('/').count() + 1;
        let target = PathBuf::from("../".repeat(depth)).join("blobs").join(etag);
        let tmp = parent.join(format!(
            ".{}.{}.tmp",
            link.file_name().unwrap_or_default().to_string_lossy(),
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        #[cfg(unix)]
        let made = std::os::unix::fs::symlink(&target, &tmp);
        #[cfg(not(unix))]
        let made = std::fs::copy(self.blob(etag), &tmp).map(|_| ());
        made.map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| Error::io(&link, e))?;
        Ok(link)
    }

    /// Refuses a path that is not below the repository's folder once its parts are read one by one (a last line of
    /// defence behind the checks of each name).
    fn check_inside(&self, path: &Path) -> Result<()> {
        let rel = path.strip_prefix(&self.root).ok();
        let plain = rel.is_some_and(|r| r.components().all(|c| matches!(c, std::path::Component::Normal(_))));
        if plain {
            Ok(())
        } else {
            Err(refused(format!(
                "{} is not inside the cache folder {}",
                path.display(),
                self.root.display()
            )))
        }
    }

    /// The files of the snapshot of `commit`, as repository paths, sorted.
    pub fn files(&self, commit: &str) -> Vec<String> {
        let snap = self.root.join("snapshots").join(commit);
        let mut files = Vec::new();
        let mut stack = vec![snap.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if let Ok(rel) = p.strip_prefix(&snap) {
                    files.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        files.sort();
        files
    }

    /// Takes the lock of blob `etag`, waiting (with a message unless `quiet`) while another process holds it.
    pub fn lock(&self, etag: &str, quiet: bool) -> Result<BlobLock> {
        std::fs::create_dir_all(&self.locks).map_err(|e| Error::io(&self.locks, e))?;
        let path = self.locks.join(format!("{etag}.lock"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        BlobLock::take(file, &path, quiet)
    }
}

/// A name the cache will not write under: the hub (or whoever answered for it) gave it.
fn refused(why: String) -> Error {
    Error::Other(format!(
        "refused to write to the Hugging Face cache: {why}; nothing was written (the hub's answer is not usable: \
         check HF_ENDPOINT and any proxy)"
    ))
}

/// A held lock on one blob: an advisory `flock`, released when dropped or when the process dies.
pub struct BlobLock {
    _file: std::fs::File,
}

impl BlobLock {
    #[cfg(unix)]
    fn take(file: std::fs::File, path: &Path, quiet: bool) -> Result<BlobLock> {
        use std::os::unix::io::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the whole call.
        if unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            if !quiet {
                eprintln!(
                    "another process is downloading the same file (lock {}); waiting for it",
                    path.display()
                );
            }
            // SAFETY: as above; this call blocks until the other process releases the lock or exits.
            if unsafe { libc::flock(fd, libc::LOCK_EX) } != 0 {
                return Err(Error::io(path, std::io::Error::last_os_error()));
            }
        }
        Ok(BlobLock { _file: file })
    }

    #[cfg(not(unix))]
    fn take(file: std::fs::File, _path: &Path, _quiet: bool) -> Result<BlobLock> {
        Ok(BlobLock { _file: file })
    }
}

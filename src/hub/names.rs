//! Names that become paths in the cache: revisions (`refs/<revision>`), commits (`snapshots/<commit>/`), ETags
//! (`blobs/<etag>`) and repository file paths (`snapshots/<commit>/<path>`). Some come from the user
//! (`org/name@revision`), most from the hub's answers (`X-Repo-Commit`, `ETag`, a listing's `rfilename`), and a
//! hostile or broken server must not steer a write outside the cache with `..`, a leading `/` or a control
//! character. Each is checked before any path is built from it, as huggingface_hub checks revisions and pointer
//! paths; [`super::cache::RepoCache`] checks again where it writes.

/// A commit hash: 40 hex digits.
pub fn check_commit(commit: &str) -> Result<(), String> {
    if is_commit(commit) {
        Ok(())
    } else {
        Err(format!("'{}' is not a commit hash (40 hex digits)", shown(commit)))
    }
}

/// A revision (a branch, a tag, `refs/pr/1`, or a commit): a relative path of plain components.
pub fn check_revision(revision: &str) -> Result<(), String> {
    check_relative(revision).map_err(|why| format!("the revision '{}' {why}", shown(revision)))
}

/// A file path inside a repository, as a listing or the user names it.
pub fn check_repo_path(file: &str) -> Result<(), String> {
    check_relative(file).map_err(|why| format!("the file name '{}' {why}", shown(file)))
}

/// An ETag names one blob file: letters, digits, `-` and `_` only (the hub's are hex).
pub fn check_etag(etag: &str) -> Result<(), String> {
    let ok = !etag.is_empty()
        && etag.len() <= 128
        && etag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("the ETag '{}' is not a usable blob name", shown(etag)))
    }
}

/// `s` split on `/` into components that are neither empty, `.` nor `..`, with no `\`, `:` or control
/// character, and at most 1,000 bytes in all.
fn check_relative(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > 1000 {
        return Err("is longer than 1,000 characters");
    }
    if s.starts_with('/') {
        return Err("starts with '/' (it must be relative)");
    }
    if s.chars().any(|c| c.is_control() || c == '\\' || c == ':') {
        return Err("holds a control character, '\\' or ':'");
    }
    if s.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
        return Err("has an empty, '.' or '..' part");
    }
    Ok(())
}

/// `s` as it may be shown in a message: control characters escaped, at most 100 characters.
fn shown(s: &str) -> String {
    let escaped: String = s.chars().flat_map(char::escape_debug).collect();
    match escaped.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &escaped[..i]),
        None => escaped,
    }
}

/// A 40-digit hex commit hash.
pub fn is_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A 64-digit hex sha256 (what the hub gives as the ETag of an LFS file).
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Which kind of hub repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepoKind {
    Model,
    Dataset,
}

impl RepoKind {
    pub(super) fn folder_prefix(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_and_paths_that_climb_out_or_hide_control_characters_are_refused() {
        for ok in ["main", "v1.0", "refs/pr/1", "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"] {
            assert_eq!(check_revision(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "..",
            "../x",
            "a/../../b",
            "/etc",
            "a//b",
            "./a",
            "a\nb",
            "a\\b",
            "c:x",
            "a/",
        ] {
            assert!(check_revision(bad).is_err(), "{bad:?}");
            assert!(check_repo_path(bad).is_err(), "{bad:?}");
        }
        assert_eq!(check_repo_path("data/train-00000-of-00001.parquet"), Ok(()));
        assert!(check_repo_path(&"a".repeat(1001)).is_err());
    }

    #[test]
    fn commits_are_forty_hex_digits_and_etags_plain_names() {
        assert_eq!(check_commit("c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"), Ok(()));
        for bad in ["../../../../../../outside", "c0ffee", "main", ""] {
            assert!(check_commit(bad).is_err(), "{bad}");
        }
        assert_eq!(check_etag("0123abcdef"), Ok(()));
        for bad in ["", "..", "a/b", "a.b", "a\u{0}b", &"a".repeat(129)] {
            assert!(check_etag(bad).is_err(), "{bad:?}");
        }
        let long = check_commit(&"x\n".repeat(200)).unwrap_err();
        assert!(
            long.contains("\\n") && !long.contains('\n') && long.len() < 300,
            "{long}"
        );
    }
}

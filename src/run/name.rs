//! Run names: one path component under the runs folder, never a way out of it.

use crate::error::{Error, Result};

/// Longest run name accepted, in bytes (file systems allow 255 per component; leave room for suffixes).
pub const MAX_NAME_BYTES: usize = 200;

/// Checks that `name` is a plain folder name: not empty, not `.` or `..`, no path separator, no control
/// character (a newline in a folder name breaks every log and listing that shows it), no leading
/// `-` (it would read as a flag in later commands), at most [`MAX_NAME_BYTES`] bytes.
pub fn validate_name(name: &str) -> Result<()> {
    let why = if name.trim().is_empty() {
        Some("is empty")
    } else if name == "." || name == ".." {
        Some("names the runs folder or its parent")
    } else if name.contains('/') || name.contains('\\') {
        Some("contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("contains a line break or another control character")
    } else if name.starts_with('-') {
        Some("starts with '-'")
    } else if name.len() > MAX_NAME_BYTES {
        Some("is too long")
    } else {
        None
    };
    match why {
        Some(why) => Err(Error::invalid(format!(
            "--name {name:?} {why}: a run name is one folder name under --runs-dir (letters, digits, '-', '_', \
             '.', at most {MAX_NAME_BYTES} bytes); use --runs-dir to choose where run folders go"
        ))),
        None => Ok(()),
    }
}

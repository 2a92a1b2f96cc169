//! Progress bars: one style everywhere, silenced by `--quiet` (and by indicatif when stderr is not a terminal).

use indicatif::{ProgressBar, ProgressStyle};

/// `n` and the word, plural when `n` is not 1: "1 epoch", "3 epochs".
pub fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A bar over `len` items with a message, hidden when `quiet`.
pub fn bar(len: u64, msg: &str, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:30}] {pos}/{len} {per_sec} ETA {eta} {prefix}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    b.set_message(msg.to_string());
    b
}

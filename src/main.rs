//! The `catdog` binary: parse, run, map errors to exit codes (0 ok, 1 error, 2 usage, 130 interrupted).

mod cli;
mod cmd;

use clap::{CommandFactory, FromArgMatches};

/// An error in the user's flags: printed like any error, exit code 2.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

fn main() {
    // Behave like other Unix tools when the reader of stdout goes away (`catdog predict … | head`).
    #[cfg(unix)]
    // SAFETY: restoring the default SIGPIPE disposition at start-up, before any thread exists; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    catdog::alloc::keep_freed_memory();
    let matches = cli::Cli::command().get_matches();
    let cli = cli::Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let explicit = cli::explicit_flags(&matches);
    if let Err(e) = catdog::progress::init(cli.progress) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    if let Some(n) = cli.threads {
        if let Err(e) = catdog::limits::check_threads(n) {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        // Ignore the error of a pool that was already built: there is none yet at this point.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    // candle asks for its thread count on every CPU op and, when RAYON_NUM_THREADS is unset, re-reads
    // /proc/cpuinfo each time (candle-core 0.11.1, utils::get_num_threads): 69,000 opens in one `lab l2`, more
    // system time than user time. Set once here, the variable makes that a lookup and gives candle the size of the
    // pool catdog runs on. The pool's threads are idle and read no environment while it is set.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", rayon::current_num_threads().to_string());
    }
    // candle's own pool for its element-wise ops (threads "candle-bp-N", candle-core 0.11.1) spins 25,000 times
    // after each op before it parks. On 2 cores that spinner took a core from catdog's kernels: 9.5% of the
    // head step's samples. With 1,000 (read once, when the pool starts) it still catches a run of small ops:
    // head step 10,252-10,941 -> 11,054-11,526 images/s, cached block5 step 280 -> 288, bench mlp unchanged
    // (AMD EPYC Zen 5, 2 threads, bf16, alternating runs).
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
    match cmd::run(cli, &explicit) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(catdog::Error::Interrupted) = e.downcast_ref::<catdog::Error>() {
                eprintln!("interrupted");
                std::process::exit(130);
            }
            eprintln!("error: {e:#}");
            let usage = e.downcast_ref::<UsageError>().is_some()
                || matches!(
                    e.downcast_ref::<catdog::Error>(),
                    Some(catdog::Error::InvalidArgument(_))
                );
            std::process::exit(if usage { 2 } else { 1 });
        }
    }
}

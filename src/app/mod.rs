//! The command-line layer: flags (`cli`, clap derive), one function per subcommand that turns them into typed
//! configurations and runs the library (`cmd`), and the process around them — start-up settings, exit codes,
//! error classes. The `catdog` binary is `app::main`; the Python extension (`python/`) runs the same code in
//! process through [`run_args`] and [`api::call`], so a command behaves the same from a shell and from a notebook.
//! The library below (data, model, train, …) does not use this module.

pub mod api;
pub mod cli;
mod cmd;
mod values;

use std::ffi::OsString;

use clap::{CommandFactory, FromArgMatches};

/// An error in the user's flags: printed like any error, exit code 2 (`ValueError` in Python).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// What kind of failure an error is: it sets the exit code (and the Python exception).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The user's flags or inputs (exit 2, `ValueError`).
    Usage,
    /// Stopped by Ctrl-C / SIGTERM / KeyboardInterrupt (exit 130).
    Interrupted,
    /// A file or the network (exit 1, `OSError`).
    Io,
    /// Anything else (exit 1, `RuntimeError`).
    Other,
}

impl ExitKind {
    pub fn of(e: &anyhow::Error) -> ExitKind {
        if matches!(e.downcast_ref::<crate::Error>(), Some(crate::Error::Interrupted)) {
            return ExitKind::Interrupted;
        }
        let library = e.downcast_ref::<crate::Error>();
        if e.downcast_ref::<UsageError>().is_some() || matches!(library, Some(crate::Error::InvalidArgument(_))) {
            return ExitKind::Usage;
        }
        let io = matches!(
            library,
            Some(crate::Error::Io { .. } | crate::Error::HubUnavailable(_) | crate::Error::Hub { .. })
        ) || e.downcast_ref::<std::io::Error>().is_some();
        if io {
            ExitKind::Io
        } else {
            ExitKind::Other
        }
    }

    /// The process exit code.
    pub fn exit_code(self) -> i32 {
        match self {
            ExitKind::Usage => 2,
            ExitKind::Interrupted => 130,
            ExitKind::Io | ExitKind::Other => 1,
        }
    }
}

/// The `catdog` binary.
pub fn main() -> ! {
    // Behave like other Unix tools when the reader of stdout goes away (`catdog predict … | head`).
    #[cfg(unix)]
    // SAFETY: restoring the default SIGPIPE disposition at start-up, before any thread exists; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    crate::alloc::keep_freed_memory();
    std::process::exit(run_args(std::env::args_os()))
}

/// Parses `args` (the program name first) and runs the command, printing as the binary does; returns the exit
/// code. Help, `--version` and flag errors are printed and give their code instead of ending the process.
pub fn run_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    let (cli, explicit) = match parse(args) {
        Ok(parsed) => parsed,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let result = setup(&cli).and_then(|()| cmd::run(cli, &explicit));
    match result {
        Ok(code) => code,
        Err(e) => {
            let failure = ExitKind::of(&e);
            if failure == ExitKind::Interrupted {
                eprintln!("interrupted");
            } else {
                eprintln!("error: {e:#}");
            }
            failure.exit_code()
        }
    }
}

/// The parsed command and the flags given explicitly (as clap names them).
pub(in crate::app) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<(cli::Cli, Vec<String>), clap::Error> {
    let matches = cli::Cli::command().try_get_matches_from(args)?;
    let cli = cli::Cli::from_arg_matches(&matches)?;
    let explicit = cli::explicit_flags(&matches);
    Ok((cli, explicit))
}

/// Start-up settings every command shares: progress, threads, candle's thread count and spinning.
fn setup(cli: &cli::Cli) -> anyhow::Result<()> {
    crate::progress::init(cli.progress).map_err(|e| UsageError(e.to_string()))?;
    crate::kernels::check_env().map_err(|e| UsageError(e.to_string()))?;
    if let Some(n) = cli.threads {
        crate::limits::check_threads(n).map_err(|e| UsageError(e.to_string()))?;
        // A pool built earlier in this process (a second call from Python) stays as it is.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    // candle asks for its thread count on every CPU op and, when RAYON_NUM_THREADS is unset, re-reads
    // /proc/cpuinfo each time: set once here, the variable makes that a lookup and gives candle the size of the
    // pool catdog runs on. The pool's threads are idle and read no environment while it is set.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", rayon::current_num_threads().to_string());
    }
    // candle's own pool for its element-wise ops spins 25,000 times after each op before it parks, which on a
    // small machine takes a core from catdog's kernels; 1,000 still catches a run of small ops (measurements in
    // docs/performance.md).
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "1000");
    }
    Ok(())
}

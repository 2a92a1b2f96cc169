//! The `catdog` binary: parse, run, map errors to exit codes (0 ok, 1 error, 2 usage, 130 interrupted).

mod cli;
mod cmd;

use clap::Parser;

fn main() {
    // Behave like other Unix tools when the reader of stdout goes away (`catdog predict … | head`).
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    catdog::alloc::keep_freed_memory();
    let cli = cli::Cli::parse();
    if let Some(n) = cli.threads {
        if n == 0 {
            eprintln!("error: --threads must be at least 1");
            std::process::exit(2);
        }
        // Ignore the error of a pool that was already built: there is none yet at this point.
        let _ = rayon::ThreadPoolBuilder::new().num_threads(n).build_global();
    }
    match cmd::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            if let Some(catdog::Error::Interrupted) = e.downcast_ref::<catdog::Error>() {
                eprintln!("interrupted");
                std::process::exit(130);
            }
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

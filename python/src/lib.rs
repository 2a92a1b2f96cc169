//! `catdog._native`: the command line and the result-returning calls of catdog-rs for the Python package
//! (`python/catdog/`). A call runs on a worker thread with the GIL released while the calling thread watches for
//! KeyboardInterrupt: on one, the run stops as Ctrl-C stops it (the batch finishes, `last.safetensors` is written,
//! the lock is released) and the KeyboardInterrupt is raised. Errors become `ValueError` (what the command line
//! calls a usage error), `OSError` (files, the network), `KeyboardInterrupt` or `RuntimeError`, with catdog's
//! message; a panic becomes a `RuntimeError`, never a crash of the interpreter.

use std::ffi::OsString;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use catdog::app::{api, run_args, ExitKind};
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// How often the calling thread looks for KeyboardInterrupt while a call runs.
const SIGNAL_POLL: Duration = Duration::from_millis(100);

/// The `catdog` command (the wheel's console script): runs `argv` (program name first) as the binary does,
/// printing to stdout and stderr, and returns the exit code. Ctrl-C is catdog's own here, as in the binary.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<String>) -> i32 {
    catdog::signals::set_embedded(false);
    py.detach(|| run_args(argv.into_iter().map(OsString::from)))
}

/// Runs `argv` (program name first) in process and returns its result as JSON text (see `catdog::app::api`).
#[pyfunction]
fn call(py: Python<'_>, argv: Vec<String>) -> PyResult<String> {
    catdog::signals::set_embedded(true);
    let args: Vec<OsString> = argv.into_iter().map(OsString::from).collect();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| api::call(args)));
        let _ = tx.send(result);
    });
    let mut interrupt: Option<PyErr> = None;
    let mut rx = rx;
    let outcome = loop {
        // The receiver goes to the GIL-free side and comes back (it may be sent, not shared).
        let (received, back) = py.detach(move || (rx.recv_timeout(SIGNAL_POLL), rx));
        rx = back;
        match received {
            Ok(outcome) => break Some(outcome),
            Err(RecvTimeoutError::Disconnected) => break None,
            Err(RecvTimeoutError::Timeout) => {
                if let (Err(e), None) = (py.check_signals(), &interrupt) {
                    catdog::signals::request_stop();
                    interrupt = Some(e);
                }
            }
        }
    };
    let _ = worker.join();
    if let Some(e) = interrupt {
        return Err(e);
    }
    match outcome {
        Some(Ok(Ok(value))) => Ok(value.to_string()),
        Some(Ok(Err(e))) => Err(exception(&e)),
        Some(Err(panic)) => Err(PyRuntimeError::new_err(format!(
            "internal error in catdog (please report it with `catdog info`): {}",
            panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic")
        ))),
        None => Err(PyRuntimeError::new_err(
            "internal error in catdog: the worker thread ended without a result",
        )),
    }
}

/// The Python exception for a catdog error, with its message.
fn exception(e: &anyhow::Error) -> PyErr {
    let message = format!("{e:#}");
    match ExitKind::of(e) {
        ExitKind::Usage => PyValueError::new_err(message),
        ExitKind::Interrupted => PyKeyboardInterrupt::new_err(message),
        ExitKind::Io => PyOSError::new_err(message),
        ExitKind::Other => PyRuntimeError::new_err(message),
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(call, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

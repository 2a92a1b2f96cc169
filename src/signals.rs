//! Ctrl-C (SIGINT) and SIGTERM (schedulers, `docker stop`, `kill`) ask a run to stop cleanly: finish the batch,
//! write `last.safetensors`, exit with 128 + the signal (130, 143). A second signal exits at once.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

const INT_MSG: &[u8] = b"\nCtrl-C: finishing the batch and saving last.safetensors (press again to quit at once)\n";
const TERM_MSG: &[u8] = b"\nSIGTERM: finishing the batch and saving last.safetensors (send again to quit at once)\n";

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: atomics, write(2) and _exit(2).
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe and ends the process without running any Rust code.
        unsafe { libc::_exit(128 + sig) };
    }
    SIGNAL.store(sig, Ordering::SeqCst);
    let msg = if sig == libc::SIGTERM { TERM_MSG } else { INT_MSG };
    // SAFETY: write(2) is async-signal-safe; the buffer is a static byte string of the given length.
    unsafe { libc::write(2, msg.as_ptr().cast(), msg.len()) };
}

static EMBEDDED: AtomicBool = AtomicBool::new(false);

/// Runs inside another program (the Python extension): [`install`] then leaves the process's signal handlers
/// alone (they are Python's) and the host stops a run with [`request_stop`].
pub fn set_embedded(embedded: bool) {
    EMBEDDED.store(embedded, Ordering::SeqCst);
}

/// Asks the run in progress to stop as Ctrl-C does (finish the batch, write `last.safetensors`).
pub fn request_stop() {
    STOP.store(true, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT and SIGTERM and returns the flag they set; embedded, only clears the flag
/// (an earlier run's stop must not stop the next one).
pub fn install() -> &'static AtomicBool {
    if EMBEDDED.load(Ordering::SeqCst) {
        STOP.store(false, Ordering::SeqCst);
        SIGNAL.store(0, Ordering::SeqCst);
        return &STOP;
    }
    #[cfg(unix)]
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches atomics and async-signal-safe calls; a zeroed sigaction with a handler
        // address and an empty mask is a valid argument.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
            libc::sigemptyset(&mut action.sa_mask);
            action.sa_flags = libc::SA_RESTART;
            libc::sigaction(sig, &action, std::ptr::null_mut());
        }
    }
    &STOP
}

/// The exit code for a run stopped by a signal: 128 + its number (130 for Ctrl-C, 143 for SIGTERM).
pub fn exit_code() -> i32 {
    match SIGNAL.load(Ordering::SeqCst) {
        0 => 130,
        sig => 128 + sig,
    }
}

/// The name of the signal that stopped the run, for messages.
pub fn name() -> &'static str {
    if SIGNAL.load(Ordering::SeqCst) == libc::SIGTERM {
        "SIGTERM"
    } else {
        "Ctrl-C"
    }
}

//! Progress for long work, wherever it runs: an indicatif bar on a terminal; plain lines at a bounded rate when
//! stderr is not one (Jupyter, Colab and Kaggle notebooks, `nohup`, CI), where indicatif would draw nothing; nothing
//! with `--quiet`.
//!
//! A line is printed when the work has moved on by 10% and 5 s have passed since the last line, or after 30 s
//! whatever the progress, and once at the end of work that printed anything or took 5 s or more: a notebook user
//! sees the 20 minutes of a first run's caching move, and a short step stays silent. `CATDOG_PROGRESS_SECS`
//! changes the 5 s (the 30 s follow as 6×; 0 prints every 10%).

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{Error, Result};

/// How progress shows (`--progress`, else `CATDOG_PROGRESS`, else `auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar on a terminal; plain lines in a notebook (Jupyter, Colab, Kaggle, a dumb terminal) or where stderr
    /// is not a terminal.
    Auto,
    Bar,
    Lines,
    Off,
}

impl std::str::FromStr for ProgressMode {
    type Err = Error;

    fn from_str(s: &str) -> Result<ProgressMode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(ProgressMode::Auto),
            "bar" => Ok(ProgressMode::Bar),
            "lines" => Ok(ProgressMode::Lines),
            "off" => Ok(ProgressMode::Off),
            other => Err(Error::invalid(format!(
                "progress mode '{}': use auto, bar, lines or off",
                other.escape_debug()
            ))),
        }
    }
}

static MODE: OnceLock<ProgressMode> = OnceLock::new();

/// Sets how progress shows for the rest of the process: `flag` (from `--progress`) when given, else
/// `CATDOG_PROGRESS`, else auto. A bad `CATDOG_PROGRESS` or `CATDOG_PROGRESS_SECS` is refused here, at start-up.
pub fn init(flag: Option<ProgressMode>) -> Result<()> {
    let mode = match (flag, std::env::var("CATDOG_PROGRESS")) {
        (Some(m), _) => m,
        (None, Ok(v)) if !v.trim().is_empty() => v
            .parse()
            .map_err(|e: Error| Error::invalid(format!("CATDOG_PROGRESS={}: {e}", v.escape_debug())))?,
        _ => ProgressMode::Auto,
    };
    gap_from_env()?;
    let _ = MODE.set(mode);
    Ok(())
}

fn mode() -> ProgressMode {
    *MODE.get().unwrap_or(&ProgressMode::Auto)
}

/// True when this process runs in a notebook's cell (`!catdog` in Jupyter, Colab or Kaggle runs under a
/// pseudo-terminal whose every bar redraw becomes a line of the saved notebook) or on a dumb terminal.
pub fn in_notebook() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    set("JPY_PARENT_PID")
        || set("COLAB_RELEASE_TAG")
        || set("KAGGLE_KERNEL_RUN_TYPE")
        || std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// `CATDOG_PROGRESS_SECS` (seconds, 0 to 3600), or 5 s when unset.
fn gap_from_env() -> Result<Duration> {
    let Ok(v) = std::env::var("CATDOG_PROGRESS_SECS") else {
        return Ok(Duration::from_secs(5));
    };
    match v.trim().parse::<f64>() {
        Ok(secs) if (0.0..=3600.0).contains(&secs) => Ok(Duration::from_secs_f64(secs)),
        _ => Err(Error::invalid(format!(
            "CATDOG_PROGRESS_SECS={}: give seconds from 0 to 3600, or unset it",
            v.escape_debug()
        ))),
    }
}

/// Shortest time between two lines for 10% of progress (`CATDOG_PROGRESS_SECS`, default 5 s).
fn min_gap() -> Duration {
    static GAP: OnceLock<Duration> = OnceLock::new();
    *GAP.get_or_init(|| gap_from_env().unwrap_or(Duration::from_secs(5)))
}

/// Longest time without a line while work goes on: 6 × [`min_gap`], 30 s by default (never, with a gap of 0,
/// which prints at each 10%).
fn max_gap() -> Duration {
    if min_gap().is_zero() {
        Duration::MAX
    } else {
        min_gap() * 6
    }
}

/// `n` and the word, plural when `n` is not 1: "1 epoch", "3 epochs".
pub fn count(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// A progress display over `len` items (see the module comment for where it shows and how).
#[derive(Clone)]
pub struct Progress {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    Hidden,
    Bar(ProgressBar),
    Lines(Arc<Mutex<Lines>>),
}

/// The state of plain-line progress.
struct Lines {
    msg: String,
    /// What is counted, plural ("images").
    unit: String,
    prefix: String,
    len: u64,
    pos: u64,
    bytes: bool,
    start: Instant,
    last_line: Instant,
    last_pos: u64,
    printed: bool,
    done: bool,
}

/// A bar over `len` items counted in `unit`s (plural: "images", "batches"), with a message; silent when `quiet`.
pub fn bar(len: u64, msg: &str, unit: &str, quiet: bool) -> Progress {
    Progress::new(len, msg, unit, quiet, false)
}

/// Work of unknown length (`unit`s counted as they come): a spinner on a terminal, a line every 30 s otherwise.
pub fn spinner(msg: &str, unit: &str, quiet: bool) -> Progress {
    let p = Progress::new(0, msg, unit, quiet, false);
    if let Kind::Bar(b) = &p.kind {
        b.set_style(
            ProgressStyle::with_template("{msg:>12} {spinner} {pos} {rate} {elapsed}")
                .expect("valid template")
                .with_key("rate", rate_key(unit)),
        );
    }
    p
}

/// A bar over `len` bytes (downloads), shown with sizes.
pub fn bytes(len: u64, msg: &str, quiet: bool) -> Progress {
    Progress::new(len, msg, "bytes", quiet, true)
}

/// The bar's `{rate}`: "41.3 images/s".
fn rate_key(
    unit: &str,
) -> impl Fn(&indicatif::ProgressState, &mut dyn std::fmt::Write) + Send + Sync + Clone + 'static {
    let unit = unit.to_string();
    move |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
        let _ = write!(w, "{:.1} {unit}/s", state.per_sec());
    }
}

/// Whether progress shows as a bar (`Some(true)`), as lines (`Some(false)`) or not at all.
fn as_bar(quiet: bool) -> Option<bool> {
    match mode() {
        _ if quiet => None,
        ProgressMode::Off => None,
        ProgressMode::Bar => Some(true),
        ProgressMode::Lines => Some(false),
        ProgressMode::Auto => Some(std::io::stderr().is_terminal() && !in_notebook()),
    }
}

impl Progress {
    fn new(len: u64, msg: &str, unit: &str, quiet: bool, bytes: bool) -> Progress {
        let kind = match as_bar(quiet) {
            None => Kind::Hidden,
            Some(true) => Kind::Bar(terminal_bar(len, msg, unit, bytes)),
            Some(false) => {
                let now = Instant::now();
                Kind::Lines(Arc::new(Mutex::new(Lines {
                    msg: msg.to_string(),
                    unit: unit.to_string(),
                    prefix: String::new(),
                    len,
                    pos: 0,
                    bytes,
                    start: now,
                    last_line: now,
                    last_pos: 0,
                    printed: false,
                    done: false,
                })))
            }
        };
        Progress { kind }
    }

    /// A display that shows nothing.
    pub fn hidden() -> Progress {
        Progress { kind: Kind::Hidden }
    }

    pub fn inc(&self, n: u64) {
        self.update(|l| l.pos += n, |b| b.inc(n));
    }

    pub fn set_position(&self, pos: u64) {
        self.update(|l| l.pos = pos, |b| b.set_position(pos));
    }

    pub fn set_length(&self, len: u64) {
        self.update(|l| l.len = len, |b| b.set_length(len));
    }

    pub fn set_message(&self, msg: &str) {
        self.update(|l| l.msg = msg.to_string(), |b| b.set_message(msg.to_string()));
    }

    /// Text after the counts (running loss and accuracy).
    pub fn set_prefix(&self, prefix: String) {
        match &self.kind {
            Kind::Hidden => {}
            Kind::Bar(b) => b.set_prefix(prefix),
            Kind::Lines(l) => lock(l).prefix = prefix,
        }
    }

    /// The work is done: the bar goes away; plain progress prints its last line if it printed any or took long.
    pub fn finish_and_clear(&self) {
        match &self.kind {
            Kind::Hidden => {}
            Kind::Bar(b) => b.finish_and_clear(),
            Kind::Lines(l) => finish_lines(&mut lock(l), "done"),
        }
    }

    /// The work is done and the bar stays on screen (downloads).
    pub fn finish(&self) {
        match &self.kind {
            Kind::Hidden => {}
            Kind::Bar(b) => b.finish(),
            Kind::Lines(l) => finish_lines(&mut lock(l), "done"),
        }
    }

    /// The work stopped before its end (Ctrl-C): the bar stays where it is.
    pub fn abandon(&self) {
        match &self.kind {
            Kind::Hidden => {}
            Kind::Bar(b) => b.abandon(),
            Kind::Lines(l) => finish_lines(&mut lock(l), "stopped"),
        }
    }

    /// Runs `f` (which prints) without the bar drawing over its output.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.kind {
            Kind::Bar(b) => b.suspend(f),
            _ => f(),
        }
    }

    fn update(&self, lines: impl FnOnce(&mut Lines), bar: impl FnOnce(&ProgressBar)) {
        match &self.kind {
            Kind::Hidden => {}
            Kind::Bar(b) => bar(b),
            Kind::Lines(l) => {
                let mut l = lock(l);
                lines(&mut l);
                if let Some(line) = l.due(Instant::now()) {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn lock(l: &Mutex<Lines>) -> std::sync::MutexGuard<'_, Lines> {
    // A panic while holding the lock cannot leave the counters inconsistent in a way that matters for display.
    l.lock().unwrap_or_else(|e| e.into_inner())
}

fn terminal_bar(len: u64, msg: &str, unit: &str, bytes: bool) -> ProgressBar {
    let b = ProgressBar::new(len);
    let template = if bytes {
        "{msg} [{elapsed_precise}] [{wide_bar}] {bytes}/{total_bytes} {bytes_per_sec} ({eta})"
    } else {
        "{msg:>12} [{bar:30}] {pos}/{len} {rate} ETA {eta} {prefix}"
    };
    b.set_style(
        ProgressStyle::with_template(template)
            .expect("valid template")
            .with_key("rate", rate_key(unit))
            .progress_chars("=> "),
    );
    b.set_message(msg.to_string());
    b
}

fn finish_lines(l: &mut Lines, word: &str) {
    if l.done {
        return;
    }
    l.done = true;
    let took = l.start.elapsed();
    // A download always says it ended (its size and time), however quick.
    if l.printed || took >= min_gap() || l.bytes {
        let unit = if l.bytes { String::new() } else { format!(" {}", l.unit) };
        eprintln!("{}: {word}, {}{unit} in {}", l.msg, l.amount(l.pos), seconds(took));
    }
}

impl Lines {
    /// The line to print now, if one is due.
    fn due(&mut self, now: Instant) -> Option<String> {
        if self.done {
            return None;
        }
        let since = now.duration_since(self.last_line);
        // Of unknown length, nothing says how far 10% is: the 30-second rule alone.
        let moved = self.len > 0 && self.pos.saturating_sub(self.last_pos) >= (self.len / 10).max(1);
        if !((moved && since >= min_gap()) || (since >= max_gap() && self.pos > self.last_pos)) {
            return None;
        }
        self.last_line = now;
        self.last_pos = self.pos;
        self.printed = true;
        Some(self.line(now))
    }

    /// "caching: 1200/25000 (4%), 41.3 images/s, ETA 9m 36s — loss 0.4123".
    fn line(&self, now: Instant) -> String {
        let elapsed = now.duration_since(self.start).as_secs_f64().max(1e-9);
        let rate = self.pos as f64 / elapsed;
        let mut s = format!("{}: {}", self.msg, self.amount(self.pos));
        if self.len > 0 {
            s.push_str(&format!("/{} ({}%)", self.amount(self.len), 100 * self.pos / self.len));
        }
        if self.bytes {
            s.push_str(&format!(", {}/s", self.amount_f(rate)));
        } else {
            s.push_str(&format!(", {} {}/s", self.amount_f(rate), self.unit));
        }
        if self.len > self.pos && rate > 0.0 {
            let eta = Duration::from_secs_f64((self.len - self.pos) as f64 / rate);
            s.push_str(&format!(", ETA {}", seconds(eta)));
        }
        if !self.prefix.is_empty() {
            s.push_str(&format!(" — {}", self.prefix));
        }
        s
    }

    fn amount(&self, n: u64) -> String {
        if self.bytes {
            mib(n as f64)
        } else {
            n.to_string()
        }
    }

    fn amount_f(&self, v: f64) -> String {
        if self.bytes {
            mib(v)
        } else {
            format!("{v:.1}")
        }
    }
}

fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// "42 s", "9m 36s", "1h 02m".
fn seconds(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1} s", d.as_secs_f64()),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(len: u64) -> Lines {
        let t0 = Instant::now();
        Lines {
            msg: "caching".into(),
            unit: "images".into(),
            prefix: String::new(),
            len,
            pos: 0,
            bytes: false,
            start: t0,
            last_line: t0,
            last_pos: 0,
            printed: false,
            done: false,
        }
    }

    #[test]
    fn lines_come_every_tenth_after_five_seconds_or_every_thirty_seconds() {
        let mut l = lines(1000);
        let t0 = l.start;
        l.pos = 150;
        assert!(
            l.due(t0 + Duration::from_secs(1)).is_none(),
            "10% moved but only 1 s passed"
        );
        let line = l.due(t0 + Duration::from_secs(6)).expect("10% and 5 s");
        assert!(
            line.starts_with("caching: 150/1000 (15%)") && line.contains("images/s, ETA"),
            "{line}"
        );
        l.pos = 160;
        assert!(l.due(t0 + Duration::from_secs(20)).is_none(), "1% in 14 s");
        assert!(l.due(t0 + Duration::from_secs(37)).is_some(), "30 s without a line");
        // About one line per 10% or per 30 s, however many updates the job makes.
        let count_lines = |ms_per_step: u64| {
            let mut l = lines(10_000);
            (1..=10_000u64)
                .filter(|i| {
                    l.pos = *i;
                    l.due(l.start + Duration::from_millis(i * ms_per_step)).is_some()
                })
                .count()
        };
        let (short, long) = (count_lines(10), count_lines(60));
        assert!((9..=11).contains(&short), "{short} lines for a 100-second job");
        assert!((19..=21).contains(&long), "{long} lines for a 10-minute job");
    }

    #[test]
    fn progress_modes_parse_and_a_bad_one_is_refused() {
        assert_eq!("Lines".parse::<ProgressMode>().unwrap(), ProgressMode::Lines);
        assert_eq!(" off ".parse::<ProgressMode>().unwrap(), ProgressMode::Off);
        let e = "fancy".parse::<ProgressMode>().unwrap_err().to_string();
        assert!(e.contains("auto, bar, lines or off"), "{e}");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(seconds(Duration::from_millis(4200)), "4.2 s");
        assert_eq!(seconds(Duration::from_secs(576)), "9m 36s");
        assert_eq!(seconds(Duration::from_secs(3720)), "1h 02m");
        assert_eq!(count(1, "epoch"), "1 epoch");
        assert_eq!(count(3, "epoch"), "3 epochs");
    }
}

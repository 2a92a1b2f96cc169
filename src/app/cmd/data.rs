use crate::data::check;
use crate::data::decode::DecodeLimits;
use anyhow::Result;

use crate::app::cli::DataCmd;

pub fn run(cmd: DataCmd, quiet: bool) -> Result<i32> {
    match cmd {
        DataCmd::Fetch {
            repo,
            out,
            test_split,
            seed,
            per_class,
            force,
            json,
        } => {
            let selection = crate::data::fetch::Selection {
                test_split,
                seed,
                per_class,
            };
            let report = fetch(&repo, &out, selection, force, quiet)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            }
            Ok(0)
        }
        DataCmd::Check {
            dir,
            strict,
            json,
            show,
        } => {
            let total = check::count(&dir)?;
            let bar = crate::progress::bar(total as u64, "decode", "images", quiet);
            let report = check::check(&dir, &DecodeLimits::default(), &|| bar.inc(1))?;
            bar.finish_and_clear();
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report, show);
            }
            Ok(if strict && report.bad > 0 { 1 } else { 0 })
        }
    }
}

fn print_report(r: &check::CheckReport, show: usize) {
    for s in &r.splits {
        println!("{} ({})", s.split, s.root.display());
        println!(
            "  {:<16} {:>7} {:>7} {:>5}   {:<22} {:<22}",
            "class", "files", "good", "bad", "width min/med/max", "height min/med/max"
        );
        for c in &s.classes {
            println!(
                "  {:<16} {:>7} {:>7} {:>5}   {:<22} {:<22}",
                c.class,
                c.files,
                c.good,
                c.bad.len(),
                format!("{}/{}/{}", c.width.min, c.width.median, c.width.max),
                format!("{}/{}/{}", c.height.min, c.height.median, c.height.max)
            );
        }
        for c in &s.classes {
            for b in c.bad.iter().take(show) {
                println!("  bad: {}: {}", b.path.display(), b.reason);
            }
            if c.bad.len() > show {
                println!("  … and {} more bad files in {}", c.bad.len() - show, c.class);
            }
        }
        if !s.skipped.is_empty() {
            println!(
                "  skipped {} files without an image extension (e.g. {})",
                s.skipped.len(),
                s.skipped[0].display()
            );
        }
    }
    println!("{} images, {} bad", r.images, r.bad);
}

/// Runs `data fetch` with a progress bar and prints a summary to stderr.
pub fn fetch(
    repo: &str,
    out: &std::path::Path,
    selection: crate::data::fetch::Selection,
    force: bool,
    quiet: bool,
) -> Result<crate::data::fetch::FetchReport> {
    use crate::data::fetch::{self, FetchOptions};
    use crate::hub::HubOptions;
    let opts = FetchOptions {
        repo: repo.to_string(),
        out: out.to_path_buf(),
        selection,
        force,
        hub: HubOptions {
            progress: !quiet,
            ..HubOptions::from_env()?
        },
    };
    let bar = crate::progress::spinner("decoding", "rows", quiet);
    let report = fetch::fetch(&opts, &|n| bar.inc(n as u64), &mut |m| eprintln!("{m}"))?;
    bar.finish_and_clear();
    if report.already_complete {
        return Ok(report);
    }
    for (split, classes) in &report.counts {
        let c: Vec<String> = classes.iter().map(|(k, v)| format!("{v} {k}")).collect();
        eprintln!("{}/{split}: {}", out.display(), c.join(", "));
    }
    eprintln!(
        "{} images written, {} already there; test split: {}; {} rows did not decode and were left out",
        report.written,
        report.kept,
        report.test_source,
        report.bad.len()
    );
    for (file, row, reason) in report.bad.iter().take(10) {
        eprintln!("  {file} row {row}: {reason}");
    }
    Ok(report)
}

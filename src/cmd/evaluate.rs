use std::path::Path;

use anyhow::{Context, Result};
use catdog::data::folder::{collect_inputs, split_dirs, ImageFolder};
use catdog::eval::report;
use catdog::kernels::{Kernels, Precision};
use catdog::model::classifier::Classifier;

use crate::cli::{EvaluateArgs, PredictArgs};

/// One line of `predict --json`, keys in the README's order (a struct keeps it; a JSON map would sort them).
#[derive(serde::Serialize)]
struct PredictionLine<'a> {
    path: &'a Path,
    label: &'a str,
    probabilities: serde_json::Map<String, serde_json::Value>,
}

/// A file `predict --json` could not read.
#[derive(serde::Serialize)]
struct FailedLine<'a> {
    path: &'a Path,
    error: &'a str,
}

/// Loads a checkpoint onto `--device`, set to run with `--kernels` and `--precision`.
fn open_checkpoint(
    path: &Path,
    device: &str,
    kernels: Option<Kernels>,
    precision: Precision,
    quiet: bool,
) -> Result<Classifier> {
    let device = catdog::device::parse_device(device)?;
    let (mut model, _, _) = Classifier::load(path, &device).with_context(|| format!("loading {}", path.display()))?;
    model.base.set_kernels(Kernels::resolve(kernels, &device)?);
    super::set_precision(&mut model.base, precision, &device, quiet);
    Ok(model)
}

pub fn evaluate(a: EvaluateArgs, quiet: bool) -> Result<i32> {
    let model = open_checkpoint(&a.checkpoint, &a.device, a.kernels, a.precision, quiet)?;
    let parts = split_dirs(&a.data);
    let root = ["test", "validation", "val"]
        .iter()
        .find_map(|n| parts.iter().find(|(p, _)| p == n).map(|(_, d)| d.clone()))
        .unwrap_or_else(|| a.data.clone());
    let folder = ImageFolder::scan_lenient(&root)?;
    super::usage_check(catdog::limits::check_batch(a.batch_size))?;
    super::check_forward_memory("evaluate", &model.base, model.meta.size, a.batch_size)?;
    let bar = catdog::progress::bar(folder.samples.len() as u64, "evaluate", "images", quiet);
    let ev = report::evaluate(&model, &folder, a.checkpoint.clone(), a.batch_size.max(1), &mut |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    if let Some(path) = &a.misclassified {
        match report::misclassified_grid(&model, &ev.predictions, 64)? {
            Some(img) => {
                catdog::plot::save_png(path, &img)?;
                eprintln!("wrote {}", path.display());
            }
            None => eprintln!("no misclassified images; {} not written", path.display()),
        }
    }
    if a.json {
        println!("{}", serde_json::to_string(&ev)?);
        return Ok(0);
    }
    let m = &ev.metrics;
    println!("{} on {} ({} images)", a.checkpoint.display(), root.display(), m.images);
    println!(
        "loss {:.4}  accuracy {:.4}  ROC-AUC {}",
        ev.loss,
        m.accuracy,
        m.roc_auc.map_or("-".into(), |v| format!("{v:.4}"))
    );
    println!();
    let w = m.classes.iter().map(|c| c.len()).max().unwrap_or(5).max(9);
    print!("{:>w$}  ", "true\\pred");
    for c in &m.classes {
        print!("{c:>w$} ");
    }
    println!();
    for (c, row) in m.classes.iter().zip(&m.confusion) {
        print!("{c:>w$}  ");
        for v in row {
            print!("{v:>w$} ");
        }
        println!();
    }
    println!();
    println!(
        "{:>w$}  {:>9} {:>9} {:>9} {:>8}",
        "class", "precision", "recall", "f1", "support"
    );
    for c in &m.per_class {
        println!(
            "{:>w$}  {:>9.4} {:>9.4} {:>9.4} {:>8}",
            c.class, c.precision, c.recall, c.f1, c.support
        );
    }
    for (p, r) in &ev.bad_files {
        eprintln!("skipped {}: {r}", p.display());
    }
    Ok(0)
}

pub fn predict(a: PredictArgs, quiet: bool) -> Result<i32> {
    let model = open_checkpoint(&a.checkpoint, &a.device, a.kernels, a.precision, quiet)?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in &a.paths {
        let inputs = collect_inputs(std::slice::from_ref(p))?;
        files.extend(inputs.files);
        skipped.extend(inputs.skipped);
    }
    super::report_skipped(&skipped);
    super::usage_check(catdog::limits::check_batch(a.batch_size))?;
    super::check_forward_memory("predict", &model.base, model.meta.size, a.batch_size)?;
    let bar = catdog::progress::bar(files.len() as u64, "predict", "images", quiet);
    let preds = report::predict(&model, &files, a.batch_size.max(1), &mut |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    let mut failures = 0;
    for p in preds {
        match p {
            Ok(p) => {
                if a.json {
                    let probs: serde_json::Map<String, serde_json::Value> = p
                        .probabilities
                        .iter()
                        .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                        .collect();
                    let line = PredictionLine {
                        path: &p.path,
                        label: &p.label,
                        probabilities: probs,
                    };
                    println!("{}", serde_json::to_string(&line)?);
                } else {
                    let probs = p
                        .probabilities
                        .iter()
                        .map(|(c, v)| format!("{c} {v:.4}"))
                        .collect::<Vec<_>>()
                        .join("  ");
                    println!("{}\t{}\t{probs}", p.path.display(), p.label);
                }
            }
            Err((path, reason)) => {
                failures += 1;
                if a.json {
                    println!(
                        "{}",
                        serde_json::to_string(&FailedLine {
                            path: &path,
                            error: &reason
                        })?
                    );
                } else {
                    eprintln!("skipped {}: {reason}", path.display());
                }
            }
        }
    }
    Ok(if failures > 0 && failures == files.len() { 1 } else { 0 })
}

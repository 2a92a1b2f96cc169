use std::path::Path;

use crate::data::augment::AugmentConfig;
use crate::data::folder::{collect_inputs, split_dirs, ImageFolder};
use crate::eval::report;
use crate::kernels::{Kernels, PrecisionChoice};
use crate::model::classifier::Classifier;
use anyhow::{Context, Result};

use crate::app::cli::{EvaluateArgs, PredictArgs};

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

/// Most looks of `--tta`.
const MAX_TTA: usize = 64;

/// `--tta N`: `None` for 1 (the plain evaluation); else the augmentation the checkpoint's run trained with (its
/// folder's config.json), or the course's set when it had none.
fn tta_for(checkpoint: &Path, looks: usize) -> Result<Option<report::Tta>> {
    if !(1..=MAX_TTA).contains(&looks) {
        return Err(crate::app::UsageError(format!("--tta {looks}: use 1..={MAX_TTA} looks per image")).into());
    }
    if looks == 1 {
        return Ok(None);
    }
    let recorded = checkpoint
        .parent()
        .and_then(|dir| std::fs::read_to_string(crate::run::RunPaths::new(dir).config()).ok())
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|cfg| serde_json::from_value::<AugmentConfig>(cfg["augment"].clone()).ok());
    Ok(Some(report::Tta {
        looks,
        augment: recorded.unwrap_or_else(AugmentConfig::course),
    }))
}

/// Loads a checkpoint onto `--device`, set to run with `--kernels` and `--precision`.
pub(super) fn open_checkpoint(
    path: &Path,
    device: &str,
    kernels: Option<Kernels>,
    precision: PrecisionChoice,
    quiet: bool,
) -> Result<Classifier> {
    let device = crate::device::parse_device(device)?;
    let (mut model, _, _) = Classifier::load(path, &device).with_context(|| format!("loading {}", path.display()))?;
    model.base.set_kernels(Kernels::resolve(kernels, &device)?);
    super::set_precision(&mut model.base, precision, &device, quiet);
    Ok(model)
}

pub fn evaluate(a: EvaluateArgs, quiet: bool) -> Result<i32> {
    let ev = compute(&a, quiet)?;
    if a.json {
        println!("{}", serde_json::to_string(&ev)?);
        return Ok(0);
    }
    print_evaluation(&ev);
    Ok(0)
}

/// Evaluates the checkpoint (and writes the misclassified grid when asked); `--json` prints this value.
pub fn compute(a: &EvaluateArgs, quiet: bool) -> Result<report::Evaluation> {
    let model = open_checkpoint(
        &a.checkpoint,
        &a.run.rt.device,
        a.run.rt.kernels,
        a.run.rt.precision,
        quiet,
    )?;
    let parts = split_dirs(&a.data);
    let root = ["test", "validation", "val"]
        .iter()
        .find_map(|n| parts.iter().find(|(p, _)| p == n).map(|(_, d)| d.clone()))
        .unwrap_or_else(|| a.data.clone());
    let folder = ImageFolder::scan_lenient(&root)?;
    super::usage_check(crate::limits::check_batch(a.run.batch_size))?;
    super::check_forward_memory("evaluate", &model.base, model.meta.size, a.run.batch_size)?;
    let bar = crate::progress::bar(folder.samples.len() as u64, "evaluate", "images", quiet);
    let tta = tta_for(&a.checkpoint, a.run.tta)?;
    let ev = report::evaluate(
        &model,
        &folder,
        a.checkpoint.clone(),
        a.run.batch_size.max(1),
        tta.as_ref(),
        &mut |n| bar.inc(n as u64),
    )?;
    bar.finish_and_clear();
    if let Some(path) = &a.misclassified {
        match report::misclassified_grid(&model, &ev.predictions, 64, a.gradcam)? {
            Some(img) => {
                crate::plot::save_png(path, &img)?;
                eprintln!("wrote {}", path.display());
            }
            None => eprintln!("no misclassified images; {} not written", path.display()),
        }
    }
    Ok(ev)
}

/// The text report of an evaluation.
fn print_evaluation(ev: &report::Evaluation) {
    let m = &ev.metrics;
    println!(
        "{} on {} ({} images)",
        ev.checkpoint.display(),
        ev.data.display(),
        m.images
    );
    let auc = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    match &ev.tta {
        Some(t) => {
            println!(
                "with test-time augmentation ({} looks): loss {:.4}  accuracy {:.4}  ROC-AUC {}",
                t.tta,
                ev.loss,
                m.accuracy,
                auc(m.roc_auc)
            );
            println!(
                "without:                                  loss {:.4}  accuracy {:.4}  ROC-AUC {}",
                t.loss_without_tta,
                t.accuracy_without_tta,
                auc(t.roc_auc_without_tta)
            );
        }
        None => println!(
            "loss {:.4}  accuracy {:.4}  ROC-AUC {}",
            ev.loss,
            m.accuracy,
            auc(m.roc_auc)
        ),
    }
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
}

pub fn predict(a: PredictArgs, quiet: bool) -> Result<i32> {
    let (lines, failures, total) = predictions(&a, quiet)?;
    for line in &lines {
        if a.json {
            println!("{}", serde_json::to_string(line)?);
        } else if let Some(error) = line.get("error").and_then(|e| e.as_str()) {
            eprintln!("skipped {}: {error}", line["path"].as_str().unwrap_or_default());
        } else {
            let probs = line["probabilities"]
                .as_object()
                .map(|p| {
                    p.iter()
                        .map(|(c, v)| format!("{c} {:.4}", v.as_f64().unwrap_or(f64::NAN)))
                        .collect::<Vec<_>>()
                        .join("  ")
                })
                .unwrap_or_default();
            let (path, label) = (
                line["path"].as_str().unwrap_or_default(),
                line["label"].as_str().unwrap_or_default(),
            );
            println!("{path}\t{label}\t{probs}");
        }
    }
    Ok(if failures > 0 && failures == total { 1 } else { 0 })
}

/// `predict --json`'s lines, in input order (a prediction, or the file's error), with the count of failures and
/// of files.
pub fn predictions(a: &PredictArgs, quiet: bool) -> Result<(Vec<serde_json::Value>, usize, usize)> {
    let model = open_checkpoint(
        &a.checkpoint,
        &a.run.rt.device,
        a.run.rt.kernels,
        a.run.rt.precision,
        quiet,
    )?;
    let mut files = Vec::new();
    let mut skipped = Vec::new();
    for p in &a.paths {
        let inputs = collect_inputs(std::slice::from_ref(p))?;
        files.extend(inputs.files);
        skipped.extend(inputs.skipped);
    }
    super::report_skipped(&skipped);
    super::usage_check(crate::limits::check_batch(a.run.batch_size))?;
    super::check_forward_memory("predict", &model.base, model.meta.size, a.run.batch_size)?;
    let bar = crate::progress::bar(files.len() as u64, "predict", "images", quiet);
    let tta = tta_for(&a.checkpoint, a.run.tta)?;
    let preds = report::predict(&model, &files, a.run.batch_size.max(1), tta.as_ref(), &mut |n| {
        bar.inc(n as u64)
    })?;
    bar.finish_and_clear();
    let mut failures = 0;
    let mut lines = Vec::with_capacity(preds.len());
    for p in preds {
        let line = match p {
            Ok(p) => {
                let probabilities: serde_json::Map<String, serde_json::Value> = p
                    .probabilities
                    .iter()
                    .map(|(c, v)| (c.clone(), serde_json::json!(v)))
                    .collect();
                serde_json::to_value(PredictionLine {
                    path: &p.path,
                    label: &p.label,
                    probabilities,
                })?
            }
            Err((path, reason)) => {
                failures += 1;
                serde_json::to_value(FailedLine {
                    path: &path,
                    error: &reason,
                })?
            }
        };
        lines.push(line);
    }
    Ok((lines, failures, files.len()))
}

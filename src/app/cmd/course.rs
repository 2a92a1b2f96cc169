//! `catdog course`: the course's recipes on one data set, each in its own run folder, evaluated on the test folder
//! and set side by side in `report.md`, `report.json` and `report.png` — (a) feature extraction, (b) extraction with
//! the course's augmentation, (c) block5 fine-tuning from a fresh head (the course notebook's way), (d) block5
//! fine-tuning from (a)'s head (the book's way, `--init-from`). A re-run skips finished recipes and resumes an
//! interrupted one.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use plotters::style::RGBColor;
use serde::Serialize;

use crate::app::cli::{Command, CourseArgs};
use crate::plot::{Series, Stroke};
use crate::train::history::History;

/// Stands in the flags for the extract recipe's run folder (under `--out`).
const EXTRACT_RUN: &str = "{extract run}";

/// A recipe: its name (and run folder) and the `finetune` flags that make it.
struct Recipe {
    name: &'static str,
    title: &'static str,
    flags: &'static [&'static str],
    /// The learning rate: the course's 2e-5 for extraction, 1e-5 for fine-tuning.
    fine_tunes: bool,
}

const RECIPES: [Recipe; 4] = [
    Recipe {
        name: "extract",
        title: "(a) feature extraction",
        flags: &["--mode", "extract"],
        fine_tunes: false,
    },
    Recipe {
        name: "extract-aug",
        title: "(b) extraction with augmentation",
        flags: &["--mode", "extract", "--augment"],
        fine_tunes: false,
    },
    Recipe {
        name: "finetune",
        title: "(c) block5 fine-tuning, fresh head",
        flags: &["--mode", "finetune", "--unfreeze-from", "block5_conv1"],
        fine_tunes: true,
    },
    Recipe {
        name: "finetune-from-extract",
        title: "(d) block5 fine-tuning from (a)",
        flags: &[
            "--mode",
            "finetune",
            "--unfreeze-from",
            "block5_conv1",
            "--init-from",
            EXTRACT_RUN,
        ],
        fine_tunes: true,
    },
];

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    recipe: String,
    run_dir: PathBuf,
    test_accuracy: f64,
    test_loss: f64,
    test_roc_auc: Option<f64>,
    best_epoch: Option<usize>,
    epochs_run: usize,
    seconds: f64,
    images_per_s: f64,
}

pub fn run(a: CourseArgs, quiet: bool) -> Result<i32> {
    let rows = run_recipes(&a, quiet)?;
    println!("{}", markdown(&rows));
    eprintln!("wrote {} (report.md, report.json, report.png)", a.out.display());
    Ok(0)
}

/// Trains, evaluates and reports the chosen recipes; returns report.json's rows.
pub fn run_recipes(a: &CourseArgs, quiet: bool) -> Result<Vec<Row>> {
    let chosen: Vec<&Recipe> = RECIPES
        .iter()
        .filter(|r| a.recipes.iter().any(|n| n == r.name))
        .collect();
    if let Some(bad) = a.recipes.iter().find(|n| !RECIPES.iter().any(|r| r.name == n.as_str())) {
        return Err(crate::app::UsageError(format!(
            "--recipes: no recipe '{bad}'; the recipes are {}",
            RECIPES.iter().map(|r| r.name).collect::<Vec<_>>().join(", ")
        ))
        .into());
    }
    let epochs = a.epochs.unwrap_or(if a.quick { 3 } else { 30 });
    let mut rows = Vec::new();
    let mut histories = Vec::new();
    for recipe in chosen {
        if recipe.name == "finetune-from-extract" && !a.out.join("extract/best.safetensors").exists() {
            return Err(crate::app::UsageError(
                "--recipes finetune-from-extract starts from the extract recipe's run: include extract".into(),
            )
            .into());
        }
        let dir = train_recipe(a, recipe, epochs, quiet).with_context(|| format!("recipe {}", recipe.name))?;
        let row = evaluate_recipe(a, recipe, &dir, quiet)?;
        histories.push((recipe.title, History::read(&dir).unwrap_or_default()));
        if !quiet {
            eprintln!("{}: test accuracy {:.4}", recipe.title, row.test_accuracy);
        }
        rows.push(row);
    }
    write_report(&a.out, &rows, &histories)?;
    Ok(rows)
}

/// Trains one recipe in `OUT/<name>`: skipped when finished, resumed when interrupted, else started.
fn train_recipe(a: &CourseArgs, recipe: &Recipe, epochs: usize, quiet: bool) -> Result<PathBuf> {
    let dir = a.out.join(recipe.name);
    let done = History::read(&dir).map(|h| h.epochs.len()).unwrap_or(0);
    let paths = crate::run::RunPaths::new(&dir);
    let stopped_early = std::fs::read_to_string(paths.summary()).is_ok_and(|s| s.contains("early"));
    if paths.last().exists() && (done >= epochs || stopped_early) {
        if !quiet {
            eprintln!("{}: finished earlier ({done} epochs), kept", recipe.title);
        }
        return Ok(dir);
    }
    let mut args: Vec<OsString> = vec!["catdog".into(), "finetune".into()];
    if paths.last().exists() {
        args.extend(["--resume".into(), dir.clone().into_os_string()]);
        args.extend(["--epochs".into(), epochs.to_string().into()]);
    } else {
        let lr = if recipe.fine_tunes { "1e-5" } else { "2e-5" };
        args.extend(recipe.flags.iter().map(|f| match *f {
            EXTRACT_RUN => a.out.join("extract").into_os_string(),
            f => f.into(),
        }));
        args.extend([
            "--data".into(),
            a.data.clone().into_os_string(),
            "--lr".into(),
            lr.into(),
        ]);
        args.extend([
            "--epochs".into(),
            epochs.to_string().into(),
            "--name".into(),
            recipe.name.into(),
        ]);
        args.extend(["--runs-dir".into(), a.out.clone().into_os_string()]);
        let shared = a.shared.iter().map(OsString::from);
        if recipe.name == "finetune-from-extract" {
            // The conv base comes from (a)'s checkpoint: --weights would be refused.
            args.extend(without_weights(&a.shared).into_iter().map(OsString::from));
        } else {
            args.extend(shared);
        }
    }
    if quiet {
        args.push("--quiet".into());
    }
    let (cli, explicit) = crate::app::parse(args).map_err(|e| crate::app::UsageError(e.render().to_string()))?;
    let Command::Finetune(f) = cli.command else {
        unreachable!("the arguments name finetune")
    };
    let (code, _) = super::finetune::train(*f, quiet, &explicit)?;
    if code >= 128 {
        return Err(crate::Error::Interrupted.into());
    }
    Ok(dir)
}

/// `shared` without `--weights VALUE` (or `--weights=VALUE`).
fn without_weights(shared: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip = false;
    for s in shared {
        if skip {
            skip = false;
        } else if s == "--weights" {
            skip = true;
        } else if !s.starts_with("--weights=") {
            out.push(s.clone());
        }
    }
    out
}

/// Evaluates a recipe's best checkpoint on the data's test folder.
fn evaluate_recipe(a: &CourseArgs, recipe: &Recipe, dir: &Path, quiet: bool) -> Result<Row> {
    let mut args: Vec<OsString> = vec!["catdog".into(), "evaluate".into(), "--quiet".into()];
    args.extend([
        "--checkpoint".into(),
        crate::run::RunPaths::new(dir).best().into_os_string(),
    ]);
    args.extend(["--data".into(), a.data.clone().into_os_string()]);
    let (cli, _) = crate::app::parse(args).map_err(|e| crate::app::UsageError(e.render().to_string()))?;
    let Command::Evaluate(e) = cli.command else {
        unreachable!("the arguments name evaluate")
    };
    let ev = super::evaluate::compute(&e, quiet)?;
    let h = History::read(dir).unwrap_or_default();
    let best_epoch = h
        .epochs
        .iter()
        .filter_map(|e| e.val_loss.map(|v| (e.epoch, v)))
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(e, _)| e);
    let seconds: f64 = h.epochs.iter().map(|e| e.seconds).sum();
    let images: f64 = h.epochs.iter().map(|e| e.images_per_s * e.seconds).sum();
    Ok(Row {
        recipe: recipe.title.to_string(),
        run_dir: dir.to_path_buf(),
        test_accuracy: ev.metrics.accuracy,
        test_loss: ev.loss,
        test_roc_auc: ev.metrics.roc_auc,
        best_epoch,
        epochs_run: h.epochs.len(),
        seconds,
        images_per_s: images / seconds.max(1e-9),
    })
}

fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| recipe | test accuracy | test loss | ROC-AUC | best epoch | epochs run | train time | images/s |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.4} | {:.4} | {} | {} | {} | {:.1} s | {:.1} |\n",
            r.recipe,
            r.test_accuracy,
            r.test_loss,
            r.test_roc_auc.map_or("-".into(), |v| format!("{v:.4}")),
            r.best_epoch.map_or("-".into(), |e| e.to_string()),
            r.epochs_run,
            r.seconds,
            r.images_per_s
        ));
    }
    s
}

/// report.md, report.json and report.png (every recipe's validation loss and accuracy, one panel each).
fn write_report(out: &Path, rows: &[Row], histories: &[(&str, History)]) -> Result<()> {
    crate::io::atomic_write(
        &out.join("report.md"),
        format!("# The course's recipes\n\n{}", markdown(rows)).as_bytes(),
    )?;
    crate::io::write_json(&out.join("report.json"), &rows)?;
    let colors = [
        RGBColor(31, 90, 200),
        RGBColor(230, 120, 20),
        RGBColor(40, 150, 60),
        RGBColor(160, 40, 160),
    ];
    let series = |value: &dyn Fn(&crate::train::history::EpochRecord) -> Option<f64>| -> Vec<Series> {
        histories
            .iter()
            .zip(colors)
            .map(|((title, h), color)| Series {
                name: title,
                points: h
                    .epochs
                    .iter()
                    .filter_map(|e| value(e).map(|v| (e.epoch as f64, v)))
                    .collect(),
                color,
                stroke: Stroke::Line,
            })
            .collect()
    };
    let (loss, accuracy) = (series(&|e| e.val_loss), series(&|e| e.val_accuracy));
    let img = crate::plot::draw(1100, 420, |root| {
        let (left, right) = root.split_horizontally(550);
        crate::plot::line_chart(&left, "Validation loss", "epoch", "loss", &loss)?;
        crate::plot::line_chart(&right, "Validation accuracy", "epoch", "accuracy", &accuracy)
    })?;
    crate::plot::save_png(&out.join("report.png"), &img)?;
    Ok(())
}

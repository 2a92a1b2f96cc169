use crate::nn::{Activation, Init, Norm};
use crate::tabular::labs::{self, DataSource, LabConfig, LabName};
use crate::train::optim::OptimConfig;
use anyhow::Context;
use anyhow::Result;

use crate::app::cli::{LabArgs, LabChoice};

/// Largest `--seeds`: each seed trains every variant again.
const MAX_SEEDS: usize = 100;
/// Most points of a generated data set (`--n`).
const MAX_POINTS: usize = 1_000_000;
/// Most hidden layers (`--layers`).
const MAX_LAYERS: usize = 32;
/// Columns assumed for the first layer's weights before the data is read (the built-in tables have at most 30).
const ASSUMED_INPUTS: usize = 64;

/// Refuses `--n` and `--layers` that could not fit, before any data is made: each in range, and the network's
/// weights (with gradients and two optimizer slots) and a generated data set's activations within the memory the
/// machine has.
fn check_sizes(a: &LabArgs) -> Result<()> {
    let usage = |m: String| -> anyhow::Error { crate::app::UsageError(m).into() };
    if a.layers.is_empty() || a.layers.len() > MAX_LAYERS {
        return Err(usage(format!(
            "--layers needs 1..={MAX_LAYERS} hidden layer sizes, e.g. --layers 64,32 (got {})",
            a.layers.len()
        )));
    }
    let max = crate::limits::MAX_HIDDEN;
    if let Some(w) = a.layers.iter().find(|w| **w == 0 || **w > max) {
        return Err(usage(format!(
            "--layers: a layer of {w} units is out of range: use 1..={max}"
        )));
    }
    if a.csv.is_none() && !(1..=MAX_POINTS).contains(&a.n) {
        return Err(usage(format!("--n {}: use 1..={MAX_POINTS} points", a.n)));
    }
    let widths = std::iter::once(ASSUMED_INPUTS)
        .chain(a.layers.iter().copied())
        .chain(std::iter::once(1));
    let sizes: Vec<u64> = widths.map(|w| w as u64).collect();
    let weights: u64 = sizes.windows(2).map(|p| (p[0] + 1) * p[1]).sum();
    let units: u64 = a.layers.iter().map(|w| *w as u64).sum();
    let rows = if a.csv.is_none() {
        a.n as u64
    } else {
        a.batch_size as u64
    };
    use crate::limits::MemoryPart;
    let parts = [
        MemoryPart::new("weights, gradients and optimizer state", weights * 16, "--layers"),
        MemoryPart::new("activations", rows * units * 4 * 3, "--n or --layers"),
    ];
    super::usage_check(crate::limits::check_memory("this lab", &parts))
}

pub fn config(a: &LabArgs) -> Result<LabConfig> {
    let data = match (&a.csv, a.dataset) {
        (Some(path), _) => Some(DataSource::Csv {
            path: path.clone(),
            target: a.target.clone().unwrap_or_default(),
            drop: a.drop.clone(),
            task: a.task,
        }),
        (None, Some(kind)) => Some(DataSource::Builtin {
            kind,
            n: a.n,
            noise: a.noise,
        }),
        (None, None) => None,
    };
    check_sizes(a)?;
    Ok(LabConfig {
        data,
        val_split: a.val_split,
        scaling: a.scaling,
        layers: a.layers.clone(),
        activation: a.activation.parse::<Activation>()?,
        dropout: a.dropout,
        norm: if a.batchnorm {
            Norm::Batch
        } else if a.layernorm {
            Norm::Layer
        } else {
            Norm::None
        },
        norm_defaults: a.norm_defaults,
        init: a.init.parse::<Init>()?,
        fit: crate::tabular::fit::FitConfig {
            // Filled in per lab by run_lab, from `epochs` below or the lab's default.
            epochs: a.epochs.unwrap_or(0),
            batch_size: a.batch_size,
            optimizer: OptimConfig::new(a.optimizer, a.lr),
            l1: a.l1,
            l2: a.l2,
            regularize: a.regularize,
            early_stopping: None,
            seed: a.seed,
        },
        seeds: a.seeds,
        epochs: a.epochs,
        target_loss: a.target_loss,
        patience: a.patience,
    })
}

/// The folders a `lab` run writes its results.json into (one per lab).
pub fn result_dirs(a: &LabArgs) -> Vec<std::path::PathBuf> {
    match a.lab {
        LabChoice::One(lab) => vec![a.out.join(lab.slug())],
        _ => LabName::ALL.iter().map(|lab| a.out.join(lab.slug())).collect(),
    }
}

pub fn run(a: LabArgs, quiet: bool) -> Result<i32> {
    run_printing(a, quiet, true)
}

/// Runs the lab(s); `print` shows each table (markdown, or JSON with `--json`) on stdout as the command does.
pub fn run_printing(a: LabArgs, quiet: bool, print: bool) -> Result<i32> {
    let cfg = config(&a)?;
    if !(1..=MAX_SEEDS).contains(&a.seeds) {
        return Err(crate::app::UsageError(format!("--seeds {}: use 1..={MAX_SEEDS}", a.seeds)).into());
    }
    let out = a.out.clone();
    let LabChoice::One(lab) = a.lab else {
        return run_every_lab(&a, &cfg, quiet, print);
    };
    let out = out.join(lab.slug());
    let r = labs::run_lab(lab, &cfg, &out)?;
    write_board(&a, &r)?;
    if print && a.json {
        println!("{}", serde_json::to_string(&r)?);
    } else if print {
        println!("{}", r.markdown());
    }
    eprintln!(
        "wrote {} (table.md, table.csv, results.json, {}) in {:.1} s",
        out.display(),
        r.plots.join(", "),
        r.seconds
    );
    Ok(0)
}

/// `--tensorboard DIR`: the lab's variants as TensorBoard runs.
fn write_board(a: &LabArgs, r: &labs::LabResult) -> Result<()> {
    if let Some(dir) = &a.tensorboard {
        labs::board::write(dir, r).with_context(|| format!("--tensorboard {}", dir.display()))?;
    }
    Ok(())
}

/// `catdog lab all`: every lab into its own folder under --out, then an index of them.
fn run_every_lab(a: &LabArgs, cfg: &LabConfig, quiet: bool, print: bool) -> Result<i32> {
    let bar = crate::progress::bar(LabName::ALL.len() as u64, "labs", "labs", quiet);
    let mut results = Vec::new();
    for lab in LabName::ALL {
        let r = labs::run_lab(lab, cfg, &a.out.join(lab.slug()))?;
        write_board(a, &r)?;
        bar.inc(1);
        if print && !a.json {
            bar.suspend(|| println!("{}", r.markdown()));
        }
        results.push(r);
    }
    bar.finish_and_clear();
    labs::write_index(&a.out, &results)?;
    if print && a.json {
        println!("{}", serde_json::to_string(&results)?);
    }
    eprintln!(
        "wrote {} (index.md, one folder per lab) in {:.1} s",
        a.out.display(),
        results.iter().map(|r| r.seconds).sum::<f64>()
    );
    Ok(0)
}

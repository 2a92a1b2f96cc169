//! `catdog lab NAME`: each lab trains a few MLPs that differ in one thing, on the same splits, over several seeds,
//! and writes a comparison table (`table.md`, `table.csv`), `results.json` and PNG plots into its folder.
//!
//! One file per lab; each is a function from a [`Context`] (the settings, the data split once per seed, the
//! default network, the output folder) to a [`Table`](crate::tabular::dataset::Table). This file holds what they share: the names, the
//! settings, the results and how they are written.

mod ablation;
mod activations;
pub mod board;
mod dropout;
mod early_stopping;
mod format;
mod init;
mod normalization;
mod overfit;
mod penalties;
mod plots;
mod scaling;
mod train;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::dataset::{Builtin, Scaling, Task};
use super::fit::{EpochRow, FitConfig};
use super::mlp::MlpConfig;
use crate::error::{Error, Result};
use crate::nn::{Activation, Init, Norm, NormDefaults};
use train::Prepared;

/// The labs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabName {
    /// A too-large network on little data: train and validation curves diverge.
    Overfit,
    /// Increasing L1 penalties: metrics, gap, near-zero weights, weight histograms.
    L1,
    /// Increasing L2 penalties.
    L2,
    /// L1 and L2 together.
    Elastic,
    /// Dropout 0 … 0.5 on classification and on the 1-D regression, with decision maps and fitted lines.
    Dropout,
    /// No scaling vs standard vs min-max: epochs to a target loss, final metrics.
    Scaling,
    /// sigmoid, tanh, relu, leaky_relu, elu, selu, prelu: metrics and dead units; each function and derivative.
    Activations,
    /// zeros, large normal, glorot, he: does it learn, and the first epoch's gradient norms per layer.
    Init,
    /// none vs batch norm vs layer norm.
    Normalization,
    /// The same run with and without early stopping.
    EarlyStopping,
    /// Baseline, each regularizer alone and all combined.
    Ablation,
}

impl LabName {
    pub fn slug(self) -> &'static str {
        match self {
            LabName::Overfit => "overfit",
            LabName::L1 => "l1",
            LabName::L2 => "l2",
            LabName::Elastic => "elastic",
            LabName::Dropout => "dropout",
            LabName::Scaling => "scaling",
            LabName::Activations => "activations",
            LabName::Init => "init",
            LabName::Normalization => "normalization",
            LabName::EarlyStopping => "early-stopping",
            LabName::Ablation => "ablation",
        }
    }

    /// Every lab, in the order `catdog lab all` runs them.
    pub const ALL: [LabName; 11] = [
        LabName::Overfit,
        LabName::L1,
        LabName::L2,
        LabName::Elastic,
        LabName::Dropout,
        LabName::Scaling,
        LabName::Activations,
        LabName::Init,
        LabName::Normalization,
        LabName::EarlyStopping,
        LabName::Ablation,
    ];

    /// Epochs when `--epochs` is not given: the overfitting labs train their too-large network long enough to
    /// overfit (at batch 32 on 80 rows, 100 epochs are only 300 steps, and its decision maps barely differ).
    pub fn default_epochs(self) -> usize {
        match self {
            LabName::Overfit | LabName::Dropout => 300,
            _ => 100,
        }
    }

    /// The lab itself.
    fn lab(self) -> &'static dyn Lab {
        match self {
            LabName::Overfit => &overfit::Overfit,
            LabName::L1 | LabName::L2 | LabName::Elastic => &penalties::Penalties,
            LabName::Dropout => &dropout::Dropout,
            LabName::Scaling => &scaling::Scaling,
            LabName::Activations => &activations::Activations,
            LabName::Init => &init::Init,
            LabName::Normalization => &normalization::Normalization,
            LabName::EarlyStopping => &early_stopping::EarlyStopping,
            LabName::Ablation => &ablation::Ablation,
        }
    }

    /// The data a lab uses when none is given: the overfitting labs need little, noisy data to overfit.
    fn default_source(self) -> DataSource {
        match self {
            LabName::Overfit | LabName::Dropout => DataSource::Builtin {
                kind: Builtin::Moons,
                n: dropout::MOONS_N,
                noise: dropout::MOONS_NOISE,
            },
            _ => DataSource::Builtin {
                kind: Builtin::BreastCancer,
                n: 0,
                noise: 0.0,
            },
        }
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DataSource {
    Csv {
        path: PathBuf,
        target: String,
        drop: Vec<String>,
        task: Option<Task>,
    },
    Builtin {
        kind: Builtin,
        n: usize,
        noise: f64,
    },
}

/// Settings shared by every variant of a lab (flags of `catdog lab`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    /// Data given by the user (`None`: each lab's default — breast cancer, moons, the sine).
    pub data: Option<DataSource>,
    pub val_split: f64,
    pub scaling: Scaling,
    pub layers: Vec<usize>,
    pub activation: Activation,
    pub dropout: f64,
    pub norm: Norm,
    pub norm_defaults: NormDefaults,
    pub init: Init,
    /// `fit.seed` is the first seed; `seeds` runs follow it (each with its own split and initialisation).
    /// `fit.epochs` is filled in per lab from `epochs`.
    pub fit: FitConfig,
    /// Epochs per variant; `None`: each lab's own ([`LabName::default_epochs`]).
    pub epochs: Option<usize>,
    /// How many seeds every variant is trained with; tables show mean ± standard deviation over them.
    pub seeds: usize,
    /// Target training loss of the scaling lab.
    pub target_loss: f64,
    pub patience: usize,
}

/// One variant, over the seeds: the figures are means (`sd` holds the standard deviations), the history and the
/// plotted model are the first seed's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariantResult {
    pub variant: String,
    pub model: String,
    pub data: String,
    pub epochs_run: f64,
    pub best_epoch: f64,
    pub best_val_loss: f64,
    pub train_loss: f64,
    pub val_loss: f64,
    pub train_metric: f64,
    pub val_metric: f64,
    /// Extra per-lab figures (near-zero weight fraction, dead units, epochs to target, gradient norms…), and
    /// `gap_loss` (validation − training loss) and `gap_metric` (training − validation metric).
    pub extra: BTreeMap<String, f64>,
    /// The seeds averaged over.
    pub seeds: Vec<u64>,
    /// Sample standard deviation over the seeds of every figure above, by name (`val_metric`, an `extra` key…).
    pub sd: BTreeMap<String, f64>,
    pub history: Vec<EpochRow>,
}

impl VariantResult {
    /// The figures every variant has, by name.
    const FIELDS: [&'static str; 7] = [
        "epochs_run",
        "best_epoch",
        "best_val_loss",
        "train_loss",
        "val_loss",
        "train_metric",
        "val_metric",
    ];

    /// A figure by name: a field or an `extra` key.
    pub fn get(&self, key: &str) -> Option<f64> {
        Some(match key {
            "epochs_run" => self.epochs_run,
            "best_epoch" => self.best_epoch,
            "best_val_loss" => self.best_val_loss,
            "train_loss" => self.train_loss,
            "val_loss" => self.val_loss,
            "train_metric" => self.train_metric,
            "val_metric" => self.val_metric,
            _ => return self.extra.get(key).copied(),
        })
    }

    fn set(&mut self, key: &str, v: f64) {
        match key {
            "epochs_run" => self.epochs_run = v,
            "best_epoch" => self.best_epoch = v,
            "best_val_loss" => self.best_val_loss = v,
            "train_loss" => self.train_loss = v,
            "val_loss" => self.val_loss = v,
            "train_metric" => self.train_metric = v,
            "val_metric" => self.val_metric = v,
            _ => {
                self.extra.insert(key.to_string(), v);
            }
        }
    }
}

/// A lab's result (`results.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabResult {
    pub lab: String,
    pub data: String,
    pub task: Task,
    /// "accuracy" or "mse".
    pub metric: String,
    /// The seeds every row averages over.
    pub seeds: Vec<u64>,
    /// What the table compares and on what (network, data, regularized layers).
    pub caption: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub variants: Vec<VariantResult>,
    pub notes: Vec<String>,
    pub plots: Vec<String>,
    pub seconds: f64,
}

impl LabResult {
    pub fn markdown(&self) -> String {
        let esc = |c: &String| c.replace('|', "\\|");
        let mut s = format!("### {} — {}\n\n{}\n\n", self.lab, self.data, self.caption);
        s.push_str(&format!(
            "| {} |\n|{}|\n",
            self.columns.iter().map(esc).collect::<Vec<_>>().join(" | "),
            vec!["---"; self.columns.len()].join("|")
        ));
        for r in &self.rows {
            s.push_str(&format!("| {} |\n", r.iter().map(esc).collect::<Vec<_>>().join(" | ")));
        }
        for n in &self.notes {
            s.push_str(&format!("\n{n}\n"));
        }
        s
    }

    pub fn csv(&self) -> String {
        let q = |c: &String| {
            if c.contains(',') || c.contains('"') {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        };
        let mut s = self.columns.iter().map(q).collect::<Vec<_>>().join(",") + "\n";
        for r in &self.rows {
            s.push_str(&(r.iter().map(q).collect::<Vec<_>>().join(",") + "\n"));
        }
        s
    }

    pub fn variant(&self, name: &str) -> Option<&VariantResult> {
        self.variants.iter().find(|v| v.variant == name)
    }
}

/// What a lab gets: the settings, its data split once per seed, the default network and its folder.
struct Context<'a> {
    lab: LabName,
    cfg: &'a LabConfig,
    /// The data (the user's or the lab's default), for labs that load it again with other settings.
    source: DataSource,
    /// One split per seed, scaled with `cfg.scaling`.
    data: Vec<Prepared>,
    /// The default network (`--layers`, `--activation`…) on this data.
    base: MlpConfig,
    out: &'a Path,
    plots: Vec<String>,
}

impl Context<'_> {
    /// The share of the first seed's validation rows in their most common class: the accuracy of a network that
    /// always answers that class.
    fn majority(&self) -> f64 {
        let val = &self.data[0].val;
        let mut counts = std::collections::BTreeMap::new();
        for y in &val.y {
            *counts.entry(*y as i64).or_insert(0usize) += 1;
        }
        counts.values().copied().max().unwrap_or(0) as f64 / val.rows().max(1) as f64
    }
}

/// One lab: the variants it trains and what it measures of them, then how it shows them. Each lab file holds one
/// implementation; [`run_lab`] calls the methods in order.
trait Lab: Sync {
    /// Trains the lab's variants on every seed's data, measures them (extra figures in `extra`) and draws its
    /// plots into the context's folder.
    fn measure(&self, cx: &mut Context) -> Result<Vec<VariantResult>>;
    /// What the table compares and on what, and why it differs from the default network or data.
    fn caption(&self, cx: &Context) -> String;
    /// The table's column headers and one row per variant.
    fn table(&self, cx: &Context, vs: &[VariantResult]) -> (Vec<String>, Vec<Vec<String>>);
    /// Conclusions computed from the measured variants.
    fn notes(&self, cx: &Context, vs: &[VariantResult]) -> Vec<String>;
}

/// Column headers from string slices.
fn headers(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

/// Runs one lab and writes its folder `out`.
pub fn run_lab(lab: LabName, cfg: &LabConfig, out: &Path) -> Result<LabResult> {
    let lab_impl = lab.lab();
    if cfg.seeds == 0 {
        return Err(Error::invalid("--seeds must be at least 1"));
    }
    let start = std::time::Instant::now();
    let cfg = &LabConfig {
        fit: FitConfig {
            epochs: cfg.epochs.unwrap_or(lab.default_epochs()),
            ..cfg.fit.clone()
        },
        ..cfg.clone()
    };
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let source = cfg.data.clone().unwrap_or_else(|| lab.default_source());
    let data = train::load_seeds(&source, cfg, cfg.scaling)?;
    let base = train::base_mlp(cfg, &data[0]);
    let mut cx = Context {
        lab,
        cfg,
        source,
        data,
        base,
        out,
        plots: Vec::new(),
    };
    let variants = lab_impl.measure(&mut cx)?;
    let (columns, rows) = lab_impl.table(&cx, &variants);
    let notes = lab_impl.notes(&cx, &variants);
    let caption = lab_impl.caption(&cx);
    let first = &cx.data[0];
    let result = LabResult {
        lab: lab.slug().to_string(),
        data: first.name.clone(),
        task: first.train.task,
        metric: format::metric_name(first.train.task).to_string(),
        seeds: train::seeds(cfg),
        caption: format!("{caption} {}", train::regularized_layers(cfg)),
        columns,
        rows,
        variants,
        notes,
        plots: cx.plots,
        seconds: start.elapsed().as_secs_f64(),
    };
    crate::io::atomic_write(&out.join("table.md"), result.markdown().as_bytes())?;
    crate::io::atomic_write(&out.join("table.csv"), result.csv().as_bytes())?;
    crate::io::write_json(&out.join("results.json"), &result)?;
    Ok(result)
}

/// `out/index.md` (every lab's table, linking its folder) and `out/results.json` for labs run into `out/<lab>/`.
pub fn write_index(out: &Path, results: &[LabResult]) -> Result<()> {
    let mut md = String::from("# catdog regularization labs\n\n");
    for r in results {
        md.push_str(&format!(
            "## [{}]({}/table.md)\n\n{}\nPlots: {}\n\n",
            r.lab,
            r.lab,
            r.markdown().split_once('\n').map(|x| x.1).unwrap_or(""),
            r.plots
                .iter()
                .map(|p| format!("[{p}]({}/{p})", r.lab))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    crate::io::atomic_write(&out.join("index.md"), md.as_bytes())?;
    crate::io::write_json(&out.join("results.json"), &results)
}

//! Training a lab's variants: the data split once per seed, every (variant, seed) pair trained in parallel, and
//! the per-seed results summarised as mean ± standard deviation.

use std::collections::BTreeMap;

use candle_core::Device;
use rayon::prelude::*;

use super::{DataSource, LabConfig, VariantResult};
use crate::error::Result;
use crate::tabular::dataset::{self, Scaler, Scaling, Table};
use crate::tabular::fit::{self, FitConfig, Regularize, Tensors};
use crate::tabular::mlp::{Mlp, MlpConfig};
use crate::train::early_stop::{EarlyStoppingConfig, Mode};

/// One seed's data: the split, scaled with the training part's statistics.
#[derive(Clone)]
pub(super) struct Prepared {
    pub train: Table,
    pub val: Table,
    pub scaler: Scaler,
    pub name: String,
    pub seed: u64,
}

/// The seeds of a lab: `--seed`, `--seed + 1`, … (`--seeds` of them).
pub(super) fn seeds(cfg: &LabConfig) -> Vec<u64> {
    (0..cfg.seeds as u64).map(|k| cfg.fit.seed.wrapping_add(k)).collect()
}

/// The data split (and, for generated data, drawn) once per seed.
pub(super) fn load_seeds(source: &DataSource, cfg: &LabConfig, scaling: Scaling) -> Result<Vec<Prepared>> {
    seeds(cfg)
        .into_iter()
        .map(|seed| load(source, cfg, scaling, seed))
        .collect()
}

fn load(source: &DataSource, cfg: &LabConfig, scaling: Scaling, seed: u64) -> Result<Prepared> {
    let t = match source {
        DataSource::Csv {
            path,
            target,
            drop,
            task,
        } => dataset::read_csv(path, target, drop, *task)?,
        DataSource::Builtin { kind, n, noise } => dataset::builtin(*kind, *n, *noise, seed),
    };
    let (train, val) = dataset::split(&t, cfg.val_split, seed)?;
    let scaler = Scaler::fit(scaling, &train);
    let scaling_name = match scaling {
        Scaling::None => "none",
        Scaling::Standard => "standard",
        Scaling::Minmax => "minmax",
    };
    Ok(Prepared {
        name: format!(
            "{} ({} train / {} validation rows, {} features, scaling {scaling_name})",
            t.name,
            train.rows(),
            val.rows(),
            t.dims(),
        ),
        train: scaler.apply(&train),
        val: scaler.apply(&val),
        scaler,
        seed,
    })
}

/// The default network of the flags on this data.
pub(super) fn base_mlp(cfg: &LabConfig, p: &Prepared) -> MlpConfig {
    MlpConfig {
        inputs: p.train.dims(),
        layers: cfg.layers.clone(),
        outputs: p.train.outputs(),
        activation: cfg.activation,
        dropout: cfg.dropout,
        norm: cfg.norm,
        norm_defaults: cfg.norm_defaults,
        init: cfg.init,
    }
}

/// Which layers L1/L2 reach, for captions.
pub(super) fn regularized_layers(cfg: &LabConfig) -> &'static str {
    match cfg.fit.regularize {
        Regularize::Hidden => "L1/L2 penalties, where used, reach the hidden layers' kernels (`--regularize hidden`).",
        Regularize::All => "L1/L2 penalties, where used, reach every layer's kernel (`--regularize all`).",
    }
}

/// Early stopping as the labs use it: validation loss, `--patience`, best weights restored.
pub(super) fn early_stopping(cfg: &LabConfig) -> EarlyStoppingConfig {
    EarlyStoppingConfig {
        monitor: "val_loss".into(),
        patience: cfg.patience,
        min_delta: 0.0,
        baseline: None,
        start_from_epoch: 0,
        restore_best_weights: true,
        mode: Mode::Auto,
    }
}

/// One variant to train.
#[derive(Clone)]
pub(super) struct Variant {
    pub name: String,
    pub mlp: MlpConfig,
    pub fit: FitConfig,
}

impl Variant {
    pub fn new(name: impl Into<String>, mlp: MlpConfig, fit: FitConfig) -> Self {
        Variant {
            name: name.into(),
            mlp,
            fit,
        }
    }
}

/// One seed of one variant.
pub(super) struct SeedRun {
    pub v: VariantResult,
    pub model: Mlp,
}

/// A variant trained on every seed.
pub(super) struct Trained {
    pub runs: Vec<SeedRun>,
}

impl Trained {
    /// The first seed's model (the one plots draw).
    pub fn model(&self) -> &Mlp {
        &self.runs[0].model
    }

    /// Means over the seeds, their standard deviations in `sd`, the first seed's history. A figure that is not
    /// finite for some seeds (an epoch count never reached) is averaged over the seeds where it is.
    pub fn summary(&self) -> VariantResult {
        let first = &self.runs[0].v;
        let mut out = first.clone();
        out.seeds = self.runs.iter().map(|r| r.v.seeds[0]).collect();
        let keys = VariantResult::FIELDS
            .iter()
            .map(|k| k.to_string())
            .chain(first.extra.keys().cloned())
            .collect::<Vec<_>>();
        for key in keys {
            let values: Vec<f64> = self
                .runs
                .iter()
                .filter_map(|r| r.v.get(&key))
                .filter(|v| v.is_finite())
                .collect();
            let (mean, sd) = mean_sd(&values);
            out.set(&key, mean);
            out.sd.insert(key, sd);
        }
        out
    }
}

/// Mean and sample standard deviation (0 for one value; NaN mean for none).
pub(super) fn mean_sd(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// Summaries of several trained variants.
pub(super) fn summaries(trained: &[Trained]) -> Vec<VariantResult> {
    trained.iter().map(Trained::summary).collect()
}

/// Trains every variant on every seed's data, in parallel (each fit is single-threaded and seeded: the results do
/// not depend on the scheduling). Seed k of every variant uses split k and initialisation seed k.
pub(super) fn train_all(data: &[Prepared], variants: Vec<Variant>) -> Result<Vec<Trained>> {
    let jobs: Vec<(usize, usize)> = (0..variants.len())
        .flat_map(|v| (0..data.len()).map(move |s| (v, s)))
        .collect();
    let mut runs: Vec<(usize, SeedRun)> = jobs
        .into_par_iter()
        .map(|(vi, si)| Ok((vi, train_one(&data[si], &variants[vi])?)))
        .collect::<Result<_>>()?;
    let mut trained: Vec<Trained> = variants.iter().map(|_| Trained { runs: Vec::new() }).collect();
    // into_par_iter().collect() keeps the job order: variant-major, seeds in order.
    for (vi, r) in runs.drain(..) {
        trained[vi].runs.push(r);
    }
    Ok(trained)
}

fn train_one(p: &Prepared, var: &Variant) -> Result<SeedRun> {
    let dev = Device::Cpu;
    let train = Tensors::new(&p.train, &dev)?;
    let val = Tensors::new(&p.val, &dev)?;
    let fit_cfg = FitConfig {
        seed: p.seed,
        ..var.fit.clone()
    };
    let model = Mlp::new(var.mlp.clone(), p.seed, &dev)?;
    let f = fit::fit(model, &train, &val, &fit_cfg)?;
    let (best_epoch, best_val_loss) = f
        .history
        .iter()
        .map(|r| (r.epoch, r.val_loss))
        .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
    let mut extra = BTreeMap::new();
    for (l, g) in f.first_epoch_grad_norms.iter().enumerate() {
        extra.insert(format!("grad_norm_layer{}", l + 1), *g);
    }
    if let Some(s) = f.stopped_epoch {
        extra.insert("stopped_epoch".into(), s as f64);
    }
    if let Some(r) = f.restored_epoch {
        extra.insert("restored_epoch".into(), r as f64);
    }
    let ((train_loss, train_metric), (val_loss, val_metric)) = (f.final_train, f.final_val);
    extra.insert("gap_loss".into(), val_loss - train_loss);
    extra.insert("gap_metric".into(), train_metric - val_metric);
    Ok(SeedRun {
        v: VariantResult {
            variant: var.name.clone(),
            model: var.mlp.describe(),
            data: p.name.clone(),
            epochs_run: f.history.len() as f64,
            best_epoch: best_epoch as f64,
            best_val_loss,
            train_loss,
            val_loss,
            train_metric,
            val_metric,
            extra,
            seeds: vec![p.seed],
            sd: BTreeMap::new(),
            history: f.history,
        },
        model: f.model,
    })
}

/// The kernel weights that L1/L2 reach under `regularize` (the hidden layers', or every layer's).
pub(super) fn regularized_weights(m: &Mlp, regularize: Regularize) -> Result<Vec<f32>> {
    let mut kernels = m.kernels();
    if regularize == Regularize::Hidden {
        kernels.pop();
    }
    let mut w = Vec::new();
    for k in kernels {
        w.extend(k.as_tensor().flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(w)
}

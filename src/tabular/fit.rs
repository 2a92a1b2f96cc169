//! Training an MLP on a table: mini-batches shuffled per epoch with the seed, the shared optimizers, losses and
//! early stopping of the image trainer.

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::dataset::{Table, Task};
use super::mlp::Mlp;
use crate::data::loader::mix;
use crate::error::{Error, Result};
use crate::train::callbacks::{check_loss, Callbacks};
use crate::train::early_stop::{EarlyStopping, EarlyStoppingConfig, Mode};
use crate::train::fit_loop::{self, Batches, Checkpointing, Ending, Interrupter, Learner, Monitored};
use crate::train::loss;
use crate::train::monitor::Monitor;
use crate::train::optim::{OptimConfig, Optimizer};

/// Which Dense kernels the L1/L2 penalty reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Regularize {
    /// The hidden layers only, as the course's Keras code puts `kernel_regularizer` on the hidden `Dense` layers.
    #[default]
    Hidden,
    /// Every Dense layer, the output layer too.
    All,
}

/// Training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub optimizer: OptimConfig,
    pub l1: f64,
    pub l2: f64,
    /// Which kernels `l1` and `l2` reach.
    #[serde(default)]
    pub regularize: Regularize,
    pub early_stopping: Option<EarlyStoppingConfig>,
    pub seed: u64,
}

impl FitConfig {
    /// The kernels the penalty applies to.
    fn regularized(&self, model: &Mlp) -> Vec<candle_core::Var> {
        let mut k = model.kernels();
        if self.regularize == Regularize::Hidden {
            k.pop();
        }
        k
    }
}

/// One epoch: losses include the L1/L2 penalty (as Keras reports them); `metric` is accuracy for classification,
/// mean squared error for regression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRow {
    pub epoch: usize,
    pub loss: f64,
    pub data_loss: f64,
    pub val_loss: f64,
    pub val_data_loss: f64,
    pub metric: f64,
    pub val_metric: f64,
}

impl EpochRow {
    /// A figure by its Keras name, as `--monitor` spells it (the metric is accuracy or, for regression, MSE).
    pub fn get(&self, name: &str) -> Option<f64> {
        Some(match name {
            "loss" => self.loss,
            "data_loss" => self.data_loss,
            "val_loss" => self.val_loss,
            "val_data_loss" => self.val_data_loss,
            "accuracy" => self.metric,
            "val_accuracy" => self.val_metric,
            _ => return None,
        })
    }
}

/// The outcome of [`fit`].
pub struct Fit {
    pub model: Mlp,
    pub history: Vec<EpochRow>,
    /// 1-based epoch where early stopping stopped.
    pub stopped_epoch: Option<usize>,
    /// 1-based epoch whose weights were restored at the end.
    pub restored_epoch: Option<usize>,
    /// Mean L2 norm of each Dense kernel's gradient over the first epoch's steps (hidden layers, then output).
    pub first_epoch_grad_norms: Vec<f64>,
    /// After the last epoch (or the restore): train and validation loss (with penalty) and metric.
    pub final_train: (f64, f64),
    pub final_val: (f64, f64),
}

/// A table as tensors: features `[N, D]`, targets (class indices u32, or values `[N, 1]` f32).
pub struct Tensors {
    pub x: Tensor,
    pub y_class: Vec<u32>,
    pub y_value: Tensor,
    pub task: Task,
}

impl Tensors {
    pub fn new(t: &Table, device: &Device) -> Result<Self> {
        Ok(Tensors {
            x: Tensor::from_vec(t.x.clone(), (t.rows(), t.dims()), device)?,
            y_class: t.y.iter().map(|&v| v as u32).collect(),
            y_value: Tensor::from_vec(t.y.clone(), (t.rows(), 1), device)?,
            task: t.task,
        })
    }
    pub fn rows(&self) -> usize {
        self.y_class.len()
    }
}

/// Data loss of outputs against the targets of rows `idx` (all rows when `None`).
fn data_loss(out: &Tensor, t: &Tensors, idx: Option<&[usize]>) -> Result<Tensor> {
    match t.task {
        Task::Classification => {
            let labels: Vec<u32> = match idx {
                Some(i) => i.iter().map(|&k| t.y_class[k]).collect(),
                None => t.y_class.clone(),
            };
            loss::data_loss(out, &labels)
        }
        Task::Regression => {
            let y = match idx {
                Some(i) => t.y_value.index_select(
                    &Tensor::from_vec(i.iter().map(|&k| k as u32).collect::<Vec<_>>(), i.len(), out.device())?,
                    0,
                )?,
                None => t.y_value.clone(),
            };
            Ok((out - y)?.sqr()?.mean_all()?)
        }
    }
}

fn metric(out: &Tensor, t: &Tensors) -> Result<f64> {
    Ok(match t.task {
        Task::Classification => loss::correct(out, &t.y_class)? as f64 / t.rows().max(1) as f64,
        Task::Regression => (out - &t.y_value)?.sqr()?.mean_all()?.to_scalar::<f32>()? as f64,
    })
}

fn penalty_value(model: &Mlp, cfg: &FitConfig) -> Result<f64> {
    Ok(loss::penalty(&cfg.regularized(model), cfg.l1, cfg.l2)?
        .map(|p| p.to_scalar::<f32>())
        .transpose()?
        .unwrap_or(0.0) as f64)
}

/// (loss with penalty, data loss, metric) of the model in inference mode on a whole table.
pub fn evaluate(model: &Mlp, t: &Tensors, cfg: &FitConfig) -> Result<(f64, f64, f64)> {
    let f = model.forward(&t.x, None)?;
    let dl = data_loss(&f.out, t, None)?.to_scalar::<f32>()? as f64;
    Ok((dl + penalty_value(model, cfg)?, dl, metric(&f.out, t)?))
}

/// Trains `model` on `train`, watching `val`, in the shared loop ([`crate::train::fit_loop`]).
pub fn fit(model: Mlp, train: &Tensors, val: &Tensors, cfg: &FitConfig) -> Result<Fit> {
    if cfg.batch_size == 0 || cfg.epochs == 0 {
        return Err(Error::invalid("--epochs and --batch-size must be at least 1"));
    }
    let monitor = match &cfg.early_stopping {
        Some(es) => Monitor::parse(&es.monitor, es.mode)?,
        None => Monitor::parse("val_loss", Mode::Auto)?,
    };
    let mut run = TabularRun {
        opt: Optimizer::new(cfg.optimizer.clone(), model.vars())?,
        callbacks: Callbacks {
            early_stopping: cfg.early_stopping.clone().map(EarlyStopping::new).transpose()?,
            ..Callbacks::default()
        },
        grad_norms: vec![0f64; model.kernels().len()],
        model,
        train,
        val,
        cfg,
        best_snapshot: None,
        history: Vec::new(),
        first_steps: 0,
        sums: (0.0, 0.0, 0.0),
        restored: None,
    };
    let ending = fit_loop::fit(&mut run, &monitor, cfg.epochs, Interrupter::default())?;
    let (tl, _, tm) = evaluate(&run.model, train, cfg)?;
    let (vl, _, vm) = evaluate(&run.model, val, cfg)?;
    Ok(Fit {
        history: run.history,
        stopped_epoch: match ending {
            Ending::EarlyStopped(e) => Some(e),
            _ => None,
        },
        restored_epoch: run.restored,
        first_epoch_grad_norms: run
            .grad_norms
            .iter()
            .map(|g| g / run.first_steps.max(1) as f64)
            .collect(),
        final_train: (tl, tm),
        final_val: (vl, vm),
        model: run.model,
    })
}

/// The MLP on a table as a [`Learner`] of the shared loop.
struct TabularRun<'a> {
    model: Mlp,
    train: &'a Tensors,
    val: &'a Tensors,
    cfg: &'a FitConfig,
    opt: Optimizer,
    callbacks: Callbacks,
    /// The weights of the best epoch, for restore_best_weights.
    best_snapshot: Option<Vec<Tensor>>,
    history: Vec<EpochRow>,
    /// Summed L2 norms of each kernel's gradient over the first epoch's steps.
    grad_norms: Vec<f64>,
    first_steps: usize,
    /// The epoch in progress: Σ loss, Σ data loss, Σ correct (classification) or squared error (regression).
    sums: (f64, f64, f64),
    restored: Option<usize>,
}

impl Checkpointing for TabularRun<'_> {
    type Record = EpochRow;

    fn keep_best(&mut self, _epoch: usize, _monitor: &Monitor, _value: Option<f64>) -> Result<()> {
        if self
            .callbacks
            .early_stopping
            .as_ref()
            .is_some_and(|e| e.config.restore_best_weights)
        {
            self.best_snapshot = Some(self.model.snapshot()?);
        }
        Ok(())
    }

    fn epoch_done(&mut self, _epoch: usize, record: EpochRow, _last: bool) -> Result<()> {
        self.history.push(record);
        Ok(())
    }

    fn interrupted(&mut self, _epoch: usize) -> Result<()> {
        Ok(())
    }

    fn restore_best(&mut self, epoch: usize) -> Result<()> {
        if let Some(snap) = &self.best_snapshot {
            self.model.restore(snap)?;
            self.restored = Some(epoch + 1);
        }
        Ok(())
    }
}

impl Learner for TabularRun<'_> {
    fn next_epoch(&self) -> usize {
        0
    }

    fn callbacks(&mut self) -> &mut Callbacks {
        &mut self.callbacks
    }

    /// Mini-batches in an order shuffled per epoch with the seed (a lab is not interrupted between batches).
    fn train_epoch(&mut self, epoch: usize, _: Interrupter) -> Result<Batches> {
        let (cfg, train) = (self.cfg, self.train);
        let device = train.x.device().clone();
        let mut order: Vec<usize> = (0..train.rows()).collect();
        order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(
            mix(cfg.seed) ^ mix(epoch as u64 + 7),
        ));
        self.sums = (0.0, 0.0, 0.0);
        for (b, idx) in order.chunks(cfg.batch_size).enumerate() {
            let ids = Tensor::from_vec(idx.iter().map(|&i| i as u32).collect::<Vec<_>>(), idx.len(), &device)?;
            let x = train.x.index_select(&ids, 0)?;
            let f = self
                .model
                .forward(&x, Some(mix(mix(cfg.seed ^ 0xF17) ^ mix(epoch as u64)) ^ b as u64))?;
            let dl = data_loss(&f.out, train, Some(idx))?;
            let total = match loss::penalty(&cfg.regularized(&self.model), cfg.l1, cfg.l2)? {
                Some(p) => (&dl + p)?,
                None => dl.clone(),
            };
            let (tv, dv) = (total.to_scalar::<f32>()? as f64, dl.to_scalar::<f32>()? as f64);
            check_loss(tv, epoch, b, self.opt.lr(), None)?;
            let grads = total.backward()?;
            if epoch == 0 {
                for (k, v) in self.model.kernels().iter().enumerate() {
                    if let Some(g) = grads.get(v.as_tensor()) {
                        self.grad_norms[k] += g.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt() as f64;
                    }
                }
                self.first_steps += 1;
            }
            self.opt.step(&grads)?;
            let m = idx.len() as f64;
            self.sums.0 += tv * m;
            self.sums.1 += dv * m;
            self.sums.2 += match train.task {
                Task::Classification => {
                    let labels: Vec<u32> = idx.iter().map(|&i| train.y_class[i]).collect();
                    loss::correct(&f.out, &labels)? as f64
                }
                Task::Regression => dv * m,
            };
        }
        Ok(Batches::Done)
    }

    fn record(&mut self, epoch: usize) -> Result<EpochRow> {
        let n = self.train.rows() as f64;
        let (vl, vdl, vm) = evaluate(&self.model, self.val, self.cfg)?;
        Ok(EpochRow {
            epoch: epoch + 1,
            loss: self.sums.0 / n,
            data_loss: self.sums.1 / n,
            val_loss: vl,
            val_data_loss: vdl,
            metric: self.sums.2 / n,
            val_metric: vm,
        })
    }

    fn lr(&self) -> f64 {
        self.opt.lr()
    }

    fn set_lr(&mut self, lr: f64) {
        self.opt.set_lr(lr);
    }

    fn log(&mut self, _line: &str) {}
}

impl Monitored for EpochRow {
    fn metric(&self, name: &str) -> Option<f64> {
        self.get(name)
    }
}

/// Fraction of each hidden layer's units that are never active on `t` (pre-activation ≤ 0 for every row).
pub fn dead_fractions(model: &Mlp, t: &Tensors) -> Result<Vec<f64>> {
    let f = model.forward(&t.x, None)?;
    f.pre
        .iter()
        .map(|z| {
            let maxes = z.max(0)?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            Ok(maxes.iter().filter(|&&m| m <= 0.0).count() as f64 / maxes.len().max(1) as f64)
        })
        .collect()
}

/// Predictions in inference mode: class probabilities `[N, K]` (K ≥ 2) or values `[N]`.
pub fn predict(model: &Mlp, x: &Tensor, task: Task) -> Result<Vec<Vec<f32>>> {
    let out = model.forward(x, None)?.out;
    Ok(match task {
        Task::Regression => out.to_vec2::<f32>()?,
        Task::Classification => crate::model::head::Head::probabilities(&out)?.to_vec2::<f32>()?,
    })
}

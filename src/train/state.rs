//! Where a run stands: the progress saved in `last.safetensors` (`TrainState`) and what `--resume` continues
//! from (`Resume`).

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::callbacks::Callbacks;
use super::config::TrainConfig;
use super::early_stop::EarlyStopping;
use super::history::History;
use super::loss_scale::LossScaler;
use super::optim::ReduceLrOnPlateau;
use crate::error::Result;
use crate::model::classifier::ModelMeta;

/// Progress of an interrupted or finished run (stored in `last.safetensors` as `train_state`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Epoch in progress (0-based) when `batches_done > 0`, else the next epoch to run.
    pub epoch: usize,
    pub batches_done: usize,
    /// Running sums of the epoch in progress.
    pub sum_data_loss: f64,
    pub sum_penalty: f64,
    pub correct: usize,
    pub seen: usize,
    pub seconds: f64,
    pub optimizer_steps: u64,
    pub lr: f64,
    /// Early stopping, reduce-on-plateau and the best epoch (flattened: the saved JSON keeps its field names).
    #[serde(flatten)]
    pub callbacks: Callbacks,
    pub finished: bool,
    /// fp16's loss scaler (absent in other precisions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scaler: Option<LossScaler>,
}

/// The most epochs a saved state may claim; a larger count is a damaged or hand-edited file.
const MAX_SAVED_EPOCHS: usize = 1_000_000;

impl TrainState {
    /// The state of a run that has not started: epoch 0, the configured learning rate, new callbacks.
    pub fn fresh(cfg: &TrainConfig) -> Result<Self> {
        let reduce_lr = match &cfg.reduce_lr {
            Some(r) => Some(ReduceLrOnPlateau::new(
                &cfg.monitor()?.name,
                r.factor,
                r.patience,
                r.min_lr,
            )?),
            None => None,
        };
        Ok(TrainState {
            epoch: 0,
            batches_done: 0,
            sum_data_loss: 0.0,
            sum_penalty: 0.0,
            correct: 0,
            seen: 0,
            seconds: 0.0,
            optimizer_steps: 0,
            lr: cfg.optimizer.lr,
            callbacks: Callbacks {
                early_stopping: cfg.early_stopping.clone().map(EarlyStopping::new).transpose()?,
                reduce_lr,
                best: Default::default(),
            },
            finished: false,
            loss_scaler: cfg.loss_scaling.map(LossScaler::new),
        })
    }

    /// Checks a state read back from a checkpoint against what a run with batches of `batch_size` can have
    /// saved: a learning rate that is finite and not negative, `correct ≤ seen ≤ batches × batch_size`, finite
    /// non-negative sums, a sane epoch count. `Err` says which value is impossible.
    pub fn check(&self, batch_size: usize) -> std::result::Result<(), String> {
        let finite_non_negative = |x: f64| x.is_finite() && x >= 0.0;
        let problem = if !finite_non_negative(self.lr) {
            format!("learning rate {}", self.lr)
        } else if self.correct > self.seen {
            format!("{} correct of {} seen", self.correct, self.seen)
        } else if self.seen > self.batches_done.saturating_mul(batch_size.max(1)) {
            format!(
                "{} images seen in {} batches of {batch_size}",
                self.seen, self.batches_done
            )
        } else if let Some(problem) = self.loss_scaler.as_ref().and_then(LossScaler::problem) {
            problem
        } else if self.epoch > MAX_SAVED_EPOCHS {
            format!("epoch {}", self.epoch)
        } else if ![self.sum_data_loss, self.sum_penalty, self.seconds]
            .into_iter()
            .all(finite_non_negative)
        {
            format!(
                "running sums loss {}, penalty {}, seconds {}",
                self.sum_data_loss, self.sum_penalty, self.seconds
            )
        } else {
            return Ok(());
        };
        Err(format!("its train_state is not one a run can save ({problem})"))
    }

    /// `epoch` (0-based) is next: the running sums start again.
    pub(super) fn start_next_epoch(&mut self, epoch: usize, optimizer_steps: u64, lr: f64) {
        self.epoch = epoch;
        self.batches_done = 0;
        self.sum_data_loss = 0.0;
        self.sum_penalty = 0.0;
        self.correct = 0;
        self.seen = 0;
        self.seconds = 0.0;
        self.optimizer_steps = optimizer_steps;
        self.lr = lr;
    }
}

/// What `--resume` continues from: `last.safetensors` as loaded and checked.
pub struct Resume {
    pub checkpoint: PathBuf,
    /// The model the checkpoint says it holds (compared with the configuration and data before continuing).
    pub meta: ModelMeta,
    pub tensors: HashMap<String, Tensor>,
    pub state: TrainState,
    pub history: History,
}

//! Early stopping with Keras 3 `EarlyStopping` semantics, used by the image trainer and the tabular labs.
//!
//! Per epoch: epochs before `start_from_epoch` are ignored; `wait` goes up by one; an improvement (better than
//! the best by more than `min_delta`) records the best epoch and resets `wait` only if the value also beats
//! `baseline`; otherwise training stops once `wait ≥ patience` (never on epoch 0). With `restore_best_weights`
//! the best epoch's weights are restored at the end of training, whether or not it stopped early.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Direction of improvement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `min` for names ending in "loss", `max` otherwise (accuracy, auc…).
    #[default]
    Auto,
    Min,
    Max,
}

impl Mode {
    /// Resolves `auto` for a metric name, as Keras does.
    pub fn resolve(self, monitor: &str) -> Mode {
        match self {
            Mode::Auto => {
                if monitor.ends_with("loss") || monitor.contains("error") {
                    Mode::Min
                } else {
                    Mode::Max
                }
            }
            m => m,
        }
    }
}

/// The arguments of `EarlyStopping`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStoppingConfig {
    pub monitor: String,
    pub patience: usize,
    pub min_delta: f64,
    pub baseline: Option<f64>,
    pub start_from_epoch: usize,
    pub restore_best_weights: bool,
    pub mode: Mode,
}

impl Default for EarlyStoppingConfig {
    fn default() -> Self {
        EarlyStoppingConfig {
            monitor: "val_loss".into(),
            patience: 0,
            min_delta: 0.0,
            baseline: None,
            start_from_epoch: 0,
            restore_best_weights: false,
            mode: Mode::Auto,
        }
    }
}

/// What the callback says after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The monitored value improved on the best so far (the weights of this epoch are the best).
    pub improved: bool,
    /// Stop training after this epoch.
    pub stop: bool,
}

/// The callback's state (serialisable, so that a resumed run continues it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    pub config: EarlyStoppingConfig,
    pub wait: usize,
    pub best: Option<f64>,
    pub best_epoch: usize,
    /// The epoch whose weights are held for restoring (set once monitoring starts, with restore_best_weights).
    pub best_weights_epoch: Option<usize>,
    pub stopped_epoch: Option<usize>,
}

impl EarlyStopping {
    pub fn new(config: EarlyStoppingConfig) -> Result<Self> {
        if !config.min_delta.is_finite() {
            return Err(Error::invalid("--min-delta must be a finite number"));
        }
        Ok(EarlyStopping {
            config,
            wait: 0,
            best: None,
            best_epoch: 0,
            best_weights_epoch: None,
            stopped_epoch: None,
        })
    }

    fn is_improvement(&self, value: f64, reference: Option<f64>) -> bool {
        let Some(r) = reference else { return true };
        let d = self.config.min_delta.abs();
        match self.config.mode.resolve(&self.config.monitor) {
            Mode::Max => value - d > r,
            _ => value + d < r,
        }
    }

    /// Feeds the monitored value of epoch `epoch` (zero-based); `None` when the metric is missing.
    pub fn on_epoch_end(&mut self, epoch: usize, value: Option<f64>) -> Decision {
        let none = Decision {
            improved: false,
            stop: false,
        };
        let Some(v) = value else { return none };
        if epoch < self.config.start_from_epoch || v.is_nan() {
            return none;
        }
        let mut improved = false;
        if self.config.restore_best_weights && self.best_weights_epoch.is_none() {
            // The first monitored epoch's weights are the best until something beats them.
            self.best_weights_epoch = Some(epoch);
            self.best_epoch = epoch;
            improved = true;
        }
        self.wait += 1;
        if self.is_improvement(v, self.best) {
            self.best = Some(v);
            self.best_epoch = epoch;
            if self.config.restore_best_weights {
                self.best_weights_epoch = Some(epoch);
            }
            if self.config.baseline.is_none() || self.is_improvement(v, self.config.baseline) {
                self.wait = 0;
            }
            return Decision {
                improved: true,
                stop: false,
            };
        }
        if self.wait >= self.config.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            return Decision { improved, stop: true };
        }
        Decision { improved, stop: false }
    }

    /// A new `fit` on this callback (Keras resets `wait` in `on_train_begin`): patience counts from zero again.
    /// The best value and epoch stay, so only a better epoch replaces them.
    pub fn start_new_fit(&mut self) {
        self.wait = 0;
        self.stopped_epoch = None;
    }

    /// The epoch whose weights are restored at the end of training (Keras 3 restores even without an early stop).
    pub fn restore_epoch(&self) -> Option<usize> {
        if self.config.restore_best_weights {
            self.best_weights_epoch
        } else {
            None
        }
    }
}

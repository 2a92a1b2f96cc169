//! What every training loop does after an epoch and around a step, once: the best checkpoint (Keras'
//! `ModelCheckpoint(save_best_only=True)`), early stopping and reduce-on-plateau on one typed [`Monitor`], and the
//! guard against a loss that is no longer a number. The image trainer and the tabular fit both drive these.

use serde::{Deserialize, Serialize};

use super::early_stop::EarlyStopping;
use super::monitor::Monitor;
use super::optim::ReduceLrOnPlateau;
use crate::error::Error;

/// Keras' `ModelCheckpoint(save_best_only=True)` on the monitor: which epoch's weights are the best so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BestCheckpoint {
    /// The best monitored value so far.
    #[serde(rename = "best_value")]
    pub value: Option<f64>,
    /// Its 0-based epoch: the epoch of the best checkpoint.
    #[serde(rename = "best_epoch")]
    pub epoch: Option<usize>,
}

impl BestCheckpoint {
    /// Whether epoch `epoch`, with monitored `value`, is the new best. `early_stopping` is early stopping's verdict
    /// when it is on: it decides (min_delta, baseline, start_from_epoch), so that restore_best_weights restores the
    /// epoch this checkpoint holds. Without it, any better value is.
    pub fn observe(
        &mut self,
        monitor: &Monitor,
        epoch: usize,
        value: Option<f64>,
        early_stopping: Option<bool>,
    ) -> bool {
        let improved = early_stopping.unwrap_or_else(|| value.is_some_and(|v| monitor.better(v, self.value)));
        if improved {
            self.value = value;
            self.epoch = Some(epoch);
        }
        improved
    }
}

/// The end-of-epoch callbacks and their state (saved with a run, so that a resumed run continues them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Callbacks {
    pub early_stopping: Option<EarlyStopping>,
    pub reduce_lr: Option<ReduceLrOnPlateau>,
    /// Flattened: a saved run's JSON keeps `best_value` and `best_epoch` at the top.
    #[serde(flatten)]
    pub best: BestCheckpoint,
}

/// What the callbacks decided after an epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochDecision {
    /// This epoch is the best so far: keep its weights.
    pub improved: bool,
    /// Early stopping says stop.
    pub stop: bool,
    /// Reduce-on-plateau's new learning rate.
    pub new_lr: Option<f64>,
}

impl Callbacks {
    /// Feeds epoch `epoch`'s monitored `value`. With early stopping on, its notion of improvement (min_delta,
    /// baseline, start_from_epoch) decides the best epoch, so that restore_best_weights restores that epoch's
    /// weights; without, any better value does.
    pub fn on_epoch_end(&mut self, monitor: &Monitor, epoch: usize, value: Option<f64>, lr: f64) -> EpochDecision {
        let es = self.early_stopping.as_mut().map(|es| es.on_epoch_end(epoch, value));
        let improved = self.best.observe(monitor, epoch, value, es.map(|d| d.improved));
        let stop = es.is_some_and(|d| d.stop);
        let new_lr = self.reduce_lr.as_mut().and_then(|rl| rl.on_epoch_end(value, lr));
        EpochDecision { improved, stop, new_lr }
    }

    /// The epoch whose weights go back into the model when training ends (restore_best_weights).
    pub fn restore_epoch(&self) -> Option<usize> {
        self.early_stopping.as_ref().and_then(|es| es.restore_epoch())
    }

    /// A new `fit` on a finished run: patience counts from zero again; the best so far stays.
    pub fn start_new_fit(&mut self) {
        if let Some(es) = self.early_stopping.as_mut() {
            es.start_new_fit();
        }
    }

    pub fn patience(&self) -> usize {
        self.early_stopping.as_ref().map_or(0, |e| e.config.patience)
    }
}

/// The NaN guard: `Ok` while the batch's loss is finite, else the error that stops training, saying where it
/// happened, what was kept (`kept`, when the loop has a checkpoint to speak of) and what to try.
pub fn check_loss(loss: f64, epoch: usize, batch: usize, lr: f64, kept: Option<&str>) -> Result<(), Error> {
    if loss.is_finite() {
        return Ok(());
    }
    Err(Error::Other(format!(
        "the loss became {loss} at epoch {}, batch {}: training stopped{}. Try a lower --lr (now {lr:e}), or \
         --optimizer adam",
        epoch + 1,
        batch + 1,
        kept.map(|k| format!("; {k}")).unwrap_or_default()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::early_stop::{EarlyStoppingConfig, Mode};

    #[test]
    fn without_early_stopping_any_better_value_is_the_best_and_with_it_min_delta_decides() {
        let loss = Monitor::parse("loss", Mode::Auto).unwrap();
        let mut plain = Callbacks::default();
        let improved: Vec<bool> = [1.0, 0.9, 0.95, 0.899]
            .iter()
            .enumerate()
            .map(|(e, v)| plain.on_epoch_end(&loss, e, Some(*v), 1e-3).improved)
            .collect();
        assert_eq!(improved, [true, true, false, true]);
        assert_eq!(plain.best.epoch, Some(3));

        let es = EarlyStoppingConfig {
            monitor: "loss".into(),
            patience: 1,
            min_delta: 0.05,
            ..EarlyStoppingConfig::default()
        };
        let mut with = Callbacks {
            early_stopping: Some(EarlyStopping::new(es).unwrap()),
            ..Callbacks::default()
        };
        let a = with.on_epoch_end(&loss, 0, Some(1.0), 1e-3);
        let b = with.on_epoch_end(&loss, 1, Some(0.97), 1e-3);
        assert!(a.improved && !b.improved && b.stop, "{a:?} {b:?}");
        assert_eq!(with.best.epoch, Some(0));
    }

    #[test]
    fn the_best_checkpoint_follows_the_monitors_direction_or_early_stoppings_verdict() {
        let acc = Monitor::parse("val_accuracy", Mode::Auto).unwrap();
        let mut best = BestCheckpoint::default();
        assert!(best.observe(&acc, 0, Some(0.6), None));
        assert!(!best.observe(&acc, 1, Some(0.5), None));
        assert!(best.observe(&acc, 2, Some(0.7), None));
        assert!(!best.observe(&acc, 3, None, None), "a missing value is never the best");
        // Early stopping's verdict wins, even over a better value.
        assert!(!best.observe(&acc, 4, Some(0.9), Some(false)));
        assert_eq!((best.epoch, best.value), (Some(2), Some(0.7)));
        let json = serde_json::to_value(Callbacks {
            best,
            ..Callbacks::default()
        })
        .unwrap();
        assert_eq!(json["best_epoch"], 2, "saved runs keep the flat field names: {json}");
    }

    #[test]
    fn a_non_finite_loss_names_epoch_batch_and_learning_rate() {
        assert!(check_loss(0.7, 0, 0, 1e-3, None).is_ok());
        let e = check_loss(f64::NAN, 2, 4, 1e-3, Some("last.safetensors holds epoch 2"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("epoch 3, batch 5") && e.contains("--lr (now 1e-3)") && e.contains("holds epoch 2"),
            "{e}"
        );
    }
}

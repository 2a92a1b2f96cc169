//! The training loop, once, for every model catdog trains (burn-train's learner and Keras' `fit` are the models):
//! epochs of batches, then the shared end-of-epoch [`Callbacks`] on one [`Monitor`], then what the model keeps
//! (history, checkpoints). What differs between the image trainer and the tabular fit — how batches are made,
//! where the best weights go — is the [`Learner`] each implements.

use super::callbacks::Callbacks;
use super::monitor::Monitor;
use crate::error::Result;

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// All epochs ran.
    Completed,
    /// Early stopping stopped after this epoch (1-based).
    EarlyStopped(usize),
    /// Ctrl-C: the learner saved the state to resume from.
    Interrupted,
}

/// How an epoch's batches ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batches {
    Done,
    Interrupted,
}

/// A record of one epoch that the monitor can read.
pub trait Monitored {
    /// A figure by its Keras name (`loss`, `val_loss`, `val_accuracy`…).
    fn metric(&self, name: &str) -> Option<f64>;
}

/// What a model brings to [`fit`].
pub trait Learner {
    type Record: Monitored;

    /// The 0-based epoch to run next (later than 0 when a run resumes).
    fn next_epoch(&self) -> usize;
    /// The end-of-epoch callbacks and their state.
    fn callbacks(&mut self) -> &mut Callbacks;
    /// Trains the batches of `epoch` (from where a resumed run left off).
    fn train_epoch(&mut self, epoch: usize) -> Result<Batches>;
    /// After the batches: validation and the epoch's figures.
    fn record(&mut self, epoch: usize) -> Result<Self::Record>;
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// The weights of `epoch` are the best so far: keep them (a file, a snapshot).
    fn keep_best(&mut self, epoch: usize, monitor: &Monitor, value: Option<f64>) -> Result<()>;
    /// The epoch is over: keep its record and what a resumed run needs; `last` says no epoch follows.
    fn epoch_done(&mut self, epoch: usize, record: Self::Record, last: bool) -> Result<()>;
    /// Stopped inside `epoch`: keep what a resumed run needs.
    fn interrupted(&mut self, epoch: usize) -> Result<()>;
    /// Whether a stop was asked for between epochs (Ctrl-C, SIGTERM).
    fn stop_requested(&self) -> bool;
    /// Puts the weights kept for `epoch` back (early stopping's restore_best_weights).
    fn restore_best(&mut self, epoch: usize) -> Result<()>;
    /// A line for the user (reduce-on-plateau, early stopping); silent learners ignore it.
    fn log(&mut self, line: &str);
}

/// Runs `learner` up to `epochs` epochs.
pub fn fit<L: Learner>(learner: &mut L, monitor: &Monitor, epochs: usize) -> Result<Ending> {
    let mut ending = Ending::Completed;
    let mut epoch = learner.next_epoch();
    while epoch < epochs {
        if learner.train_epoch(epoch)? == Batches::Interrupted {
            learner.interrupted(epoch)?;
            ending = Ending::Interrupted;
            break;
        }
        let record = learner.record(epoch)?;
        let value = record.metric(&monitor.name);
        let lr = learner.lr();
        let d = learner.callbacks().on_epoch_end(monitor, epoch, value, lr);
        if d.improved {
            learner.keep_best(epoch, monitor, value)?;
        }
        if let Some(lr) = d.new_lr {
            learner.log(&format!(
                "reducing the learning rate to {lr:e} ({} has not improved)",
                monitor.name
            ));
            learner.set_lr(lr);
        }
        learner.epoch_done(epoch, record, d.stop || epoch + 1 >= epochs)?;
        if d.stop {
            let cb = learner.callbacks();
            let line = format!(
                "early stopping after epoch {}: {} has not improved for {} (best: epoch {})",
                epoch + 1,
                monitor.name,
                crate::progress::count(cb.patience(), "epoch"),
                cb.best.epoch.map_or(0, |e| e + 1)
            );
            learner.log(&line);
            ending = Ending::EarlyStopped(epoch + 1);
            break;
        }
        if learner.stop_requested() {
            ending = Ending::Interrupted;
            break;
        }
        epoch += 1;
    }
    if ending != Ending::Interrupted {
        if let Some(e) = learner.callbacks().restore_epoch() {
            learner.restore_best(e)?;
        }
    }
    Ok(ending)
}

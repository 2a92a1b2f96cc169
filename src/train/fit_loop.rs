//! The training loop, once, for every model catdog trains (burn-train's learner and Keras' `fit` are the models):
//! epochs of batches, then the shared end-of-epoch [`Callbacks`] on one [`Monitor`], then what the model keeps
//! (history, checkpoints). What differs between the image trainer and the tabular fit — how batches are made
//! ([`Learner`]), where the best weights go ([`Checkpointing`]) — is what each implements; a stop request comes
//! through an [`Interrupter`].

use std::sync::atomic::{AtomicBool, Ordering};

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

/// Asks a run to stop (Ctrl-C, SIGTERM): between epochs [`fit`] looks, inside an epoch the learner does after each
/// batch (burn-train's `TrainingInterrupter`). A run without one is never interrupted.
#[derive(Clone, Copy, Default)]
pub struct Interrupter<'a>(Option<&'a AtomicBool>);

impl<'a> Interrupter<'a> {
    /// Stops when `flag` is set (the signal handler sets it).
    pub fn new(flag: &'a AtomicBool) -> Self {
        Interrupter(Some(flag))
    }

    pub fn requested(&self) -> bool {
        self.0.is_some_and(|f| f.load(Ordering::SeqCst))
    }
}

/// What a model keeps of its run (burn-train's `CheckpointingStrategy` and checkpointer): the best weights, each
/// finished epoch, an interrupted one — in files for the image trainer, in memory for the labs.
pub trait Checkpointing {
    type Record: Monitored;

    /// The weights of `epoch` are the best so far: keep them (a file, a snapshot).
    fn keep_best(&mut self, epoch: usize, monitor: &Monitor, value: Option<f64>) -> Result<()>;
    /// The epoch is over: keep its record and what a resumed run needs; `last` says no epoch follows.
    fn epoch_done(&mut self, epoch: usize, record: Self::Record, last: bool) -> Result<()>;
    /// Stopped inside `epoch`: keep what a resumed run needs.
    fn interrupted(&mut self, epoch: usize) -> Result<()>;
    /// Puts the weights kept for `epoch` back (early stopping's restore_best_weights).
    fn restore_best(&mut self, epoch: usize) -> Result<()>;
}

/// What a model brings to [`fit`]: its epochs, their figures, its learning rate and its end-of-epoch callbacks
/// (early stopping, reduce-on-plateau, the best epoch: shared strategies, see [`Callbacks`]); what it keeps is
/// its [`Checkpointing`].
pub trait Learner: Checkpointing {
    /// The 0-based epoch to run next (later than 0 when a run resumes).
    fn next_epoch(&self) -> usize;
    /// The end-of-epoch callbacks and their state (the learner keeps them, so that a checkpoint holds them).
    fn callbacks(&mut self) -> &mut Callbacks;
    /// Trains the batches of `epoch` (from where a resumed run left off), stopping after the batch in progress
    /// when `interrupter` asks.
    fn train_epoch(&mut self, epoch: usize, interrupter: Interrupter) -> Result<Batches>;
    /// After the batches: validation and the epoch's figures.
    fn record(&mut self, epoch: usize) -> Result<Self::Record>;
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// A line for the user (reduce-on-plateau, early stopping); silent learners ignore it.
    fn log(&mut self, line: &str);
}

/// Runs `learner` up to `epochs` epochs.
pub fn fit<L: Learner>(learner: &mut L, monitor: &Monitor, epochs: usize, interrupter: Interrupter) -> Result<Ending> {
    let mut ending = Ending::Completed;
    let mut epoch = learner.next_epoch();
    while epoch < epochs {
        if learner.train_epoch(epoch, interrupter)? == Batches::Interrupted {
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
        if interrupter.requested() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::early_stop::{EarlyStopping, EarlyStoppingConfig, Mode};
    use crate::train::optim::ReduceLrOnPlateau;

    struct Record(f64);

    impl Monitored for Record {
        fn metric(&self, name: &str) -> Option<f64> {
            (name == "val_loss").then_some(self.0)
        }
    }

    /// A learner whose epochs have scripted validation losses; it writes down what the loop asks of it.
    struct Mock<'f> {
        /// The flag of the run's interrupter, set after epoch `stop_after`.
        flag: &'f AtomicBool,
        val_losses: Vec<f64>,
        next: usize,
        /// The epoch inside which Ctrl-C comes, if any.
        interrupt_in: Option<usize>,
        /// A stop asked for between epochs, after this epoch.
        stop_after: Option<usize>,
        callbacks: Callbacks,
        lr: f64,
        calls: Vec<String>,
    }

    impl<'f> Mock<'f> {
        fn new(flag: &'f AtomicBool, val_losses: &[f64], callbacks: Callbacks) -> Self {
            Mock {
                flag,
                val_losses: val_losses.to_vec(),
                next: 0,
                interrupt_in: None,
                stop_after: None,
                callbacks,
                lr: 1.0,
                calls: Vec::new(),
            }
        }
    }

    impl Checkpointing for Mock<'_> {
        type Record = Record;
        fn keep_best(&mut self, epoch: usize, _: &Monitor, _: Option<f64>) -> Result<()> {
            self.calls.push(format!("best {epoch}"));
            Ok(())
        }
        fn epoch_done(&mut self, epoch: usize, _: Record, last: bool) -> Result<()> {
            self.calls
                .push(format!("done {epoch}{}", if last { " last" } else { "" }));
            if self.stop_after == Some(epoch) {
                self.flag.store(true, Ordering::SeqCst);
            }
            Ok(())
        }
        fn interrupted(&mut self, epoch: usize) -> Result<()> {
            self.calls.push(format!("interrupted {epoch}"));
            Ok(())
        }
        fn restore_best(&mut self, epoch: usize) -> Result<()> {
            self.calls.push(format!("restore {epoch}"));
            Ok(())
        }
    }

    impl Learner for Mock<'_> {
        fn next_epoch(&self) -> usize {
            self.next
        }
        fn callbacks(&mut self) -> &mut Callbacks {
            &mut self.callbacks
        }
        fn train_epoch(&mut self, epoch: usize, _: Interrupter) -> Result<Batches> {
            self.calls.push(format!("train {epoch}"));
            Ok(if self.interrupt_in == Some(epoch) {
                Batches::Interrupted
            } else {
                Batches::Done
            })
        }
        fn record(&mut self, epoch: usize) -> Result<Record> {
            Ok(Record(self.val_losses[epoch]))
        }
        fn lr(&self) -> f64 {
            self.lr
        }
        fn set_lr(&mut self, lr: f64) {
            self.calls.push(format!("lr {lr}"));
            self.lr = lr;
        }
        fn log(&mut self, _: &str) {}
    }

    /// `fit` on `m` with its flag as the interrupter.
    fn run(m: &mut Mock, epochs: usize) -> Ending {
        let flag = m.flag;
        fit(m, &monitor(), epochs, Interrupter::new(flag)).unwrap()
    }

    fn monitor() -> Monitor {
        Monitor::parse("val_loss", Mode::Auto).unwrap()
    }

    fn callbacks(patience: Option<usize>, restore: bool, reduce_lr: bool) -> Callbacks {
        Callbacks {
            early_stopping: patience.map(|patience| {
                EarlyStopping::new(EarlyStoppingConfig {
                    patience,
                    restore_best_weights: restore,
                    ..Default::default()
                })
                .unwrap()
            }),
            reduce_lr: reduce_lr.then(|| ReduceLrOnPlateau::new("val_loss", 0.5, 1, 0.0).unwrap()),
            best: Default::default(),
        }
    }

    #[test]
    fn every_epoch_runs_and_each_improvement_is_kept() {
        let flag = AtomicBool::new(false);
        let mut m = Mock::new(&flag, &[1.0, 0.8, 0.9, 0.7], callbacks(None, false, false));
        assert_eq!(run(&mut m, 4), Ending::Completed);
        let kept: Vec<&String> = m.calls.iter().filter(|c| c.starts_with("best")).collect();
        assert_eq!(kept, ["best 0", "best 1", "best 3"]);
        assert_eq!(m.calls.last().unwrap(), "done 3 last");
    }

    #[test]
    fn early_stopping_ends_after_patience_and_restores_the_best_epoch() {
        let flag = AtomicBool::new(false);
        let mut m = Mock::new(&flag, &[1.0, 0.8, 0.9, 0.95, 0.7, 0.6], callbacks(Some(2), true, false));
        assert_eq!(run(&mut m, 6), Ending::EarlyStopped(4));
        assert!(m.calls.contains(&"done 3 last".to_string()), "{:?}", m.calls);
        assert!(!m.calls.contains(&"train 4".to_string()), "{:?}", m.calls);
        assert_eq!(m.calls.last().unwrap(), "restore 1");
    }

    #[test]
    fn an_interrupt_inside_an_epoch_saves_it_and_restores_nothing() {
        let flag = AtomicBool::new(false);
        let mut m = Mock::new(&flag, &[1.0, 0.8, 0.9], callbacks(Some(5), true, false));
        m.interrupt_in = Some(1);
        assert_eq!(run(&mut m, 3), Ending::Interrupted);
        assert_eq!(m.calls, ["train 0", "best 0", "done 0", "train 1", "interrupted 1"]);
        // A stop between epochs: the epoch is done, nothing else runs, nothing is restored.
        let mut m = Mock::new(&flag, &[1.0, 0.8, 0.9], callbacks(Some(5), true, false));
        m.stop_after = Some(0);
        assert_eq!(run(&mut m, 3), Ending::Interrupted);
        assert_eq!(m.calls, ["train 0", "best 0", "done 0"]);
    }

    #[test]
    fn a_resumed_run_starts_at_its_next_epoch_and_a_plateau_lowers_the_rate() {
        let flag = AtomicBool::new(false);
        let mut m = Mock::new(&flag, &[1.0, 0.8, 0.9, 0.95], callbacks(None, false, true));
        m.next = 2;
        assert_eq!(run(&mut m, 4), Ending::Completed);
        assert_eq!(m.calls[0], "train 2");
        assert!(!m.calls.iter().any(|c| c == "train 0" || c == "train 1"));
        // Epoch 2 (0.9) is the first seen, so it improves; epoch 3 (0.95) does not: the rate halves.
        assert!(m.calls.contains(&"lr 0.5".to_string()), "{:?}", m.calls);
    }
}

//! Training: the loop, optimizers, early stopping, checkpoints, history, and the frozen-prefix feature cache.

pub mod cache;
pub mod callbacks;
pub mod config;
pub mod early_stop;
pub mod features;
pub mod fit_loop;
pub mod history;
pub mod loss;
pub mod loss_scale;
pub mod lr_find;
pub mod monitor;
pub mod optim;
pub mod state;
pub mod trainer;

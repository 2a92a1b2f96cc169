//! Evaluation and prediction on checkpoints.

pub mod metrics;
pub mod report;

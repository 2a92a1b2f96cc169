//! The tabular regularization labs: data, the MLP, its training loop, and the labs themselves.

pub mod dataset;
pub mod fit;
pub mod labs;
pub mod mlp;

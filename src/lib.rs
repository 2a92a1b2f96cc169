//! catdog: image-classification transfer learning (VGG16 feature extraction and block5 fine-tuning) and the
//! regularization labs that go with it, on candle.

pub mod data;
pub mod device;
pub mod error;
pub mod kernels;
pub mod model;
pub mod nn;

pub use error::{Error, Result};
pub mod alloc;
pub mod app;
pub mod bench;
pub mod eval;
pub mod explain;
pub mod export;
pub mod extract;
pub mod hub;
pub mod info;
pub mod io;
pub mod kernel_bench;
pub mod limits;
pub mod plot;
pub mod progress;
pub mod protobuf;
pub mod run;
pub mod signals;
pub mod tabular;
pub mod tensorboard;
pub mod train;

//! The layers that both networks are made of — the image head (Flatten/GAP → Dense → Dropout → Dense) and the
//! tabular MLP — so that each exists once: dense, dropout, batch and layer norm, activations, initialisers.

mod activation;
mod dense;
mod dropout;
mod init;
mod norm;

pub use activation::{Activation, PRELU_START, SELU_ALPHA, SELU_SCALE};
pub use dense::Dense;
pub use dropout::dropout_mask;
pub use init::Init;
pub use norm::{Norm, NormDefaults, NormLayer};

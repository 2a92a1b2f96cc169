//! The network: VGG16 conv base, its weights, and the fast CPU convolution it runs on.

pub mod classifier;
pub mod conv;
pub mod head;
pub mod vgg16;
pub mod weights;
pub mod winograd;

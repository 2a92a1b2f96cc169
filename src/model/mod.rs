//! The network: VGG16 conv base, its weights, its head and the classifier around them (the kernels they run on are in
//! [`crate::kernels`]).

pub mod classifier;
pub mod head;
pub mod onnx;
pub mod tensors;
pub mod vgg16;
pub mod weights;

//! Taking a trained classifier elsewhere: `catdog export` writes a checkpoint as one ONNX graph.

pub mod onnx;

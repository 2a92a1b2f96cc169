//! A catdog checkpoint as one ONNX graph (opset 17): the preprocessing the checkpoint records (channel order,
//! scale, mean and std), the VGG16 conv base, the head and its sigmoid or softmax, so that onnxruntime, OpenCV,
//! ONNX.js or TensorRT give the probabilities `catdog predict` gives. Input `pixels`: float32 N × 3 × S × S, RGB
//! values 0–255 at the checkpoint's size S (N dynamic); output `probabilities`: N × classes in the checkpoint's
//! class order. The class names, the size and the preprocessing are in the model's `metadata_props`.

use std::collections::HashMap;
use std::path::Path;

use candle_core::Tensor;

use crate::error::{Error, Result};
use crate::model::classifier::{Classifier, ModelMeta};
use crate::model::head::HeadKind;
use crate::model::vgg16::{tensor_names, LAYERS};
use crate::protobuf::Message;

/// The opset the graph is written for, and the IR version that goes with it.
pub const OPSET: i64 = 17;
const IR_VERSION: i64 = 8;

/// ONNX `TensorProto.DataType` values.
const FLOAT: i64 = 1;
const INT64: i64 = 7;

/// ONNX `AttributeProto.AttributeType` values.
const ATTR_INT: i64 = 2;
const ATTR_INTS: i64 = 7;

/// What an export wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Exported {
    /// Nodes of the graph.
    pub nodes: usize,
    /// Values of its initializers (weights, biases, preprocessing constants).
    pub parameters: usize,
    /// Size of the file.
    pub bytes: usize,
}

/// Writes the checkpoint at `checkpoint` to `out` as ONNX (atomically).
pub fn export(checkpoint: &Path, out: &Path) -> Result<Exported> {
    let (model, tensors, _) = Classifier::load(checkpoint, &candle_core::Device::Cpu)?;
    let mut graph = Graph::default();
    build(&mut graph, &model.meta, &tensors)?;
    let (nodes, parameters) = (graph.nodes.len(), graph.parameters);
    let bytes = model_proto(&model.meta, graph).into_bytes();
    crate::io::atomic_write(out, &bytes)?;
    Ok(Exported {
        nodes,
        parameters,
        bytes: bytes.len(),
    })
}

/// A graph being built: nodes in order, initializers, and a counter for value names.
#[derive(Default)]
struct Graph {
    nodes: Vec<Message>,
    initializers: Vec<Message>,
    parameters: usize,
}

impl Graph {
    /// Appends a node `op` of `inputs`; returns its output's name (`name`).
    fn node(&mut self, op: &str, name: &str, inputs: &[&str], attributes: &[Message]) -> String {
        let mut n = Message::new();
        for i in inputs {
            n = n.string(1, i);
        }
        n = n.string(2, name).string(3, name).string(4, op);
        for a in attributes {
            n = n.message(5, a);
        }
        self.nodes.push(n);
        name.to_string()
    }

    /// A float32 initializer.
    fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, dims, FLOAT, raw, values.len())
    }

    /// An int64 initializer.
    fn int64s(&mut self, name: &str, values: &[i64]) -> String {
        let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializer(name, &[values.len()], INT64, raw, values.len())
    }

    fn initializer(&mut self, name: &str, dims: &[usize], data_type: i64, raw: Vec<u8>, count: usize) -> String {
        let mut t = Message::new();
        for d in dims {
            t = t.int(1, *d as i64);
        }
        self.initializers
            .push(t.int(2, data_type).string(8, name).bytes_field(9, &raw));
        self.parameters += count;
        name.to_string()
    }

    /// A checkpoint tensor as a float32 initializer of its own shape.
    fn tensor(&mut self, tensors: &HashMap<String, Tensor>, name: &str) -> Result<String> {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::Other(format!("the checkpoint has no tensor '{name}'")))?;
        let values = t.to_dtype(candle_core::DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        Ok(self.floats(name, t.dims(), &values))
    }
}

fn attr_int(name: &str, v: i64) -> Message {
    Message::new().string(1, name).int(3, v).int(20, ATTR_INT)
}

fn attr_ints(name: &str, vs: &[i64]) -> Message {
    vs.iter()
        .fold(Message::new().string(1, name), |m, v| m.int(8, *v))
        .int(20, ATTR_INTS)
}

/// The nodes from `pixels` to `probabilities`.
fn build(g: &mut Graph, meta: &ModelMeta, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut x = preprocessing(g, meta);
    for spec in LAYERS.iter() {
        x = if spec.is_conv {
            let (w, b) = tensor_names(spec);
            let (w, b) = (g.tensor(tensors, &w)?, g.tensor(tensors, &b)?);
            let attrs = [
                attr_ints("kernel_shape", &[3, 3]),
                attr_ints("pads", &[1, 1, 1, 1]),
                attr_ints("strides", &[1, 1]),
            ];
            let conv = g.node("Conv", spec.name, &[&x, &w, &b], &attrs);
            g.node("Relu", &format!("{}_relu", spec.name), &[&conv], &[])
        } else {
            let attrs = [attr_ints("kernel_shape", &[2, 2]), attr_ints("strides", &[2, 2])];
            g.node("MaxPool", spec.name, &[&x], &attrs)
        };
    }
    let h = &meta.head;
    let pooled = match h.kind {
        HeadKind::Flatten => x,
        HeadKind::Gap => g.node("GlobalAveragePool", "head_gap", &[&x], &[]),
    };
    let mut z = g.node("Flatten", "head_flatten", &[&pooled], &[attr_int("axis", 1)]);
    if h.hidden > 0 {
        let (w, b) = (
            g.tensor(tensors, "head.fc1.weight")?,
            g.tensor(tensors, "head.fc1.bias")?,
        );
        let fc1 = g.node("Gemm", "head_fc1", &[&z, &w, &b], &[attr_int("transB", 1)]);
        z = g.node("Relu", "head_fc1_relu", &[&fc1], &[]);
    }
    let (w, b) = (
        g.tensor(tensors, "head.fc2.weight")?,
        g.tensor(tensors, "head.fc2.bias")?,
    );
    let logits = g.node("Gemm", "logits", &[&z, &w, &b], &[attr_int("transB", 1)]);
    if h.n_out == 1 {
        // One logit for two classes: p(classes[1]) = σ(z), p(classes[0]) = 1 − σ(z).
        let p1 = g.node("Sigmoid", "p_second", &[&logits], &[]);
        let one = g.floats("one", &[1], &[1.0]);
        let p0 = g.node("Sub", "p_first", &[&one, &p1], &[]);
        g.node("Concat", "probabilities", &[&p0, &p1], &[attr_int("axis", 1)]);
    } else {
        g.node("Softmax", "probabilities", &[&logits], &[attr_int("axis", 1)]);
    }
    Ok(())
}

/// `pixels` (RGB 0–255) to the network's input as `catdog`'s loader makes it: the channels reordered for BGR
/// weights, then `x · scale/std + (−mean/std)` per channel (the same two f32 operations, in the same order).
fn preprocessing(g: &mut Graph, meta: &ModelMeta) -> String {
    let p = &meta.preprocess;
    let mut x = "pixels".to_string();
    if p.bgr {
        let order = g.int64s("bgr_order", &[2, 1, 0]);
        x = g.node("Gather", "pixels_bgr", &[&x, &order], &[attr_int("axis", 1)]);
    }
    let a: Vec<f32> = (0..3).map(|c| p.scale / p.std[c]).collect();
    let b: Vec<f32> = (0..3).map(|c| -p.mean[c] / p.std[c]).collect();
    let a = g.floats("preprocess_scale", &[1, 3, 1, 1], &a);
    let b = g.floats("preprocess_shift", &[1, 3, 1, 1], &b);
    let scaled = g.node("Mul", "input_scaled", &[&x, &a], &[]);
    g.node("Add", "input", &[&scaled, &b], &[])
}

/// A dimension of a graph input or output: fixed, or named (dynamic).
enum Dim {
    Fixed(usize),
    Named(&'static str),
}

/// A value's type: float32 with these dimensions.
fn value_info(name: &str, dims: &[Dim]) -> Message {
    let shape = dims.iter().fold(Message::new(), |m, d| {
        let dim = match d {
            Dim::Fixed(n) => Message::new().int(1, *n as i64),
            Dim::Named(param) => Message::new().string(2, param),
        };
        m.message(1, &dim)
    });
    let tensor = Message::new().int(1, FLOAT).message(2, &shape);
    Message::new()
        .string(1, name)
        .message(2, &Message::new().message(1, &tensor))
}

/// The ModelProto around `graph`, with the checkpoint's classes, size and preprocessing as metadata.
fn model_proto(meta: &ModelMeta, g: Graph) -> Message {
    let size = meta.size as usize;
    let mut graph = Message::new();
    for n in &g.nodes {
        graph = graph.message(1, n);
    }
    graph = graph.string(2, "catdog");
    for i in &g.initializers {
        graph = graph.message(5, i);
    }
    graph = graph
        .message(
            11,
            &value_info(
                "pixels",
                &[Dim::Named("N"), Dim::Fixed(3), Dim::Fixed(size), Dim::Fixed(size)],
            ),
        )
        .message(
            12,
            &value_info("probabilities", &[Dim::Named("N"), Dim::Fixed(meta.classes.len())]),
        );
    let entry = |k: &str, v: String| Message::new().string(1, k).string(2, &v);
    let metadata = [
        entry("classes", serde_json::to_string(&meta.classes).unwrap_or_default()),
        entry("size", meta.size.to_string()),
        entry("input", "pixels: float32 N×3×size×size, RGB 0–255".into()),
        entry("preprocess", meta.preprocess.describe()),
        entry(
            "preprocess_json",
            serde_json::to_string(&meta.preprocess).unwrap_or_default(),
        ),
        entry("weights", meta.weights.clone()),
        entry("catdog_version", env!("CARGO_PKG_VERSION").into()),
    ];
    let opset = Message::new().string(1, "").int(2, OPSET);
    let mut model = Message::new()
        .int(1, IR_VERSION)
        .string(2, "catdog")
        .string(3, env!("CARGO_PKG_VERSION"))
        .message(7, &graph)
        .message(8, &opset);
    for m in &metadata {
        model = model.message(14, m);
    }
    model
}

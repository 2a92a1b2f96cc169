//! VGG16 conv bases from ONNX models, as torch.onnx and tf2onnx (from Keras) export them: the weight and bias of
//! the first thirteen `Conv` nodes in graph order, from the graph's initializers or `Constant` nodes, become
//! `features.{0,2,…,28}.{weight,bias}`. ONNX `Conv` weights are OIHW whatever the framework, so Keras models need
//! no transposing. The file is memory-mapped and read by a small protobuf reader (the four messages needed:
//! ModelProto, GraphProto, NodeProto, TensorProto); only the conv tensors' bytes are copied.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::vgg16::{tensor_names, LAYERS};
use crate::error::{Error, Result};

/// The conv-base tensors of an ONNX model and who wrote it.
pub struct OnnxConvBase {
    pub tensors: HashMap<String, Tensor>,
    /// `producer_name` of the model (`pytorch`, `tf2onnx`, …).
    pub producer: String,
    /// The nodes after the conv base (a classifier), by op type and count, e.g. "MatMul ×4, Softmax".
    pub ignored: Vec<String>,
    /// The model's `metadata_props` (`catdog export` writes its classes, size and preprocessing there).
    pub metadata: HashMap<String, String>,
}

/// One protobuf field value.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
    Fixed64,
}

/// The fields of one protobuf message, in order.
struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

impl Fields<'_> {
    fn varint(&mut self) -> std::result::Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or("the file ends inside a number")?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("a number longer than ten bytes".into())
    }

    fn take(&mut self, n: usize) -> std::result::Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or("the file ends inside a field")?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = std::result::Result<(u64, Value<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let mut read = || -> std::result::Result<(u64, Value<'a>), String> {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Value::Varint(self.varint()?),
                1 => {
                    self.take(8)?;
                    Value::Fixed64
                }
                2 => {
                    let n = usize::try_from(self.varint()?).map_err(|_| "a field longer than memory")?;
                    let buf: &'a [u8] = self.buf;
                    let end = self
                        .pos
                        .checked_add(n)
                        .filter(|e| *e <= buf.len())
                        .ok_or("the file ends inside a field")?;
                    let s = &buf[self.pos..end];
                    self.pos = end;
                    Value::Bytes(s)
                }
                5 => Value::Fixed32(u32::from_le_bytes(self.take(4)?.try_into().expect("four bytes"))),
                w => return Err(format!("unknown protobuf wire type {w}: not an ONNX model")),
            };
            Ok((key >> 3, value))
        };
        let r = read();
        if r.is_err() {
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `NodeProto`: op type, inputs, outputs, its integer and string attributes, and for `Constant` its `value`
/// tensor.
struct Node<'a> {
    op: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    value: Option<&'a [u8]>,
    /// Integer attributes (`i` and `ints`), by name.
    ints: HashMap<String, Vec<i64>>,
    /// String attributes (`s`), by name.
    strings: HashMap<String, String>,
}

impl Node<'_> {
    /// Why a `Conv` node is not a VGG16 convolution (3×3, stride 1, padding 1, no dilation, one group), if it is
    /// not: read as one, it would silently compute something else.
    fn conv_mismatch(&self) -> Option<String> {
        let all = |name: &str, want: i64| self.ints.get(name).is_none_or(|v| v.iter().all(|x| *x == want));
        let auto_pad = self.strings.get("auto_pad").map_or("NOTSET", String::as_str);
        let padded = match auto_pad {
            "SAME_UPPER" | "SAME_LOWER" => true,
            "NOTSET" => self
                .ints
                .get("pads")
                .is_some_and(|p| p.len() == 4 && p.iter().all(|x| *x == 1)),
            _ => false,
        };
        let shown = |name: &str| format!("{name} {:?}", self.ints.get(name).cloned().unwrap_or_default());
        if !all("strides", 1) {
            Some(shown("strides"))
        } else if !all("group", 1) {
            Some(shown("group"))
        } else if !all("dilations", 1) {
            Some(shown("dilations"))
        } else if !all("kernel_shape", 3) {
            Some(shown("kernel_shape"))
        } else if !padded {
            Some(format!("auto_pad {auto_pad}, {}", shown("pads")))
        } else {
            None
        }
    }
}

/// The integers of an `ints` field: one varint, or a packed run of them.
fn push_ints(value: Value<'_>, out: &mut Vec<i64>) -> std::result::Result<(), String> {
    match value {
        Value::Varint(v) => out.push(v as i64),
        Value::Bytes(b) => {
            let mut packed = Fields { buf: b, pos: 0 };
            while packed.pos < b.len() {
                out.push(packed.varint()? as i64);
            }
        }
        _ => {}
    }
    Ok(())
}

fn node(buf: &[u8]) -> std::result::Result<Node<'_>, String> {
    let mut n = Node {
        op: String::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        value: None,
        ints: HashMap::new(),
        strings: HashMap::new(),
    };
    for f in fields(buf) {
        match f? {
            (1, Value::Bytes(b)) => n.inputs.push(text(b)),
            (2, Value::Bytes(b)) => n.outputs.push(text(b)),
            (4, Value::Bytes(b)) => n.op = text(b),
            (5, Value::Bytes(attr)) => {
                // AttributeProto: name = 1, i = 3, s = 4, t = 5, ints = 8.
                let (mut name, mut t, mut s, mut ints) = (String::new(), None, None, Vec::new());
                for a in fields(attr) {
                    match a? {
                        (1, Value::Bytes(b)) => name = text(b),
                        (3, v @ Value::Varint(_)) | (8, v) => push_ints(v, &mut ints)?,
                        (4, Value::Bytes(b)) => s = Some(text(b)),
                        (5, Value::Bytes(b)) => t = Some(b),
                        _ => {}
                    }
                }
                if name == "value" {
                    n.value = t;
                }
                if let Some(s) = s {
                    n.strings.insert(name.clone(), s);
                }
                if !ints.is_empty() {
                    n.ints.insert(name, ints);
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

/// The name of a `TensorProto` (field 8), without decoding the rest.
fn tensor_name(buf: &[u8]) -> std::result::Result<String, String> {
    for f in fields(buf) {
        if let (8, Value::Bytes(b)) = f? {
            return Ok(text(b));
        }
    }
    Ok(String::new())
}

/// Decodes a float `TensorProto` (raw little-endian data or `float_data`) into a CPU tensor.
fn tensor(buf: &[u8], name: &str) -> std::result::Result<Tensor, String> {
    let (mut dims, mut dtype, mut raw, mut floats, mut external) = (Vec::new(), 0, None, Vec::new(), false);
    for f in fields(buf) {
        match f? {
            (1, Value::Varint(d)) => dims.push(d as usize),
            (1, Value::Bytes(packed)) => {
                let mut p = fields(packed);
                while p.pos < packed.len() {
                    dims.push(p.varint()? as usize);
                }
            }
            (2, Value::Varint(t)) => dtype = t,
            (4, Value::Fixed32(x)) => floats.push(f32::from_bits(x)),
            (4, Value::Bytes(packed)) => floats.extend(
                packed
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().expect("four bytes"))),
            ),
            (9, Value::Bytes(b)) => raw = Some(b),
            (14, Value::Varint(1)) => external = true,
            _ => {}
        }
    }
    if external {
        return Err(format!(
            "tensor '{name}' is stored in an external data file; export the model with its weights inside \
             (torch.onnx: under 2 GB they are) or convert it to safetensors"
        ));
    }
    if dtype != 1 {
        return Err(format!(
            "tensor '{name}' has ONNX data type {dtype}; only float32 (1) conv weights are read — convert the \
             model to float32 first"
        ));
    }
    let count = dims
        .iter()
        .try_fold(1usize, |a, d| a.checked_mul(*d))
        .ok_or("a tensor size overflows")?;
    let values: Vec<f32> = match raw {
        Some(b) if b.len() == count * 4 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("four bytes")))
            .collect(),
        Some(b) => return Err(format!("tensor '{name}' has {} bytes for shape {dims:?}", b.len())),
        None if floats.len() == count => floats,
        None => {
            return Err(format!(
                "tensor '{name}' has {} values for shape {dims:?}",
                floats.len()
            ))
        }
    };
    Tensor::from_vec(values, dims, &Device::Cpu).map_err(|e| e.to_string())
}

/// Reads the VGG16 conv base of the ONNX model at `path`.
pub fn read_onnx_conv_base(path: &Path) -> Result<OnnxConvBase> {
    let bad = |message: String| Error::BadOnnx {
        path: path.to_path_buf(),
        message,
    };
    if let Some(what) = crate::io::not_a_file(path) {
        return Err(Error::invalid(format!(
            "{}: is {what}, not an ONNX file",
            path.display()
        )));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    // SAFETY: the map is only read, and every tensor is copied out of it before it is dropped at the end of this
    // function; catdog writes ONNX files (`export`) only to a temporary file renamed into place, so a file being
    // read is never changed under the map.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
    conv_base(&map).map_err(bad)
}

fn conv_base(model: &[u8]) -> std::result::Result<OnnxConvBase, String> {
    let (mut producer, mut graph, mut metadata) = (String::new(), None, HashMap::new());
    for f in fields(model) {
        match f? {
            (2, Value::Bytes(b)) => producer = text(b),
            (7, Value::Bytes(b)) => graph = Some(b),
            (14, Value::Bytes(b)) => {
                let (mut key, mut value) = (String::new(), String::new());
                for entry in fields(b) {
                    match entry? {
                        (1, Value::Bytes(k)) => key = text(k),
                        (2, Value::Bytes(v)) => value = text(v),
                        _ => {}
                    }
                }
                metadata.insert(key, value);
            }
            _ => {}
        }
    }
    let graph = graph.ok_or("no graph in the file: not an ONNX model")?;
    let (mut nodes, mut initializers) = (Vec::new(), Vec::new());
    for f in fields(graph) {
        match f? {
            (1, Value::Bytes(b)) => nodes.push(node(b)?),
            (5, Value::Bytes(b)) => initializers.push(b),
            _ => {}
        }
    }
    let convs: Vec<&Node> = nodes.iter().filter(|n| n.op == "Conv").collect();
    let conv_layers: Vec<_> = LAYERS.iter().filter(|l| l.is_conv).collect();
    if convs.len() != conv_layers.len() {
        return Err(format!(
            "it has {} Conv nodes where a VGG16 conv base has {}",
            convs.len(),
            conv_layers.len()
        ));
    }
    for (conv, layer) in convs.iter().zip(&conv_layers) {
        if let Some(why) = conv.conv_mismatch() {
            return Err(format!(
                "the Conv node of {} has {why}, where a VGG16 convolution is 3×3 with stride 1, padding 1, no \
                 dilation and one group",
                layer.name
            ));
        }
    }
    // Where each needed tensor is defined: an initializer or a Constant node.
    let mut wanted: HashMap<&str, String> = HashMap::new();
    for (conv, layer) in convs.iter().zip(&conv_layers) {
        let (w, b) = tensor_names(layer);
        let (Some(wi), Some(bi)) = (conv.inputs.get(1), conv.inputs.get(2).filter(|s| !s.is_empty())) else {
            return Err(format!(
                "the Conv node of {} has no bias; VGG16 convolutions have one",
                layer.name
            ));
        };
        wanted.insert(wi, w);
        wanted.insert(bi, b);
    }
    let mut tensors = HashMap::new();
    for init in &initializers {
        let name = tensor_name(init)?;
        if let Some(ours) = wanted.get(name.as_str()) {
            tensors.insert(ours.clone(), tensor(init, &name)?);
        }
    }
    for n in &nodes {
        if let (Some(out), Some(value)) = (n.outputs.first(), n.value) {
            if let Some(ours) = wanted.get(out.as_str()) {
                tensors.insert(ours.clone(), tensor(value, out)?);
            }
        }
    }
    if let Some((onnx, ours)) = wanted.iter().find(|(_, ours)| !tensors.contains_key(*ours)) {
        return Err(format!(
            "'{onnx}' ({ours}) is computed by the graph, not stored; only weights stored as initializers or Constant \
             nodes are read"
        ));
    }
    let last_conv = nodes.iter().rposition(|n| n.op == "Conv").unwrap_or(0);
    let mut after: Vec<(String, usize)> = Vec::new();
    for n in &nodes[last_conv + 1..] {
        match after.iter_mut().find(|(op, _)| *op == n.op) {
            Some((_, c)) => *c += 1,
            None => after.push((n.op.clone(), 1)),
        }
    }
    let ignored = after
        .into_iter()
        .map(|(op, c)| if c > 1 { format!("{op} ×{c}") } else { op })
        .collect();
    Ok(OnnxConvBase {
        tensors,
        producer,
        ignored,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_foreign_bytes_are_errors_not_panics() {
        for bytes in [
            &b""[..],
            b"\x0a",
            b"\x3a\xff\xff\xff\xff\x0f",
            b"not an onnx file at all",
            &[0xff; 16],
        ] {
            assert!(conv_base(bytes).is_err(), "{bytes:?}");
        }
    }

    fn conv(ints: &[(&str, &[i64])], auto_pad: Option<&str>) -> Node<'static> {
        Node {
            op: "Conv".into(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            value: None,
            ints: ints.iter().map(|(k, v)| (k.to_string(), v.to_vec())).collect(),
            strings: auto_pad
                .map(|p| ("auto_pad".to_string(), p.to_string()))
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn only_vgg16s_convolution_passes_the_conv_check() {
        let pads: (&str, &[i64]) = ("pads", &[1, 1, 1, 1]);
        assert_eq!(
            conv(&[pads, ("strides", &[1, 1]), ("kernel_shape", &[3, 3])], None).conv_mismatch(),
            None
        );
        assert_eq!(conv(&[], Some("SAME_UPPER")).conv_mismatch(), None);
        for (case, expected) in [
            (conv(&[pads, ("strides", &[2, 2])], None), "strides [2, 2]"),
            (conv(&[pads, ("group", &[2])], None), "group [2]"),
            (conv(&[pads, ("dilations", &[2, 2])], None), "dilations [2, 2]"),
            (conv(&[pads, ("kernel_shape", &[5, 5])], None), "kernel_shape [5, 5]"),
            (conv(&[("pads", &[0, 0, 0, 0])], None), "pads [0, 0, 0, 0]"),
            (conv(&[pads], Some("VALID")), "auto_pad VALID"),
        ] {
            assert!(case.conv_mismatch().is_some_and(|m| m.contains(expected)), "{expected}");
        }
    }
}

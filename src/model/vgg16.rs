//! The VGG16 convolutional base: 13 named 3×3 convolutions (+ ReLU) and 5 max-pools, with Keras layer names
//! mapped onto the torchvision/timm tensor names.
//!
//! Channel widths come from the weights' shapes, so the real network (64, 128, 256, 512, 512) and narrow test
//! networks run through the same code. The base can be split at any layer into a frozen prefix (plain tensors,
//! output detached) and a trainable suffix (candle `Var`s).

use std::collections::HashMap;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};
use crate::kernels::{conv, pool, Compute, Kernels, Precision};

/// One layer of the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerSpec {
    /// Keras name (`block1_conv1` …, `block5_pool`).
    pub name: &'static str,
    /// 1-based block number.
    pub block: usize,
    /// Index in torchvision's `features` Sequential (conv tensors are `features.{index}.{weight,bias}`).
    pub index: usize,
    pub is_conv: bool,
}

const fn conv(name: &'static str, block: usize, index: usize) -> LayerSpec {
    LayerSpec {
        name,
        block,
        index,
        is_conv: true,
    }
}
const fn pool(name: &'static str, block: usize, index: usize) -> LayerSpec {
    LayerSpec {
        name,
        block,
        index,
        is_conv: false,
    }
}

/// The 18 layers in order.
pub const LAYERS: [LayerSpec; 18] = [
    conv("block1_conv1", 1, 0),
    conv("block1_conv2", 1, 2),
    pool("block1_pool", 1, 4),
    conv("block2_conv1", 2, 5),
    conv("block2_conv2", 2, 7),
    pool("block2_pool", 2, 9),
    conv("block3_conv1", 3, 10),
    conv("block3_conv2", 3, 12),
    conv("block3_conv3", 3, 14),
    pool("block3_pool", 3, 16),
    conv("block4_conv1", 4, 17),
    conv("block4_conv2", 4, 19),
    conv("block4_conv3", 4, 21),
    pool("block4_pool", 4, 23),
    conv("block5_conv1", 5, 24),
    conv("block5_conv2", 5, 26),
    conv("block5_conv3", 5, 28),
    pool("block5_pool", 5, 30),
];

/// Full VGG16 widths per block.
pub const VGG16_WIDTHS: [usize; 5] = [64, 128, 256, 512, 512];

/// Position of a layer name in [`LAYERS`]. Accepts the Keras name or the torchvision name `features.N`.
pub fn layer_index(name: &str) -> Result<usize> {
    let by_keras = LAYERS.iter().position(|l| l.name == name);
    let by_torch = name
        .strip_prefix("features.")
        .and_then(|n| n.parse::<usize>().ok())
        .and_then(|i| LAYERS.iter().position(|l| l.index == i));
    by_keras.or(by_torch).ok_or_else(|| Error::UnknownLayer {
        name: name.to_string(),
        known: LAYERS.iter().map(|l| l.name).collect::<Vec<_>>().join(", "),
    })
}

/// Tensor names of a conv layer.
pub fn tensor_names(spec: &LayerSpec) -> (String, String) {
    (
        format!("features.{}.weight", spec.index),
        format!("features.{}.bias", spec.index),
    )
}

/// A parameter that is either frozen (a plain tensor) or trainable (a `Var`).
#[derive(Debug, Clone)]
pub enum Param {
    Frozen(Tensor),
    Trainable(Var),
}

impl Param {
    pub fn tensor(&self) -> &Tensor {
        match self {
            Param::Frozen(t) => t,
            Param::Trainable(v) => v.as_tensor(),
        }
    }
    pub fn detached(&self) -> Tensor {
        match self {
            Param::Frozen(t) => t.clone(),
            Param::Trainable(v) => v.as_detached_tensor(),
        }
    }
    fn freeze(&mut self) {
        if let Param::Trainable(v) = self {
            *self = Param::Frozen(v.as_detached_tensor());
        }
    }
    fn thaw(&mut self) -> Result<()> {
        if let Param::Frozen(t) = self {
            *self = Param::Trainable(Var::from_tensor(t)?);
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct ConvParams {
    weight: Param,
    bias: Param,
    /// The layer's packed bf16 weights while frozen (keyed by the weight tensor's id; clones share it).
    cache: Arc<conv::WeightCache>,
}

/// The VGG16 conv base.
#[derive(Debug, Clone)]
pub struct Vgg16 {
    /// Parameters of the 13 convs, in order.
    convs: Vec<ConvParams>,
    /// First layer (index into [`LAYERS`]) whose parameters train; `LAYERS.len()` when all are frozen.
    split: usize,
    kernels: Kernels,
    precision: Precision,
    device: Device,
}

fn conv_specs() -> impl Iterator<Item = &'static LayerSpec> {
    LAYERS.iter().filter(|l| l.is_conv)
}

impl Vgg16 {
    /// Builds the base from named tensors (torchvision/timm names). Other tensors are ignored. Checks that every
    /// conv tensor is there, 4-D 3×3 with input channels chaining from 3, and that biases fit.
    pub fn from_tensors(tensors: &HashMap<String, Tensor>, source_name: &str, device: &Device) -> Result<Self> {
        let mut convs = Vec::with_capacity(13);
        let mut in_ch = 3usize;
        for spec in conv_specs() {
            let (wn, bn) = tensor_names(spec);
            let get = |name: &str| {
                tensors.get(name).ok_or_else(|| Error::MissingTensor {
                    source_name: source_name.to_string(),
                    tensor: name.to_string(),
                    layer: spec.name.to_string(),
                })
            };
            let (w, b) = (get(&wn)?, get(&bn)?);
            for (name, t) in [(&wn, w), (&bn, b)] {
                if !t.dtype().is_float() {
                    return Err(Error::BadDtype {
                        source_name: source_name.to_string(),
                        tensor: name.clone(),
                        found: format!("{:?}", t.dtype()),
                    });
                }
            }
            for (name, t) in [(&wn, w), (&bn, b)] {
                if let Some(bad) = super::tensors::first_non_finite(t) {
                    return Err(Error::Checkpoint {
                        path: source_name.into(),
                        message: format!(
                            "tensor '{name}' ({}) holds {bad}: these weights are not usable",
                            spec.name
                        ),
                    });
                }
            }
            let ws = w.dims().to_vec();
            if ws.len() != 4 || ws[1] != in_ch || ws[2] != 3 || ws[3] != 3 || ws[0] == 0 {
                return Err(Error::ShapeMismatch {
                    source_name: source_name.to_string(),
                    tensor: wn,
                    expected: format!("[out_channels, {in_ch}, 3, 3] ({})", spec.name),
                    found: ws,
                });
            }
            let out_ch = ws[0];
            if b.dims() != [out_ch] {
                return Err(Error::ShapeMismatch {
                    source_name: source_name.to_string(),
                    tensor: bn,
                    expected: format!("[{out_ch}] ({})", spec.name),
                    found: b.dims().to_vec(),
                });
            }
            convs.push(ConvParams {
                weight: Param::Frozen(w.to_dtype(DType::F32)?.to_device(device)?),
                bias: Param::Frozen(b.to_dtype(DType::F32)?.to_device(device)?),
                cache: Arc::default(),
            });
            in_ch = out_ch;
        }
        Ok(Vgg16 {
            convs,
            split: LAYERS.len(),
            kernels: Kernels::Fast,
            precision: Precision::Fp32,
            device: device.clone(),
        })
    }

    /// He-initialised weights (normal, fan-out, as torchvision's VGG), zero biases, seeded.
    pub fn random(widths: [usize; 5], seed: u64, device: &Device) -> Result<Self> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut tensors = HashMap::new();
        let mut in_ch = 3;
        for spec in conv_specs() {
            let out_ch = widths[spec.block - 1];
            let std = (2.0 / (out_ch as f64 * 9.0)).sqrt();
            let normal = Normal::new(0.0, std).map_err(|e| Error::Other(e.to_string()))?;
            let w: Vec<f32> = (0..out_ch * in_ch * 9)
                .map(|_| normal.sample(&mut rng) as f32)
                .collect();
            let (wn, bn) = tensor_names(spec);
            tensors.insert(wn, Tensor::from_vec(w, (out_ch, in_ch, 3, 3), &Device::Cpu)?);
            tensors.insert(bn, Tensor::zeros(out_ch, DType::F32, &Device::Cpu)?);
            in_ch = out_ch;
        }
        Self::from_tensors(&tensors, "random", device)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Selects the kernels: catdog's fast CPU ops or the portable twins (see [`crate::kernels`]).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
    }

    pub fn kernels(&self) -> Kernels {
        self.kernels
    }

    /// Selects the precision of the convolutions' and dense layers' products (see [`crate::kernels::precision`]).
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The kernels and precision the base runs in (the head follows them).
    pub fn compute(&self) -> Compute {
        Compute {
            kernels: self.kernels,
            precision: self.precision,
        }
    }

    /// Output channels per block (read from the weights).
    pub fn widths(&self) -> [usize; 5] {
        let mut w = [0; 5];
        for (spec, p) in conv_specs().zip(&self.convs) {
            w[spec.block - 1] = p.weight.tensor().dim(0).unwrap_or(0);
        }
        w
    }

    /// Number of conv-base parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        self.convs
            .iter()
            .map(|p| p.weight.tensor().elem_count() + p.bias.tensor().elem_count())
            .sum()
    }

    /// Channels, height and width after layer `layer` (index into [`LAYERS`]) for a `size × size` input.
    pub fn output_shape(&self, layer: usize, size: usize) -> (usize, usize, usize) {
        let mut s = size;
        let mut c = 3;
        for (i, spec) in LAYERS.iter().enumerate().take(layer + 1) {
            if spec.is_conv {
                c = self.convs[conv_slot(i)].weight.tensor().dim(0).unwrap_or(0);
            } else {
                s /= 2;
            }
        }
        (c, s, s)
    }

    /// Makes every layer from `layer` (index into [`LAYERS`]) onward trainable and every layer before it frozen.
    /// `LAYERS.len()` freezes everything.
    pub fn set_trainable_from(&mut self, layer: usize) -> Result<()> {
        self.split = layer.min(LAYERS.len());
        for (i, spec) in LAYERS.iter().enumerate() {
            if !spec.is_conv {
                continue;
            }
            let p = &mut self.convs[conv_slot(i)];
            if i >= self.split {
                p.weight.thaw()?;
                p.bias.thaw()?;
            } else {
                p.weight.freeze();
                p.bias.freeze();
            }
        }
        Ok(())
    }

    /// Index of the first trainable layer (`LAYERS.len()` when all are frozen).
    pub fn split(&self) -> usize {
        self.split
    }

    /// Runs layers `from .. to` (indices into [`LAYERS`]).
    pub fn forward_range(&self, x: &Tensor, from: usize, to: usize) -> Result<Tensor> {
        Ok(self.run(x, from, to, &[])?.0)
    }

    /// Runs layers `from .. to`, keeping the outputs of the layers listed in `keep`. A frozen conv followed by its
    /// pool, on an input that needs no gradient, runs as one fused op (the pre-pool activation is never stored)
    /// unless its own output is wanted.
    fn run(&self, x: &Tensor, from: usize, to: usize, keep: &[usize]) -> Result<(Tensor, Vec<(usize, Tensor)>)> {
        let mut h = x.clone();
        let mut kept = Vec::new();
        let mut i = from;
        while i < to {
            let spec = &LAYERS[i];
            let fusable = spec.is_conv
                && i + 1 < to
                && !LAYERS[i + 1].is_conv
                && !keep.contains(&i)
                && self.is_frozen(i)
                && !h.track_op();
            if fusable {
                let p = &self.convs[conv_slot(i)];
                h = conv::conv2d_relu_pool_cached(
                    &h,
                    p.weight.tensor(),
                    p.bias.tensor(),
                    1,
                    self.compute(),
                    Some(&p.cache),
                )?;
                i += 1;
            } else {
                h = self.apply(i, spec, &h)?;
            }
            if keep.contains(&i) {
                kept.push((i, h.clone()));
            }
            i += 1;
        }
        Ok((h, kept))
    }

    fn is_frozen(&self, i: usize) -> bool {
        matches!(self.convs[conv_slot(i)].weight, Param::Frozen(_))
    }

    fn apply(&self, i: usize, spec: &LayerSpec, h: &Tensor) -> Result<Tensor> {
        Ok(if spec.is_conv {
            let p = &self.convs[conv_slot(i)];
            conv::conv2d(h, p.weight.tensor(), p.bias.tensor(), 1, true, self.compute())?
        } else {
            pool::max_pool2d(h, 2, 2, self.kernels)?
        })
    }

    /// Runs the base up to the last requested layer and returns the outputs of the requested layers (indices into
    /// [`LAYERS`]), in the order asked.
    pub fn forward_collect(&self, x: &Tensor, wanted: &[usize]) -> Result<Vec<Tensor>> {
        let last = wanted.iter().copied().max().unwrap_or(0);
        let (_, kept) = self.run(x, 0, last + 1, wanted)?;
        Ok(wanted
            .iter()
            .map(|w| {
                kept.iter()
                    .find(|(i, _)| i == w)
                    .map(|(_, t)| t.clone())
                    .expect("every wanted layer ran")
            })
            .collect())
    }

    /// The frozen part: layers before the split, output detached.
    pub fn forward_frozen(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.forward_range(x, 0, self.split)?.detach())
    }

    /// The trainable part: layers from the split to the end (block5_pool).
    pub fn forward_trainable(&self, h: &Tensor) -> Result<Tensor> {
        self.forward_range(h, self.split, LAYERS.len())
    }

    /// The whole base to block5_pool.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.forward_frozen(x)?;
        self.forward_trainable(&h)
    }

    /// Trainable variables with their tensor names.
    pub fn trainable_vars(&self) -> Vec<(String, Var)> {
        let mut out = Vec::new();
        for (spec, p) in conv_specs().zip(&self.convs) {
            let (wn, bn) = tensor_names(spec);
            if let Param::Trainable(v) = &p.weight {
                out.push((wn, v.clone()));
            }
            if let Param::Trainable(v) = &p.bias {
                out.push((bn, v.clone()));
            }
        }
        out
    }

    /// Every parameter with its tensor name (detached copies of the current values).
    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (spec, p) in conv_specs().zip(&self.convs) {
            let (wn, bn) = tensor_names(spec);
            out.push((wn, p.weight.detached()));
            out.push((bn, p.bias.detached()));
        }
        out
    }

    /// Overwrites parameter values from named tensors (e.g. restoring the best epoch). Names not in the base are
    /// ignored; shapes must match.
    pub fn load_values(&mut self, tensors: &HashMap<String, Tensor>) -> Result<()> {
        for (spec, p) in conv_specs().zip(self.convs.iter_mut()) {
            let (wn, bn) = tensor_names(spec);
            for (name, param) in [(wn, &mut p.weight), (bn, &mut p.bias)] {
                if let Some(t) = tensors.get(&name) {
                    if t.dims() != param.tensor().dims() {
                        return Err(Error::ShapeMismatch {
                            source_name: "checkpoint".into(),
                            tensor: name,
                            expected: format!("{:?}", param.tensor().dims()),
                            found: t.dims().to_vec(),
                        });
                    }
                    let t = t.to_dtype(DType::F32)?.to_device(&self.device)?;
                    match param {
                        Param::Frozen(f) => *f = t,
                        Param::Trainable(v) => v.set(&t)?,
                    }
                }
            }
        }
        Ok(())
    }

    /// Parameter count per block and how many of them train.
    pub fn param_counts(&self) -> Vec<BlockCount> {
        let mut blocks: Vec<BlockCount> = (1..=5)
            .map(|b| BlockCount {
                block: b,
                params: 0,
                trainable: 0,
            })
            .collect();
        for (i, spec) in LAYERS.iter().enumerate().filter(|(_, s)| s.is_conv) {
            let p = &self.convs[conv_slot(i)];
            let n = p.weight.tensor().elem_count() + p.bias.tensor().elem_count();
            blocks[spec.block - 1].params += n;
            if i >= self.split {
                blocks[spec.block - 1].trainable += n;
            }
        }
        blocks
    }

    /// Forward multiply-add FLOPs (×2) per image of the whole base at `size × size`.
    pub fn flops_per_image(&self, size: usize) -> f64 {
        let mut s = size;
        let mut total = 0.0;
        for (i, spec) in LAYERS.iter().enumerate() {
            if spec.is_conv {
                let w = self.convs[conv_slot(i)].weight.tensor();
                let (o, c) = (w.dim(0).unwrap_or(0), w.dim(1).unwrap_or(0));
                total += 2.0 * (o * c * 9 * s * s) as f64;
            } else {
                s /= 2;
            }
        }
        total
    }
}

/// Parameters of one block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BlockCount {
    pub block: usize,
    pub params: usize,
    pub trainable: usize,
}

/// Position of layer `i` (a conv) among the 13 convs.
fn conv_slot(i: usize) -> usize {
    LAYERS[..i].iter().filter(|l| l.is_conv).count()
}

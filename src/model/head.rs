//! The classifier head on top of the conv base: Flatten (or global average pooling) → Dense(hidden, ReLU) →
//! Dropout → Dense(1) for two classes (a logit, sigmoid) or Dense(K) for K classes (softmax).
//!
//! Tensor names follow PyTorch's `nn.Linear` (`head.fc1.weight` is `[hidden, in]`), so a checkpoint loads in
//! Python with `safetensors.torch.load_file` and maps onto `nn.Linear` layers as they are.

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::Compute;
use crate::nn::{dropout_mask, Dense, Init};

/// How the conv features become a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadKind {
    /// Flatten C×H×W in NCHW order (the course's Flatten; PyTorch's `torch.flatten(x, 1)`).
    #[default]
    Flatten,
    /// Global average pooling over H×W.
    Gap,
}

/// The head's shape, stored in checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadConfig {
    pub kind: HeadKind,
    /// Shape of the conv features `[C, H, W]`.
    pub in_shape: [usize; 3],
    /// Units of the hidden Dense layer (0 = no hidden layer).
    pub hidden: usize,
    /// Dropout rate after the hidden layer (before the output layer when there is none).
    pub dropout: f64,
    /// Outputs: 1 logit for two classes, K logits for K > 2.
    pub n_out: usize,
}

impl HeadConfig {
    pub fn in_features(&self) -> usize {
        match self.kind {
            HeadKind::Flatten => self.in_shape.iter().product(),
            HeadKind::Gap => self.in_shape[0],
        }
    }

    /// Outputs for a number of classes.
    pub fn outputs_for(classes: usize) -> usize {
        if classes <= 2 {
            1
        } else {
            classes
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::invalid(format!(
                "--dropout must be in [0, 1), got {}",
                self.dropout
            )));
        }
        if self.in_features() == 0 {
            return Err(Error::invalid(format!(
                "the conv features {:?} are empty; use a larger --size",
                self.in_shape
            )));
        }
        Ok(())
    }
}

/// The head.
#[derive(Debug, Clone)]
pub struct Head {
    pub config: HeadConfig,
    pub fc1: Option<Dense>,
    pub fc2: Dense,
}

impl Head {
    /// A freshly initialised head (seeded).
    pub fn new(config: HeadConfig, seed: u64, device: &Device) -> Result<Self> {
        config.validate()?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x4EAD);
        let inp = config.in_features();
        let (fc1, last_in) = if config.hidden > 0 {
            (
                Some(Dense::new(Init::Glorot, inp, config.hidden, &mut rng, device)?),
                config.hidden,
            )
        } else {
            (None, inp)
        };
        let fc2 = Dense::new(Init::Glorot, last_in, config.n_out, &mut rng, device)?;
        Ok(Head { config, fc1, fc2 })
    }

    /// Rebuilds a head from named tensors (`head.fc1.*`, `head.fc2.*`), checking shapes.
    pub fn from_tensors(
        config: HeadConfig,
        t: &HashMap<String, Tensor>,
        source: &str,
        device: &Device,
    ) -> Result<Self> {
        config.validate()?;
        let get = |name: &str, shape: &[usize]| -> Result<Var> {
            let x = t.get(name).ok_or_else(|| Error::MissingTensor {
                source_name: source.to_string(),
                tensor: name.to_string(),
                layer: "head".into(),
            })?;
            if x.dims() != shape {
                return Err(Error::ShapeMismatch {
                    source_name: source.to_string(),
                    tensor: name.to_string(),
                    expected: format!("{shape:?}"),
                    found: x.dims().to_vec(),
                });
            }
            Ok(Var::from_tensor(&x.to_dtype(DType::F32)?.to_device(device)?)?)
        };
        let inp = config.in_features();
        let (fc1, last_in) = if config.hidden > 0 {
            (
                Some(Dense {
                    weight: get("head.fc1.weight", &[config.hidden, inp])?,
                    bias: get("head.fc1.bias", &[config.hidden])?,
                }),
                config.hidden,
            )
        } else {
            (None, inp)
        };
        let fc2 = Dense {
            weight: get("head.fc2.weight", &[config.n_out, last_in])?,
            bias: get("head.fc2.bias", &[config.n_out])?,
        };
        Ok(Head { config, fc1, fc2 })
    }

    /// Logits `[N, n_out]`. `dropout_seed` turns dropout on (training) with a reproducible mask; `compute` is the
    /// base's (with bf16 the dense layers' products run in bf16 too, as under autocast).
    pub fn forward(&self, feats: &Tensor, dropout_seed: Option<u64>, compute: Compute) -> Result<Tensor> {
        let n = feats.dim(0)?;
        let mut x = match self.config.kind {
            HeadKind::Flatten => feats.flatten_from(1)?,
            HeadKind::Gap => feats.mean(D::Minus1)?.mean(D::Minus1)?,
        };
        if let Some(fc1) = &self.fc1 {
            x = fc1.forward_in(&x, compute)?.relu()?;
        }
        if let (Some(seed), p) = (dropout_seed, self.config.dropout) {
            if p > 0.0 {
                let mask = dropout_mask(n, x.dim(1)?, p, seed, feats.device())?;
                x = (x * mask)?;
            }
        }
        self.fc2.forward_in(&x, compute)
    }

    /// Class probabilities `[N, classes]` from logits (sigmoid for one logit → [1 − p, p]; softmax otherwise).
    pub fn probabilities(logits: &Tensor) -> Result<Tensor> {
        if logits.dim(1)? == 1 {
            let p = candle_nn::ops::sigmoid(logits)?;
            Ok(Tensor::cat(&[(1.0 - &p)?, p], 1)?)
        } else {
            Ok(candle_nn::ops::softmax(logits, D::Minus1)?)
        }
    }

    /// Trainable variables with their names.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v = Vec::new();
        if let Some(fc1) = &self.fc1 {
            v.push(("head.fc1.weight".to_string(), fc1.weight.clone()));
            v.push(("head.fc1.bias".to_string(), fc1.bias.clone()));
        }
        v.push(("head.fc2.weight".to_string(), self.fc2.weight.clone()));
        v.push(("head.fc2.bias".to_string(), self.fc2.bias.clone()));
        v
    }

    /// The kernels that L1/L2 apply to (every Dense weight, as `kernel_regularizer` on each Dense).
    pub fn kernels(&self) -> Vec<Var> {
        let mut v: Vec<Var> = self.fc1.iter().map(|d| d.weight.clone()).collect();
        v.push(self.fc2.weight.clone());
        v
    }

    pub fn named_tensors(&self) -> Vec<(String, Tensor)> {
        self.vars()
            .into_iter()
            .map(|(n, v)| (n, v.as_detached_tensor()))
            .collect()
    }

    /// Overwrites values from named tensors (missing names are left as they are).
    pub fn load_values(&self, t: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.vars() {
            if let Some(x) = t.get(&name) {
                if x.dims() != var.dims() {
                    return Err(Error::ShapeMismatch {
                        source_name: "checkpoint".into(),
                        tensor: name,
                        expected: format!("{:?} (the head this run builds)", var.dims()),
                        found: x.dims().to_vec(),
                    });
                }
                var.set(&x.to_dtype(DType::F32)?.to_device(var.device())?)?;
            }
        }
        Ok(())
    }

    pub fn param_count(&self) -> usize {
        self.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }
}

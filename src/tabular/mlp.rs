//! A multilayer perceptron built from flags: hidden layer sizes, activation, dropout, batch or layer
//! normalization (Keras or PyTorch defaults), weight initialisation.

use std::cell::RefCell;
use std::str::FromStr;

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::head::dropout_mask;

/// SELU constants (Klambauer et al.; Keras and PyTorch use the same).
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_3;

/// PReLU's starting slope: Keras' `alpha_initializer="zeros"`.
pub const PRELU_START: f64 = 0.0;

/// Hidden-layer activation.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Activation {
    Relu,
    /// max(x, αx), 0 < α < 1. Keras' `LeakyReLU` layer defaults to α 0.3, while `activation="leaky_relu"` uses
    /// 0.2; PyTorch's default is 0.01.
    LeakyRelu {
        alpha: f64,
    },
    /// x for x > 0, α(eˣ − 1) otherwise; α 1.0 in both.
    Elu {
        alpha: f64,
    },
    /// scale · elu(x, α) with the SELU constants.
    Selu,
    /// max(0, x) + a·min(0, x) with a learned per unit, starting at 0 as Keras' `PReLU`
    /// (`alpha_initializer="zeros"`; PyTorch starts at 0.25).
    Prelu,
    Sigmoid,
    Tanh,
}

impl FromStr for Activation {
    type Err = Error;
    /// `relu`, `leaky_relu[:α]` (α 0.3, Keras), `elu[:α]` (α 1), `selu`, `prelu`, `sigmoid`, `tanh`.
    fn from_str(s: &str) -> Result<Self> {
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let num = |d: f64| -> Result<f64> {
            match arg {
                None => Ok(d),
                Some(a) => a
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| Error::invalid(format!("--activation {s}: '{a}' is not a number"))),
            }
        };
        Ok(match name {
            "relu" => Activation::Relu,
            "leaky_relu" | "leakyrelu" => {
                let alpha = num(0.3)?;
                if !(alpha > 0.0 && alpha < 1.0) {
                    return Err(Error::invalid(format!(
                        "--activation {s}: the leaky slope must be in (0, 1), e.g. leaky_relu:0.3 (Keras' LeakyReLU \
                         layer) or leaky_relu:0.01 (PyTorch)"
                    )));
                }
                Activation::LeakyRelu { alpha }
            }
            "elu" => Activation::Elu { alpha: num(1.0)? },
            "selu" => Activation::Selu,
            "prelu" => Activation::Prelu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            _ => {
                return Err(Error::invalid(format!(
                    "--activation {s}: expected relu, leaky_relu[:α], elu[:α], selu, prelu, sigmoid or tanh"
                )))
            }
        })
    }
}

impl Activation {
    pub fn name(&self) -> String {
        match self {
            Activation::Relu => "relu".into(),
            Activation::LeakyRelu { alpha } => format!("leaky_relu:{alpha}"),
            Activation::Elu { alpha } => format!("elu:{alpha}"),
            Activation::Selu => "selu".into(),
            Activation::Prelu => "prelu".into(),
            Activation::Sigmoid => "sigmoid".into(),
            Activation::Tanh => "tanh".into(),
        }
    }

    fn apply(&self, z: &Tensor, prelu: Option<&Var>) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => z.relu()?,
            Activation::LeakyRelu { alpha } => z.maximum(&(z * *alpha)?)?,
            Activation::Elu { alpha } => elu(z, *alpha)?,
            Activation::Selu => (elu(z, SELU_ALPHA)? * SELU_SCALE)?,
            Activation::Prelu => {
                let a = prelu.expect("prelu slopes").as_tensor();
                (z.relu()? + z.minimum(0.0)?.broadcast_mul(a)?)?
            }
            Activation::Sigmoid => candle_nn::ops::sigmoid(z)?,
            Activation::Tanh => z.tanh()?,
        })
    }

    /// f(x) for plots (PReLU drawn with its starting slope, [`PRELU_START`]).
    pub fn value(&self, x: f64) -> f64 {
        match *self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * x
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    x
                } else {
                    alpha * (x.exp() - 1.0)
                }
            }
            Activation::Selu => SELU_SCALE * if x > 0.0 { x } else { SELU_ALPHA * (x.exp() - 1.0) },
            Activation::Prelu => {
                if x > 0.0 {
                    x
                } else {
                    PRELU_START * x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Tanh => x.tanh(),
        }
    }

    /// f′(x) for plots.
    pub fn derivative(&self, x: f64) -> f64 {
        match *self {
            Activation::Relu => f64::from(u8::from(x > 0.0)),
            Activation::LeakyRelu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    alpha
                }
            }
            Activation::Elu { alpha } => {
                if x > 0.0 {
                    1.0
                } else {
                    alpha * x.exp()
                }
            }
            Activation::Selu => SELU_SCALE * if x > 0.0 { 1.0 } else { SELU_ALPHA * x.exp() },
            Activation::Prelu => {
                if x > 0.0 {
                    1.0
                } else {
                    PRELU_START
                }
            }
            Activation::Sigmoid => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 - s)
            }
            Activation::Tanh => 1.0 - x.tanh().powi(2),
        }
    }
}

/// `x` for x > 0, `α(eˣ − 1)` otherwise, from differentiable ops.
fn elu(z: &Tensor, alpha: f64) -> Result<Tensor> {
    let neg = ((z.minimum(0.0)?.exp()? - 1.0)? * alpha)?;
    Ok((z.relu()? + neg)?)
}

/// Weight initialisation of the Dense kernels (biases start at 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Init {
    Zeros,
    /// N(0, σ²).
    Normal {
        std: f64,
    },
    /// Glorot (Xavier) uniform, Keras' default.
    Glorot,
    /// He normal, σ = √(2 / fan_in) (PyTorch's Kaiming default is the uniform form).
    He,
    /// LeCun normal, σ = √(1 / fan_in) (for SELU).
    Lecun,
}

impl FromStr for Init {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.split_once(':') {
            Some(("normal", v)) => Init::Normal {
                std: v
                    .parse::<f64>()
                    .ok()
                    .filter(|v| *v >= 0.0)
                    .ok_or_else(|| Error::invalid(format!("--init {s}: '{v}' is not a standard deviation")))?,
            },
            None if s == "zeros" => Init::Zeros,
            None if s == "normal" => Init::Normal { std: 0.05 },
            None if s == "glorot" => Init::Glorot,
            None if s == "he" => Init::He,
            None if s == "lecun" => Init::Lecun,
            _ => {
                return Err(Error::invalid(format!(
                    "--init {s}: expected zeros, normal:σ, glorot, he or lecun"
                )))
            }
        })
    }
}

impl Init {
    pub fn name(&self) -> String {
        match self {
            Init::Zeros => "zeros".into(),
            Init::Normal { std } => format!("normal:{std}"),
            Init::Glorot => "glorot".into(),
            Init::He => "he".into(),
            Init::Lecun => "lecun".into(),
        }
    }

    fn sample(&self, fan_in: usize, fan_out: usize, rng: &mut rand::rngs::StdRng) -> Vec<f32> {
        let n = fan_in * fan_out;
        let normal = |std: f64, rng: &mut rand::rngs::StdRng| -> Vec<f32> {
            let d = Normal::new(0.0, std.max(0.0)).expect("valid normal");
            (0..n).map(|_| d.sample(rng) as f32).collect()
        };
        match *self {
            Init::Zeros => vec![0.0; n],
            Init::Normal { std } => normal(std, rng),
            Init::Glorot => {
                let limit = (6.0 / (fan_in + fan_out) as f64).sqrt();
                (0..n).map(|_| rng.random_range(-limit..limit) as f32).collect()
            }
            Init::He => normal((2.0 / fan_in as f64).sqrt(), rng),
            Init::Lecun => normal((1.0 / fan_in as f64).sqrt(), rng),
        }
    }
}

/// Normalization after each hidden Dense layer (before its activation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Norm {
    #[default]
    None,
    Batch,
    Layer,
}

/// Whose defaults the normalization layers take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum NormDefaults {
    /// Keras: batch-norm momentum 0.99 (running = 0.99·running + 0.01·batch), ε 1e-3 (also layer norm).
    #[default]
    Keras,
    /// PyTorch: momentum 0.1 (running = 0.9·running + 0.1·batch, unbiased variance), ε 1e-5.
    Torch,
}

impl NormDefaults {
    /// (weight of the running value, ε).
    fn params(self) -> (f64, f64) {
        match self {
            NormDefaults::Keras => (0.99, 1e-3),
            NormDefaults::Torch => (0.9, 1e-5),
        }
    }
}

/// The network's shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpConfig {
    pub inputs: usize,
    pub layers: Vec<usize>,
    pub outputs: usize,
    pub activation: Activation,
    pub dropout: f64,
    pub norm: Norm,
    pub norm_defaults: NormDefaults,
    pub init: Init,
}

impl MlpConfig {
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{}-{}-{} {}",
            self.inputs,
            self.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("-"),
            self.outputs,
            self.activation.name()
        );
        if self.dropout > 0.0 {
            s.push_str(&format!(", dropout {}", self.dropout));
        }
        if self.norm != Norm::None {
            s.push_str(&format!(", {:?} norm ({:?} defaults)", self.norm, self.norm_defaults).to_lowercase());
        }
        s.push_str(&format!(", init {}", self.init.name()));
        s
    }
}

struct NormLayer {
    kind: Norm,
    gamma: Var,
    beta: Var,
    running_mean: RefCell<Tensor>,
    running_var: RefCell<Tensor>,
    keep: f64,
    eps: f64,
    unbiased: bool,
}

/// A dense layer `y = x Wᵀ + b` with `W` `[out, in]`.
pub struct Dense {
    pub weight: Var,
    pub bias: Var,
}

/// The MLP.
pub struct Mlp {
    pub config: MlpConfig,
    pub hidden: Vec<Dense>,
    pub output: Dense,
    norms: Vec<Option<NormLayer>>,
    prelu: Vec<Option<Var>>,
}

/// Outputs of a forward pass.
pub struct Forward {
    pub out: Tensor,
    /// Hidden pre-activations (after normalization), one `[N, units]` per layer.
    pub pre: Vec<Tensor>,
}

impl Mlp {
    pub fn new(config: MlpConfig, seed: u64, device: &Device) -> Result<Self> {
        if !(0.0..1.0).contains(&config.dropout) {
            return Err(Error::invalid(format!(
                "--dropout must be in [0, 1), got {}",
                config.dropout
            )));
        }
        if config.layers.contains(&0) {
            return Err(Error::invalid("--layers: every layer needs at least one unit"));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x41F);
        let mut fan_in = config.inputs;
        let mut hidden = Vec::new();
        let mut norms = Vec::new();
        let mut prelu = Vec::new();
        let (keep, eps) = config.norm_defaults.params();
        for &units in &config.layers {
            let w = config.init.sample(fan_in, units, &mut rng);
            hidden.push(Dense {
                weight: Var::from_tensor(&Tensor::from_vec(w, (units, fan_in), device)?)?,
                bias: Var::from_tensor(&Tensor::zeros(units, DType::F32, device)?)?,
            });
            norms.push(match config.norm {
                Norm::None => None,
                kind => Some(NormLayer {
                    kind,
                    gamma: Var::from_tensor(&Tensor::ones(units, DType::F32, device)?)?,
                    beta: Var::from_tensor(&Tensor::zeros(units, DType::F32, device)?)?,
                    running_mean: RefCell::new(Tensor::zeros(units, DType::F32, device)?),
                    running_var: RefCell::new(Tensor::ones(units, DType::F32, device)?),
                    keep,
                    eps,
                    unbiased: config.norm_defaults == NormDefaults::Torch,
                }),
            });
            prelu.push(match config.activation {
                Activation::Prelu => Some(Var::from_tensor(&Tensor::full(PRELU_START as f32, units, device)?)?),
                _ => None,
            });
            fan_in = units;
        }
        let w = config.init.sample(fan_in, config.outputs, &mut rng);
        let output = Dense {
            weight: Var::from_tensor(&Tensor::from_vec(w, (config.outputs, fan_in), device)?)?,
            bias: Var::from_tensor(&Tensor::zeros(config.outputs, DType::F32, device)?)?,
        };
        Ok(Mlp {
            config,
            hidden,
            output,
            norms,
            prelu,
        })
    }

    /// Forward pass; `dropout_seed` turns training mode on (dropout, batch statistics and their running update).
    pub fn forward(&self, x: &Tensor, dropout_seed: Option<u64>) -> Result<Forward> {
        let train = dropout_seed.is_some();
        let mut h = x.clone();
        let mut pre = Vec::new();
        for (l, d) in self.hidden.iter().enumerate() {
            let mut z = h
                .matmul(&d.weight.as_tensor().t()?)?
                .broadcast_add(d.bias.as_tensor())?;
            if let Some(n) = &self.norms[l] {
                z = normalize(n, &z, train)?;
            }
            pre.push(z.clone());
            h = self.config.activation.apply(&z, self.prelu[l].as_ref())?;
            if let (Some(seed), p) = (dropout_seed, self.config.dropout) {
                if p > 0.0 {
                    let mask = dropout_mask(
                        h.dim(0)?,
                        h.dim(1)?,
                        p,
                        seed ^ (l as u64 + 1).wrapping_mul(0x9E37_79B9),
                        h.device(),
                    )?;
                    h = (h * mask)?;
                }
            }
        }
        let out = h
            .matmul(&self.output.weight.as_tensor().t()?)?
            .broadcast_add(self.output.bias.as_tensor())?;
        Ok(Forward { out, pre })
    }

    /// Every trainable variable with a name.
    pub fn vars(&self) -> Vec<(String, Var)> {
        let mut v = Vec::new();
        for (l, d) in self.hidden.iter().enumerate() {
            v.push((format!("dense{l}.weight"), d.weight.clone()));
            v.push((format!("dense{l}.bias"), d.bias.clone()));
            if let Some(n) = &self.norms[l] {
                v.push((format!("norm{l}.gamma"), n.gamma.clone()));
                v.push((format!("norm{l}.beta"), n.beta.clone()));
            }
            if let Some(a) = &self.prelu[l] {
                v.push((format!("prelu{l}.alpha"), a.clone()));
            }
        }
        v.push(("output.weight".into(), self.output.weight.clone()));
        v.push(("output.bias".into(), self.output.bias.clone()));
        v
    }

    /// The Dense kernels (what L1/L2 apply to), hidden layers then output.
    pub fn kernels(&self) -> Vec<Var> {
        let mut k: Vec<Var> = self.hidden.iter().map(|d| d.weight.clone()).collect();
        k.push(self.output.weight.clone());
        k
    }

    /// A copy of every value (variables and running statistics), to restore later.
    pub fn snapshot(&self) -> Result<Vec<Tensor>> {
        let mut s: Vec<Tensor> = self
            .vars()
            .iter()
            .map(|(_, v)| v.as_detached_tensor().copy())
            .collect::<candle_core::Result<_>>()?;
        for n in self.norms.iter().flatten() {
            s.push(n.running_mean.borrow().clone());
            s.push(n.running_var.borrow().clone());
        }
        Ok(s)
    }

    pub fn restore(&self, snap: &[Tensor]) -> Result<()> {
        let vars = self.vars();
        for ((_, v), t) in vars.iter().zip(snap) {
            v.set(t)?;
        }
        let mut rest = snap[vars.len()..].iter();
        for n in self.norms.iter().flatten() {
            if let (Some(m), Some(v)) = (rest.next(), rest.next()) {
                *n.running_mean.borrow_mut() = m.clone();
                *n.running_var.borrow_mut() = v.clone();
            }
        }
        Ok(())
    }
}

fn normalize(n: &NormLayer, z: &Tensor, train: bool) -> Result<Tensor> {
    let zn = match n.kind {
        Norm::Batch => {
            let (mean, var) = if train {
                let mean = z.mean_keepdim(0)?;
                let var = z.broadcast_sub(&mean)?.sqr()?.mean_keepdim(0)?;
                let rows = z.dim(0)? as f64;
                let stat_var = if n.unbiased && rows > 1.0 {
                    (var.detach() * (rows / (rows - 1.0)))?
                } else {
                    var.detach()
                };
                let rm = n.running_mean.borrow().clone();
                let rv = n.running_var.borrow().clone();
                *n.running_mean.borrow_mut() = ((rm * n.keep)? + (mean.detach().squeeze(0)? * (1.0 - n.keep))?)?;
                *n.running_var.borrow_mut() = ((rv * n.keep)? + (stat_var.squeeze(0)? * (1.0 - n.keep))?)?;
                (mean, var)
            } else {
                (
                    n.running_mean.borrow().unsqueeze(0)?,
                    n.running_var.borrow().unsqueeze(0)?,
                )
            };
            z.broadcast_sub(&mean)?.broadcast_div(&(var + n.eps)?.sqrt()?)?
        }
        Norm::Layer => {
            let mean = z.mean_keepdim(D::Minus1)?;
            let c = z.broadcast_sub(&mean)?;
            let var = c.sqr()?.mean_keepdim(D::Minus1)?;
            c.broadcast_div(&(var + n.eps)?.sqrt()?)?
        }
        Norm::None => return Ok(z.clone()),
    };
    Ok(zn
        .broadcast_mul(n.gamma.as_tensor())?
        .broadcast_add(n.beta.as_tensor())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar formulas (drawn in the activations lab) and the tensor ones (trained) are the same functions.
    #[test]
    fn plotted_activation_values_equal_the_trained_ones() {
        let xs: Vec<f32> = (0..81).map(|k| -4.0 + k as f32 * 0.1).collect();
        let z = Tensor::from_vec(xs.clone(), (1, xs.len()), &Device::Cpu).unwrap();
        let slopes = Var::from_tensor(&Tensor::full(PRELU_START as f32, xs.len(), &Device::Cpu).unwrap()).unwrap();
        for a in [
            Activation::Relu,
            Activation::LeakyRelu { alpha: 0.3 },
            Activation::Elu { alpha: 1.0 },
            Activation::Selu,
            Activation::Prelu,
            Activation::Sigmoid,
            Activation::Tanh,
        ] {
            let y: Vec<f32> = a
                .apply(&z, Some(&slopes))
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            for (x, y) in xs.iter().zip(&y) {
                let v = a.value(f64::from(*x));
                assert!(
                    (v - f64::from(*y)).abs() < 1e-5,
                    "{}({x}): plotted {v}, trained {y}",
                    a.name()
                );
            }
        }
    }
}

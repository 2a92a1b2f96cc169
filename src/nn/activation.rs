//! Hidden-layer activations: the tensor form that trains and the scalar form (with its derivative) that the
//! activations lab draws, tied together by a test.

use std::str::FromStr;

use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

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

    /// The activation of pre-activations `z` (`prelu`: PReLU's learned slopes, one per unit).
    pub fn apply(&self, z: &Tensor, prelu: Option<&Var>) -> Result<Tensor> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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

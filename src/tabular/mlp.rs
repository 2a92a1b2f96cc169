//! A multilayer perceptron built from flags: hidden layer sizes, activation, dropout, batch or layer
//! normalization (Keras or PyTorch defaults), weight initialisation — from the shared layers of [`crate::nn`].

use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{dropout_mask, Activation, Dense, Init, Norm, NormDefaults, NormLayer, PRELU_START};

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
        for &units in &config.layers {
            hidden.push(Dense::new(config.init, fan_in, units, &mut rng, device)?);
            norms.push(NormLayer::new(config.norm, config.norm_defaults, units, device)?);
            prelu.push(match config.activation {
                Activation::Prelu => Some(Var::from_tensor(&Tensor::full(PRELU_START as f32, units, device)?)?),
                _ => None,
            });
            fan_in = units;
        }
        let output = Dense::new(config.init, fan_in, config.outputs, &mut rng, device)?;
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
                z = n.forward(&z, train)?;
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
            s.extend(n.running_stats());
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
                n.set_running_stats(m, v);
            }
        }
        Ok(())
    }
}

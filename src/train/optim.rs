//! Optimizers with Keras semantics (RMSprop as Keras: ε inside the square root), written with candle tensor ops
//! so they run on any device. One implementation, shared by the image trainer and the tabular labs.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Keras RMSprop: v = ρv + (1−ρ)g², w −= lr·g/√(v + ε), ρ 0.9, ε 1e-7.
    Rmsprop,
    /// Keras Adam: β1 0.9, β2 0.999, ε 1e-7.
    Adam,
    /// SGD with optional (Nesterov) momentum, Keras form.
    Sgd,
}

/// Optimizer settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimConfig {
    pub kind: OptimizerKind,
    pub lr: f64,
    /// RMSprop's ρ.
    pub rho: f64,
    pub epsilon: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// SGD momentum (0 = plain SGD).
    pub momentum: f64,
    pub nesterov: bool,
}

impl OptimConfig {
    pub fn new(kind: OptimizerKind, lr: f64) -> Self {
        OptimConfig {
            kind,
            lr,
            rho: 0.9,
            epsilon: 1e-7,
            beta1: 0.9,
            beta2: 0.999,
            momentum: 0.0,
            nesterov: false,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(Error::invalid(format!(
                "--lr must be a positive number, got {}",
                self.lr
            )));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(Error::invalid(format!(
                "--momentum must be in [0, 1), got {}",
                self.momentum
            )));
        }
        Ok(())
    }

    fn slots(&self) -> &'static [&'static str] {
        match self.kind {
            OptimizerKind::Rmsprop => &["velocity"],
            OptimizerKind::Adam => &["m", "v"],
            OptimizerKind::Sgd if self.momentum > 0.0 => &["momentum"],
            OptimizerKind::Sgd => &[],
        }
    }
}

/// An optimizer over named variables.
pub struct Optimizer {
    pub config: OptimConfig,
    params: Vec<(String, Var)>,
    state: HashMap<String, Vec<Tensor>>,
    /// Steps taken (Adam's t).
    pub steps: u64,
}

impl Optimizer {
    pub fn new(config: OptimConfig, params: Vec<(String, Var)>) -> Result<Self> {
        config.validate()?;
        let mut state = HashMap::new();
        for (name, v) in &params {
            let slots = config
                .slots()
                .iter()
                .map(|_| v.as_tensor().zeros_like())
                .collect::<candle_core::Result<Vec<_>>>()?;
            state.insert(name.clone(), slots);
        }
        Ok(Optimizer {
            config,
            params,
            state,
            steps: 0,
        })
    }

    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    pub fn params(&self) -> &[(String, Var)] {
        &self.params
    }

    /// One update from the gradients of the last backward pass. Variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.steps += 1;
        let c = &self.config;
        let t = self.steps as i32;
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            // Gradients are built from ops on the step's activations; detached, the optimizer state does not keep
            // every step's graph alive (a leak of the whole forward pass per step otherwise).
            let g = &g.detach();
            let w = &var.as_detached_tensor();
            let slots = self.state.get_mut(name).expect("state for every parameter");
            let new_w = match c.kind {
                OptimizerKind::Rmsprop => {
                    let v = ((&slots[0] * c.rho)? + (g.sqr()? * (1.0 - c.rho))?)?;
                    let upd = (g / (&v + c.epsilon)?.sqrt()?)?;
                    slots[0] = v.detach();
                    (w - (upd * c.lr)?)?
                }
                OptimizerKind::Adam => {
                    let m = ((&slots[0] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
                    let v = ((&slots[1] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
                    let alpha = c.lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t));
                    let upd = (&m / (v.sqrt()? + c.epsilon)?)?;
                    slots[0] = m.detach();
                    slots[1] = v.detach();
                    (w - (upd * alpha)?)?
                }
                OptimizerKind::Sgd if c.momentum > 0.0 => {
                    let m = ((&slots[0] * c.momentum)? - (g * c.lr)?)?;
                    let nw = if c.nesterov {
                        ((w + (&m * c.momentum)?)? - (g * c.lr)?)?
                    } else {
                        (w + &m)?
                    };
                    slots[0] = m.detach();
                    nw
                }
                OptimizerKind::Sgd => (w - (g * c.lr)?)?,
            };
            var.set(&new_w)?;
        }
        Ok(())
    }

    /// The state as named tensors (`optimizer.<param>.<slot>`), for checkpoints.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (name, _) in &self.params {
            for (slot, t) in self.config.slots().iter().zip(&self.state[name]) {
                out.push((format!("optimizer.{name}.{slot}"), t.clone()));
            }
        }
        out
    }

    /// Restores the state written by [`Self::state_tensors`].
    pub fn load_state(&mut self, t: &HashMap<String, Tensor>, steps: u64) -> Result<()> {
        for (name, var) in &self.params {
            for (i, slot) in self.config.slots().iter().enumerate() {
                let key = format!("optimizer.{name}.{slot}");
                let x = t
                    .get(&key)
                    .ok_or_else(|| Error::Other(format!("checkpoint has no optimizer state '{key}'")))?;
                self.state.get_mut(name).expect("state")[i] = x.to_device(var.device())?;
            }
        }
        self.steps = steps;
        Ok(())
    }
}

/// Keras `ReduceLROnPlateau` (monitor, factor, patience, min_delta 1e-4, cooldown, min_lr).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReduceLrOnPlateau {
    pub monitor: String,
    pub factor: f64,
    pub patience: usize,
    pub min_delta: f64,
    pub cooldown: usize,
    pub min_lr: f64,
    pub wait: usize,
    pub cooldown_counter: usize,
    pub best: Option<f64>,
}

impl ReduceLrOnPlateau {
    pub fn new(monitor: &str, factor: f64, patience: usize, min_lr: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&factor) || factor == 0.0 {
            return Err(Error::invalid(format!(
                "--reduce-lr-factor must be in (0, 1), got {factor}"
            )));
        }
        Ok(ReduceLrOnPlateau {
            monitor: monitor.to_string(),
            factor,
            patience,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr,
            wait: 0,
            cooldown_counter: 0,
            best: None,
        })
    }

    /// Feeds the epoch's monitored value; returns the new learning rate when it changes.
    pub fn on_epoch_end(&mut self, value: Option<f64>, lr: f64) -> Option<f64> {
        let v = value?;
        let max = super::early_stop::Mode::Auto.resolve(&self.monitor) == super::early_stop::Mode::Max;
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        let better = match self.best {
            None => true,
            Some(b) if max => v > b + self.min_delta,
            Some(b) => v < b - self.min_delta,
        };
        if better {
            self.best = Some(v);
            self.wait = 0;
            return None;
        }
        if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience && lr > self.min_lr {
                let new_lr = (lr * self.factor).max(self.min_lr);
                self.cooldown_counter = self.cooldown;
                self.wait = 0;
                return Some(new_lr);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn one_step(kind: OptimizerKind, momentum: f64, nesterov: bool) -> (f32, f32) {
        let w = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut c = OptimConfig::new(kind, 0.1);
        c.momentum = momentum;
        c.nesterov = nesterov;
        let mut o = Optimizer::new(c, vec![("w".into(), w.clone())]).unwrap();
        for _ in 0..2 {
            // loss = Σ w² → g = 2w
            let g = w.as_tensor().sqr().unwrap().sum_all().unwrap().backward().unwrap();
            o.step(&g).unwrap();
        }
        let v = w.as_tensor().to_vec1::<f32>().unwrap();
        (v[0], v[1])
    }

    #[test]
    fn rmsprop_matches_the_keras_formula() {
        // Step 1: g = 2, v = 0.1·4 = 0.4, w = 1 − 0.1·2/√(0.4 + 1e-7).
        let w1 = 1.0 - 0.1 * 2.0 / (0.4f64 + 1e-7).sqrt();
        let g2 = 2.0 * w1;
        let v2 = 0.9 * 0.4 + 0.1 * g2 * g2;
        let w2 = w1 - 0.1 * g2 / (v2 + 1e-7).sqrt();
        let (a, _) = one_step(OptimizerKind::Rmsprop, 0.0, false);
        assert!((a as f64 - w2).abs() < 1e-5, "{a} vs {w2}");
    }

    #[test]
    fn adam_and_sgd_move_downhill_as_keras() {
        // Adam's first step is −lr·sign(g) (bias-corrected), the second nearly so.
        let (a, b) = one_step(OptimizerKind::Adam, 0.0, false);
        assert!((a - 0.8).abs() < 1e-3 && (b + 1.8).abs() < 1e-3, "{a} {b}");
        // Plain SGD: w ← w − 0.1·2w twice: 1 → 0.8 → 0.64.
        let (a, _) = one_step(OptimizerKind::Sgd, 0.0, false);
        assert!((a - 0.64).abs() < 1e-6);
        // Momentum 0.5: m1 = −0.2, w1 = 0.8; g = 1.6, m2 = −0.1 − 0.16 = −0.26, w2 = 0.54.
        let (a, _) = one_step(OptimizerKind::Sgd, 0.5, false);
        assert!((a - 0.54).abs() < 1e-6, "{a}");
        // Nesterov: w1 = 1 + 0.5·(−0.2) − 0.2 = 0.7; g = 1.4, m2 = −0.1 − 0.14 = −0.24, w2 = 0.7 − 0.12 − 0.14 = 0.44.
        let (a, _) = one_step(OptimizerKind::Sgd, 0.5, true);
        assert!((a - 0.44).abs() < 1e-6, "{a}");
    }

    #[test]
    fn reduce_on_plateau_waits_then_cuts() {
        let mut r = ReduceLrOnPlateau::new("val_loss", 0.5, 2, 1e-6).unwrap();
        assert_eq!(r.on_epoch_end(Some(1.0), 0.1), None);
        assert_eq!(r.on_epoch_end(Some(1.0), 0.1), None);
        assert_eq!(r.on_epoch_end(Some(1.0), 0.1), Some(0.05));
        assert_eq!(r.on_epoch_end(Some(0.5), 0.05), None);
    }
}

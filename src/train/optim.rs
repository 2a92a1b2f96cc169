//! Optimizers with Keras semantics (RMSprop as Keras: ε inside the square root), written with candle tensor ops
//! so they run on any device. One implementation, shared by the image trainer and the tabular labs.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::kernels::Kernels;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// Keras RMSprop: v = ρv + (1−ρ)g², w −= lr·g/√(v + ε), ρ 0.9, ε 1e-7.
    Rmsprop,
    /// Keras Adam: β1 0.9, β2 0.999, ε 1e-7.
    Adam,
    /// SGD with optional (Nesterov) momentum, Keras form.
    Sgd,
}

impl OptimizerKind {
    /// The name as Keras and the course write it.
    pub fn display_name(self) -> &'static str {
        match self {
            OptimizerKind::Rmsprop => "RMSprop",
            OptimizerKind::Adam => "Adam",
            OptimizerKind::Sgd => "SGD",
        }
    }
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
    /// Fast: fused in-place CPU updates where they apply; portable: candle tensor ops only.
    kernels: Kernels,
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
            kernels: Kernels::Fast,
        })
    }

    /// Selects the fused CPU updates (fast) or candle's tensor ops only (portable; the GPU's graph).
    pub fn set_kernels(&mut self, kernels: Kernels) {
        self.kernels = kernels;
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
    ///
    /// On the CPU (f32, contiguous) each parameter is updated in place by fused kernels: one pass per state slot
    /// and one for the weights. Elsewhere the same formulas run as candle tensor ops.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.step_with(grads, self.kernels.own_ops())
    }

    fn step_with(&mut self, grads: &GradStore, allow_fused: bool) -> Result<()> {
        self.steps += 1;
        let c = &self.config;
        let t = self.steps as i32;
        for (name, var) in &self.params {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            // Gradients are built from ops on the step's activations; detached, the optimizer state does not keep
            // every step's graph alive (a leak of the whole forward pass per step otherwise).
            // A gradient that arrives as a strided view (a weight used through its transpose) is copied once so
            // that the fused kernels apply instead of ten candle ops; a contiguous one is not copied.
            let g = &g.detach().contiguous()?;
            let w = &var.as_detached_tensor();
            let slots = self.state.get_mut(name).expect("state for every parameter");
            if allow_fused && fused::applies(w, g, slots) {
                fused::step(c, t, w, g, slots)?;
                continue;
            }
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
                    let upd = (&m / (v.sqrt()? + c.epsilon)?)?;
                    slots[0] = m.detach();
                    slots[1] = v.detach();
                    (w - (upd * adam_alpha(c, t))?)?
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
                // A private, contiguous copy: the CPU optimizer updates its state in place.
                self.state.get_mut(name).expect("state")[i] = x.to_device(var.device())?.contiguous()?.copy()?;
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

/// Adam's bias-corrected step size at step `t`.
fn adam_alpha(c: &OptimConfig, t: i32) -> f64 {
    c.lr * (1.0 - c.beta2.powi(t)).sqrt() / (1.0 - c.beta1.powi(t))
}

/// In-place CPU kernels for the optimizer updates. Through candle's tensor ops an RMSprop step is about ten passes
/// over every parameter, each allocating a new tensor (a sixth of a block5 fine-tuning step); fused it is one pass
/// per state slot plus one for the weights, split over the rayon pool.
mod fused {
    use candle_core::{CpuStorage, DType, InplaceOp2, InplaceOp3, Layout, Tensor};
    use rayon::prelude::*;

    use super::{adam_alpha, OptimConfig, OptimizerKind};

    /// Elements per parallel chunk (small parameters run on the calling thread).
    const CHUNK: usize = 1 << 14;

    /// Whether the fused kernels can update this parameter: CPU, f32, everything contiguous.
    pub(super) fn applies(w: &Tensor, g: &Tensor, slots: &[Tensor]) -> bool {
        let ok = |t: &Tensor| t.device().is_cpu() && t.dtype() == DType::F32 && t.is_contiguous();
        ok(w) && ok(g) && slots.iter().all(ok)
    }

    pub(super) fn step(c: &OptimConfig, t: i32, w: &Tensor, g: &Tensor, slots: &[Tensor]) -> candle_core::Result<()> {
        let f = |x: f64| x as f32;
        // `d ← a·d + b·x` (`x²` when `square`).
        let ema = |a: f64, b: f64, square: bool| Ema {
            a: f(a),
            b: f(b),
            square,
        };
        let eps = f(c.epsilon);
        match c.kind {
            OptimizerKind::Rmsprop => {
                slots[0].inplace_op2(g, &ema(c.rho, 1.0 - c.rho, true))?;
                w.inplace_op3(g, &slots[0], &Update::Rmsprop { lr: f(c.lr), eps })
            }
            OptimizerKind::Adam => {
                slots[0].inplace_op2(g, &ema(c.beta1, 1.0 - c.beta1, false))?;
                slots[1].inplace_op2(g, &ema(c.beta2, 1.0 - c.beta2, true))?;
                w.inplace_op3(
                    &slots[0],
                    &slots[1],
                    &Update::Adam {
                        lr: f(adam_alpha(c, t)),
                        eps,
                    },
                )
            }
            OptimizerKind::Sgd if c.momentum > 0.0 => {
                slots[0].inplace_op2(g, &ema(c.momentum, -c.lr, false))?;
                if c.nesterov {
                    w.inplace_op3(
                        &slots[0],
                        g,
                        &Update::Axpy2 {
                            c1: f(c.momentum),
                            c2: -f(c.lr),
                        },
                    )
                } else {
                    w.inplace_op2(&slots[0], &ema(1.0, 1.0, false))
                }
            }
            OptimizerKind::Sgd => w.inplace_op2(g, &ema(1.0, -c.lr, false)),
        }
    }

    fn range(l: &Layout) -> candle_core::Result<std::ops::Range<usize>> {
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("optimizer: non-contiguous tensor".into()))?;
        Ok(a..b)
    }

    fn slice<'a>(s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
        Ok(&s.as_slice::<f32>()?[range(l)?])
    }

    fn slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout) -> candle_core::Result<&'a mut [f32]> {
        match s {
            CpuStorage::F32(v) => Ok(&mut v[range(l)?]),
            _ => Err(candle_core::Error::Msg("optimizer: expected f32 storage".into())),
        }
    }

    fn check_len(d: &[f32], s: &[f32]) -> candle_core::Result<()> {
        if d.len() != s.len() {
            candle_core::bail!("optimizer: {} elements updated from {}", d.len(), s.len());
        }
        Ok(())
    }

    /// Runs `k` over matching chunks of `d` and `x`, `y`, in parallel when the tensor is large.
    fn for_chunks(d: &mut [f32], x: &[f32], y: &[f32], k: impl Fn(&mut [f32], &[f32], &[f32]) + Sync) {
        if d.len() <= CHUNK {
            k(d, x, y);
        } else {
            d.par_chunks_mut(CHUNK)
                .zip(x.par_chunks(CHUNK))
                .zip(y.par_chunks(CHUNK))
                .for_each(|((d, x), y)| k(d, x, y));
        }
    }

    /// `d ← a·d + b·x` (`x²` when `square`).
    struct Ema {
        a: f32,
        b: f32,
        square: bool,
    }

    impl InplaceOp2 for Ema {
        fn name(&self) -> &'static str {
            "catdog-optim-ema"
        }

        fn cpu_fwd(&self, s1: &mut CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<()> {
            let (d, x) = (slice_mut(s1, l1)?, slice(s2, l2)?);
            check_len(d, x)?;
            let (a, b, square) = (self.a, self.b, self.square);
            for_chunks(d, x, x, |d, x, _| {
                if square {
                    d.iter_mut().zip(x).for_each(|(d, &x)| *d = a * *d + b * (x * x));
                } else {
                    d.iter_mut().zip(x).for_each(|(d, &x)| *d = a * *d + b * x);
                }
            });
            Ok(())
        }
    }

    /// Weight updates from two sources `x`, `y`.
    enum Update {
        /// RMSprop: `w ← w − lr·x/√(y + ε)` (ε inside the root, as Keras).
        Rmsprop { lr: f32, eps: f32 },
        /// Adam: `w ← w − lr·x/(√y + ε)`.
        Adam { lr: f32, eps: f32 },
        /// Nesterov momentum: `w ← w + c1·x + c2·y`.
        Axpy2 { c1: f32, c2: f32 },
    }

    impl InplaceOp3 for Update {
        fn name(&self) -> &'static str {
            "catdog-optim-update"
        }

        fn cpu_fwd(
            &self,
            s1: &mut CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
            s3: &CpuStorage,
            l3: &Layout,
        ) -> candle_core::Result<()> {
            let (d, x, y) = (slice_mut(s1, l1)?, slice(s2, l2)?, slice(s3, l3)?);
            check_len(d, x)?;
            check_len(d, y)?;
            match *self {
                Update::Rmsprop { lr, eps } => for_chunks(d, x, y, |d, x, y| {
                    for ((d, &x), &v) in d.iter_mut().zip(x).zip(y) {
                        *d -= lr * (x / (v + eps).sqrt());
                    }
                }),
                Update::Adam { lr, eps } => for_chunks(d, x, y, |d, x, y| {
                    for ((d, &m), &v) in d.iter_mut().zip(x).zip(y) {
                        *d -= lr * (m / (v.sqrt() + eps));
                    }
                }),
                Update::Axpy2 { c1, c2 } => for_chunks(d, x, y, |d, x, y| {
                    for ((d, &x), &y) in d.iter_mut().zip(x).zip(y) {
                        *d += c1 * x + c2 * y;
                    }
                }),
            }
            Ok(())
        }
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
    fn fused_cpu_updates_match_the_tensor_op_formulas() {
        // Large enough for the parallel chunks, with an odd tail; a small bias alongside; a loss whose gradient
        // is not proportional to w so every term of the formulas matters.
        let dev = Device::Cpu;
        let kinds = [
            (OptimizerKind::Rmsprop, 0.0, false),
            (OptimizerKind::Adam, 0.0, false),
            (OptimizerKind::Sgd, 0.0, false),
            (OptimizerKind::Sgd, 0.9, false),
            (OptimizerKind::Sgd, 0.9, true),
        ];
        for (kind, momentum, nesterov) in kinds {
            let init = [
                Tensor::randn(0f32, 1.0, (3, 40_001), &dev).unwrap(),
                Tensor::randn(0f32, 1.0, 7, &dev).unwrap(),
            ];
            let run = |fused: bool| {
                let vars: Vec<(String, Var)> = init
                    .iter()
                    .enumerate()
                    .map(|(i, t)| (format!("p{i}"), Var::from_tensor(&t.copy().unwrap()).unwrap()))
                    .collect();
                let mut c = OptimConfig::new(kind, 0.01);
                c.momentum = momentum;
                c.nesterov = nesterov;
                let mut o = Optimizer::new(c, vars.clone()).unwrap();
                for _ in 0..4 {
                    let mut loss = Tensor::new(0f32, &dev).unwrap();
                    for (_, v) in &vars {
                        let x = v.as_tensor();
                        let l = ((x.sqr().unwrap() * x.sin().unwrap()).unwrap().sum_all().unwrap() * 0.5).unwrap();
                        loss = (loss + l).unwrap();
                    }
                    o.step_with(&loss.backward().unwrap(), fused).unwrap();
                }
                let mut out: Vec<f32> = Vec::new();
                for (_, v) in &vars {
                    out.extend(v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                for (_, t) in o.state_tensors() {
                    out.extend(t.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                out
            };
            let (a, b) = (run(true), run(false));
            assert_eq!(a.len(), b.len());
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0f32, f32::max);
            assert!(
                worst < 1e-5,
                "{kind:?} momentum {momentum} nesterov {nesterov}: differs by {worst}"
            );
            let moved = a
                .iter()
                .zip(init[0].flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .any(|(x, y)| *x != y);
            assert!(moved, "{kind:?}: the weights did not move");
        }
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

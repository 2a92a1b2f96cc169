//! Dynamic loss scaling for `--precision fp16`, as `torch.amp.GradScaler` does it: the loss is multiplied by a
//! scale before the backward pass so that small gradients do not vanish below f16's smallest value (6·10⁻⁸), the
//! gradients are divided by it again before the update, and a step whose gradients overflowed (inf or NaN) is
//! skipped and the scale halved; after `growth_interval` clean steps in a row the scale doubles.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use serde::{Deserialize, Serialize};

use super::optim::Optimizer;
use crate::error::Result;

/// One update of `optimizer` from `loss`: through `scaler` when fp16 runs (which skips the update when the
/// gradients overflowed), else a plain backward pass.
pub fn backward_and_step(scaler: Option<&mut LossScaler>, loss: &Tensor, optimizer: &mut Optimizer) -> Result<()> {
    let grads = match scaler {
        Some(scaler) => match scaler.backward(loss, optimizer.params())? {
            Some(grads) => grads,
            None => return Ok(()),
        },
        None => loss.backward()?,
    };
    optimizer.step(&grads)
}

/// Below this scale (2⁻²⁴, f16's smallest step) the overflows are not the scale's doing: the run stops instead of
/// skipping every step from there on (PyTorch would keep skipping).
const SMALLEST_SCALE: f32 = 1.0 / 16_777_216.0;

/// The loss scaler's settings (config.json's `loss_scaling`): PyTorch's defaults.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaling {
    /// The first scale (2¹⁶).
    pub init_scale: f32,
    /// The scale is multiplied by this after `growth_interval` clean steps in a row.
    pub growth_factor: f32,
    /// … and by this after a step whose gradients overflowed.
    pub backoff_factor: f32,
    pub growth_interval: u32,
}

impl Default for LossScaling {
    fn default() -> Self {
        LossScaling {
            init_scale: 65536.0,
            growth_factor: 2.0,
            backoff_factor: 0.5,
            growth_interval: 2000,
        }
    }
}

/// Where the scaler stands (saved in `last.safetensors`' train state, so that `--resume` continues with it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScaler {
    pub scaling: LossScaling,
    /// The scale the next step's loss is multiplied by (f32, as PyTorch keeps it).
    pub scale: f32,
    /// Clean steps since the last change of the scale.
    pub growth_tracker: u32,
    /// Steps skipped because their gradients overflowed, over the whole run.
    pub skipped_steps: u64,
}

impl LossScaler {
    pub fn new(scaling: LossScaling) -> Self {
        LossScaler {
            scaling,
            scale: scaling.init_scale,
            growth_tracker: 0,
            skipped_steps: 0,
        }
    }

    /// What makes a scaler read back from a checkpoint impossible (`None` when it is one a run can save): a scale
    /// that is not a positive finite f32, factors that do not grow and back off, a tracker past its interval.
    pub fn problem(&self) -> Option<String> {
        let s = self.scaling;
        let positive = |x: f32| x.is_finite() && x > 0.0;
        let sane = positive(self.scale)
            && positive(s.init_scale)
            && s.growth_factor.is_finite()
            && s.growth_factor >= 1.0
            && positive(s.backoff_factor)
            && s.backoff_factor < 1.0
            && s.growth_interval > 0
            && self.growth_tracker < s.growth_interval;
        (!sane).then(|| format!("loss scaler {self:?}"))
    }

    /// The backward pass of `loss × scale`, and the gradients of `params` divided by the scale again — or `None`
    /// when any of them is inf or NaN: then the step is to be skipped. Either way the scale is updated.
    pub fn backward(&mut self, loss: &Tensor, params: &[(String, Var)]) -> Result<Option<GradStore>> {
        let mut grads = (loss * f64::from(self.scale))?.backward()?;
        // PyTorch multiplies by the reciprocal in f32; the scale is a power of two, so this is exact.
        let inverse = f64::from(1.0 / self.scale);
        // Σ|g| over every gradient, in f64 and on the device (one read-back per step, not one per parameter):
        // finite for any finite f32 gradients, inf or NaN when any element is.
        let mut magnitude: Option<Tensor> = None;
        for (_, var) in params {
            let Some(g) = grads.remove(var.as_tensor()) else {
                continue;
            };
            let g = (g * inverse)?;
            let sum = g.to_dtype(DType::F64)?.abs()?.sum_all()?;
            magnitude = Some(match magnitude {
                Some(m) => (m + sum)?,
                None => sum,
            });
            grads.insert(var.as_tensor(), g);
        }
        let magnitude = magnitude.map(|m| m.to_scalar::<f64>()).transpose()?.unwrap_or(0.0);
        let overflowed = !magnitude.is_finite();
        self.update(overflowed);
        if self.scale < SMALLEST_SCALE {
            return Err(crate::error::Error::F16Overflow(format!(
                "the gradients overflowed f16 (inf or NaN) even with the loss scaled down to {:e} ({} steps skipped \
                 in this run): this model does not train in fp16; use --precision bf16 or fp32",
                self.scale, self.skipped_steps
            )));
        }
        Ok((!overflowed).then_some(grads))
    }

    /// PyTorch's `_amp_update_scale_`: back off and start counting again after an overflow; grow after
    /// `growth_interval` clean steps in a row, unless the grown scale would not be a finite f32.
    pub fn update(&mut self, overflowed: bool) {
        let s = self.scaling;
        if overflowed {
            self.scale *= s.backoff_factor;
            self.growth_tracker = 0;
            self.skipped_steps += 1;
            return;
        }
        self.growth_tracker += 1;
        if self.growth_tracker == s.growth_interval {
            let grown = self.scale * s.growth_factor;
            if grown.is_finite() {
                self.scale = grown;
            }
            self.growth_tracker = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{linear::linear, Compute, Kernels, Precision};
    use crate::train::optim::{OptimConfig, Optimizer, OptimizerKind};
    use candle_core::Device;

    #[derive(Deserialize)]
    struct Case {
        settings: LossScaling,
        overflow_at: Vec<usize>,
        steps: usize,
        /// (step, scale, growth tracker, p) after the step.
        after: Vec<(usize, f32, u32, f32)>,
    }

    /// `scripts/loss_scale_torch.py`: torch.amp.GradScaler over a pattern of clean and overflowing steps.
    #[test]
    fn the_scale_the_tracker_and_the_skipped_updates_follow_torchs_grad_scaler() {
        #[derive(Deserialize)]
        struct Doc {
            cases: Vec<Case>,
        }
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/loss_scale/expected.json");
        let doc: Doc = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for case in doc.cases {
            let p = Var::from_slice(&[1f32], 1, &Device::Cpu).unwrap();
            let params = vec![("p".to_string(), p.clone())];
            let mut opt = Optimizer::new(OptimConfig::new(OptimizerKind::Sgd, 0.1), params.clone()).unwrap();
            let mut scaler = LossScaler::new(case.settings);
            let mut expected = case.after.iter().peekable();
            for k in 0..case.steps {
                let c = if case.overflow_at.contains(&k) {
                    f32::INFINITY
                } else {
                    1.0
                };
                let loss = (p.as_tensor() * f64::from(c)).unwrap().sum_all().unwrap();
                if let Some(grads) = scaler.backward(&loss, &params).unwrap() {
                    opt.step(&grads).unwrap();
                }
                if let Some(&&(step, scale, tracker, value)) = expected.peek().filter(|e| e.0 == k) {
                    let now = p.as_tensor().to_vec1::<f32>().unwrap()[0];
                    assert_eq!(
                        (scale, tracker, value),
                        (scaler.scale, scaler.growth_tracker, now),
                        "step {step}"
                    );
                    expected.next();
                }
            }
            assert!(expected.next().is_none(), "every recorded step was compared");
            assert_eq!(scaler.skipped_steps, case.overflow_at.len() as u64);
        }
    }

    /// d(loss · scale)/dw through an f16 dense layer (the portable twin's arithmetic): x = 1s, w = 1s, loss =
    /// factor · Σy.
    fn f16_weight_grad(scaler: &mut LossScaler, factor: f64) -> Option<f32> {
        let x = Tensor::ones((1, 4), DType::F32, &Device::Cpu).unwrap();
        let w = Var::ones((1, 4), DType::F32, &Device::Cpu).unwrap();
        let compute = Compute {
            kernels: Kernels::Portable,
            precision: Precision::Fp16,
        };
        let loss = (linear(&x, w.as_tensor(), compute).unwrap().sum_all().unwrap() * factor).unwrap();
        let grads = scaler.backward(&loss, &[("w".into(), w.clone())]).unwrap()?;
        Some(grads.get(w.as_tensor()).unwrap().to_vec2::<f32>().unwrap()[0][0])
    }

    #[test]
    fn gradients_that_overflow_at_any_scale_stop_the_run_instead_of_skipping_forever() {
        let p = Var::from_slice(&[1f32], 1, &Device::Cpu).unwrap();
        let params = vec![("p".to_string(), p.clone())];
        let mut scaler = LossScaler::new(LossScaling::default());
        let nan_loss = (p.as_tensor() * f64::NAN).unwrap().sum_all().unwrap();
        // 2¹⁶ halved 40 times is 2⁻²⁴: the 41st overflow in a row ends it.
        for _ in 0..40 {
            assert!(scaler.backward(&nan_loss, &params).unwrap().is_none());
        }
        let err = scaler.backward(&nan_loss, &params).unwrap_err().to_string();
        assert!(
            err.contains("does not train in fp16") && err.contains("41 steps skipped"),
            "{err}"
        );
    }

    #[test]
    fn an_f16_gradient_over_65504_skips_the_step_and_halves_the_scale() {
        let mut scaler = LossScaler::new(LossScaling::default());
        // dy = 2¹⁶ rounds to inf in f16 (its largest value is 65504).
        assert_eq!(f16_weight_grad(&mut scaler, 1.0), None);
        assert_eq!((scaler.scale, scaler.skipped_steps), (32768.0, 1));
        assert_eq!(f16_weight_grad(&mut scaler, 1.0), Some(1.0));
        assert_eq!((scaler.scale, scaler.growth_tracker), (32768.0, 1));
    }

    #[test]
    fn scaling_keeps_a_gradient_that_f16_would_flush_to_zero() {
        // 10⁻⁸ is below half of f16's smallest subnormal (6·10⁻⁸): unscaled it becomes 0.
        let mut unscaled = LossScaler::new(LossScaling {
            init_scale: 1.0,
            ..LossScaling::default()
        });
        assert_eq!(f16_weight_grad(&mut unscaled, 1e-8), Some(0.0));
        let mut scaled = LossScaler::new(LossScaling::default());
        let g = f16_weight_grad(&mut scaled, 1e-8).unwrap();
        assert!((g - 1e-8).abs() < 1e-11, "{g}");
    }

    #[test]
    fn a_scaler_no_run_can_save_is_named_and_a_resume_refuses_it() {
        assert_eq!(LossScaler::new(LossScaling::default()).problem(), None);
        let broken = [
            LossScaler {
                scale: 0.0,
                ..LossScaler::new(LossScaling::default())
            },
            LossScaler {
                scale: f32::NAN,
                ..LossScaler::new(LossScaling::default())
            },
            LossScaler {
                growth_tracker: 2000,
                ..LossScaler::new(LossScaling::default())
            },
            LossScaler::new(LossScaling {
                backoff_factor: 1.5,
                ..LossScaling::default()
            }),
            LossScaler::new(LossScaling {
                growth_interval: 0,
                ..LossScaling::default()
            }),
        ];
        for scaler in broken {
            assert!(scaler.problem().is_some(), "{scaler:?}");
            let mut state: crate::train::state::TrainState = serde_json::from_value(serde_json::json!({
                "epoch": 1, "batches_done": 0, "sum_data_loss": 0.0, "sum_penalty": 0.0, "correct": 0, "seen": 0,
                "seconds": 0.0, "optimizer_steps": 3, "lr": 0.001, "finished": false,
            }))
            .unwrap();
            assert_eq!(state.check(32), Ok(()));
            state.loss_scaler = Some(scaler);
            assert!(state.check(32).unwrap_err().contains("loss scaler"), "{scaler:?}");
        }
    }
}

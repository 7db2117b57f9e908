//! The dynamic loss scale of fp16 mixed precision, as `torch.amp.GradScaler` keeps it: the loss
//! is multiplied by the scale before the backward pass, so that small fp16 gradients do not
//! flush to zero; the gradients are divided by it again before clipping and the update. When a
//! gradient is not finite the step is skipped and the scale halved; after 2,000 finite steps in
//! a row it doubles. Its state goes into resume.ot (`amp.scale`, `amp.good_steps`).

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

/// GradScaler's defaults.
const INITIAL_SCALE: f64 = 65_536.0;
const GROWTH_FACTOR: f64 = 2.0;
const BACKOFF_FACTOR: f64 = 0.5;
const GROWTH_INTERVAL: usize = 2_000;

const SCALE_KEY: &str = "amp.scale";
const GOOD_STEPS_KEY: &str = "amp.good_steps";

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossScale {
    pub scale: f64,
    /// Finite steps since the scale last changed.
    pub good_steps: usize,
}

impl Default for LossScale {
    fn default() -> Self {
        Self {
            scale: INITIAL_SCALE,
            good_steps: 0,
        }
    }
}

impl LossScale {
    /// The loss to backpropagate.
    pub fn scale_loss(&self, loss: &Tensor) -> Tensor {
        loss * self.scale
    }

    /// Divides the gradients of `parameters` by the scale in place; whether all of them are
    /// finite (one value read back from the device).
    pub fn unscale(&self, parameters: &[&Tensor]) -> bool {
        let mut finite = Vec::new();
        for parameter in parameters {
            let mut grad = parameter.grad();
            if !grad.defined() {
                continue;
            }
            let _ = grad.g_mul_scalar_(1.0 / self.scale);
            finite.push(grad.isfinite().all());
        }
        finite.is_empty() || bool::try_from(Tensor::stack(&finite, 0).all()).unwrap_or(false)
    }

    /// After a step whose gradients were `finite` (else it was skipped).
    pub fn update(&mut self, finite: bool) {
        if !finite {
            self.scale *= BACKOFF_FACTOR;
            self.good_steps = 0;
            return;
        }
        self.good_steps += 1;
        if self.good_steps == GROWTH_INTERVAL {
            self.scale *= GROWTH_FACTOR;
            self.good_steps = 0;
        }
    }

    /// The tensors resume.ot keeps.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        vec![
            (SCALE_KEY.to_owned(), Tensor::from(self.scale)),
            (
                GOOD_STEPS_KEY.to_owned(),
                Tensor::from(self.good_steps as i64),
            ),
        ]
    }

    /// The scale saved in resume.ot, checked.
    pub fn from_state(tensors: &BTreeMap<String, Tensor>) -> Result<Self> {
        let number = |key: &str| -> Result<f64> {
            let tensor = tensors
                .get(key)
                .with_context(|| format!("the resume state has no {key} (a fp16 run's)"))?;
            ensure!(tensor.numel() == 1, "{key} is not a single number");
            Ok(tensor
                .to_kind(Kind::Double)
                .reshape([-1])
                .double_value(&[0]))
        };
        let scale = number(SCALE_KEY)?;
        let good_steps = number(GOOD_STEPS_KEY)?;
        ensure!(
            scale.is_finite() && scale > 0.0,
            "{SCALE_KEY} is {scale}: must be a positive number"
        );
        ensure!(
            good_steps >= 0.0 && good_steps.fract() == 0.0 && good_steps < GROWTH_INTERVAL as f64,
            "{GOOD_STEPS_KEY} is {good_steps}: must be a count below {GROWTH_INTERVAL}"
        );
        Ok(Self {
            scale,
            good_steps: good_steps as usize,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn parameter_with_grad(grad: &[f32]) -> Tensor {
        let parameter =
            Tensor::zeros([grad.len() as i64], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let loss = (&parameter * Tensor::from_slice(grad)).sum(Kind::Float);
        loss.backward();
        parameter
    }

    #[test]
    fn an_infinite_gradient_skips_the_step_and_halves_the_scale() {
        let mut scale = LossScale {
            scale: 1024.0,
            good_steps: 7,
        };
        let parameters = [parameter_with_grad(&[1.0, f32::INFINITY])];
        let finite = scale.unscale(&[&parameters[0]]);
        assert!(!finite);
        scale.update(finite);
        assert_eq!(
            scale,
            LossScale {
                scale: 512.0,
                good_steps: 0
            }
        );
    }

    #[test]
    fn finite_gradients_are_unscaled_and_the_scale_grows_after_the_interval() {
        let mut scale = LossScale {
            scale: 1024.0,
            good_steps: GROWTH_INTERVAL - 2,
        };
        let parameters = [parameter_with_grad(&[2048.0, -512.0])];
        assert!(scale.unscale(&[&parameters[0]]));
        let grad = Vec::<f32>::try_from(parameters[0].grad()).unwrap();
        assert_eq!(grad, [2.0, -0.5]);
        scale.update(true);
        assert_eq!(scale.scale, 1024.0);
        scale.update(true);
        assert_eq!(
            scale,
            LossScale {
                scale: 2048.0,
                good_steps: 0
            }
        );
    }

    #[test]
    fn the_state_round_trips_and_bad_values_are_refused() {
        let scale = LossScale {
            scale: 256.0,
            good_steps: 12,
        };
        let tensors: BTreeMap<String, Tensor> = scale.state().into_iter().collect();
        assert_eq!(LossScale::from_state(&tensors).unwrap(), scale);
        let mut bad = tensors;
        bad.insert(SCALE_KEY.to_owned(), Tensor::from(f64::NAN));
        assert!(LossScale::from_state(&bad).is_err());
        assert!(LossScale::from_state(&BTreeMap::new()).is_err());
    }
}

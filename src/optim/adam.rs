//! Adam and AdamW as PyTorch defines them (`torch.optim.Adam`, `torch.optim.AdamW`; no AMSGrad):
//!
//! - Adam's weight decay is L2: g ← g + λp;
//! - AdamW's is decoupled: p ← p(1 − lr·λ), before the update;
//! - then m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g²,
//!   p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
//!
//! Weight decay applies only to the parameters marked to decay. Parameters without a gradient
//! (frozen ones) are left untouched, moments included. The state is `adam.step`, `adam.m.NAME`
//! and `adam.v.NAME` for both.

use super::on_device::{one_minus_power, DeviceScalars, Factor};
use super::{load_saved, saved_step, OptimizerKind, Parameter, Settings};
use anyhow::Result;
use std::collections::BTreeMap;
use tch::Tensor;

pub const DEFAULT_BETAS: [f64; 2] = [0.9, 0.999];
pub const DEFAULT_EPS: f64 = 1e-8;

/// One parameter and Adam's running estimates for it.
struct Slot {
    parameter: Parameter,
    /// m: the moving average of the gradient.
    first_moment: Tensor,
    /// v: the moving average of the squared gradient.
    second_moment: Tensor,
}

/// One step's factors: `√(1−β₂ᵗ)`, `−lr/(1−β₁ᵗ)` and AdamW's `1 − lr·λ`.
struct Factors<F> {
    bias_correction2_sqrt: F,
    negative_step_size: F,
    shrink: F,
}

/// Adam or AdamW over a list of parameters.
pub struct Adam {
    learning_rate: f64,
    settings: Settings,
    step: i64,
    /// One per parameter, in the order given (the model's: by name).
    slots: Vec<Slot>,
}

impl Adam {
    /// Adam over `parameters`, in their order (AdamW when `settings.kind` says so).
    pub fn new(parameters: Vec<Parameter>, settings: Settings, learning_rate: f64) -> Self {
        let slots = parameters
            .into_iter()
            .map(|parameter| Slot {
                first_moment: parameter.tensor.zeros_like().detach(),
                second_moment: parameter.tensor.zeros_like().detach(),
                parameter,
            })
            .collect();
        Self {
            learning_rate,
            settings,
            step: 0,
            slots,
        }
    }

    pub fn set_lr(&mut self, learning_rate: f64) {
        self.learning_rate = learning_rate;
    }

    /// Steps taken so far.
    pub fn steps(&self) -> i64 {
        self.step
    }

    pub fn parameters(&self) -> Vec<&Tensor> {
        self.slots.iter().map(|s| &s.parameter.tensor).collect()
    }

    /// One update from the parameters' gradients.
    pub fn update(&mut self) {
        self.step += 1;
        let [beta1, beta2] = self.settings.betas;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - beta1.powf(step);
        let bias_correction2_sqrt = (1.0 - beta2.powf(step)).sqrt();
        let step_size = self.learning_rate / bias_correction1;
        let factors = Factors {
            bias_correction2_sqrt,
            negative_step_size: -step_size,
            shrink: 1.0 - self.learning_rate * self.settings.weight_decay,
        };
        tch::no_grad(|| self.update_slots(&factors));
    }

    /// [`Adam::update`] with the step count (already advanced) and the rate from `scalars`,
    /// computed on the device.
    pub(super) fn update_on_device(&mut self, scalars: &DeviceScalars) {
        let [beta1, beta2] = self.settings.betas;
        let step_size = &scalars.learning_rate / one_minus_power(beta1, &scalars.step);
        let factors = Factors {
            bias_correction2_sqrt: one_minus_power(beta2, &scalars.step).sqrt(),
            negative_step_size: -step_size,
            shrink: -(&scalars.learning_rate * self.settings.weight_decay) + 1.0,
        };
        self.update_slots(&factors);
    }

    /// Updates every parameter that has a gradient, with the step's factors.
    fn update_slots<F: Factor>(&mut self, factors: &Factors<F>) {
        let [beta1, beta2] = self.settings.betas;
        let decay = self.settings.weight_decay;
        let decoupled = self.settings.kind == OptimizerKind::AdamW;
        for slot in &mut self.slots {
            let mut grad = slot.parameter.tensor.grad();
            if !grad.defined() {
                continue;
            }
            if decay != 0.0 && slot.parameter.decays {
                if decoupled {
                    factors.shrink.scale(&mut slot.parameter.tensor);
                } else {
                    grad = grad.g_add(&(&slot.parameter.tensor * decay));
                }
            }
            // Eight kernels and two temporaries per parameter: at batch 32 a step is a few
            // milliseconds, so the optimizer's per-call overhead shows.
            let _ = slot.first_moment.lerp_(&grad, 1.0 - beta1);
            let _ = slot.second_moment.lerp_(&grad.square(), 1.0 - beta2);
            let mut denom = slot.second_moment.sqrt();
            factors.bias_correction2_sqrt.divide(&mut denom);
            let _ = denom.g_add_scalar_(self.settings.eps);
            factors.negative_step_size.divide(&mut denom);
            let _ = slot.parameter.tensor.addcdiv_(&slot.first_moment, &denom);
        }
    }

    /// The optimizer's state as named tensors (`adam.step`, `adam.m.NAME`, `adam.v.NAME`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("adam.step".to_owned(), Tensor::from(self.step))];
        for slot in &self.slots {
            let name = &slot.parameter.name;
            state.push((format!("adam.m.{name}"), slot.first_moment.copy()));
            state.push((format!("adam.v.{name}"), slot.second_moment.copy()));
        }
        state
    }

    /// Restores a state saved by [`Adam::state`], checking names and shapes.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        self.step = saved_step(state, "adam.step")?;
        for slot in &mut self.slots {
            let name = &slot.parameter.name;
            load_saved(state, &format!("adam.m.{name}"), &mut slot.first_moment)?;
            load_saved(state, &format!("adam.v.{name}"), &mut slot.second_moment)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Optimizer;
    use super::*;
    use tch::Kind;

    fn parameter() -> Tensor {
        Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true)
    }

    fn named(p: &Tensor) -> Vec<Parameter> {
        vec![Parameter {
            name: "p".to_owned(),
            tensor: p.shallow_clone(),
            decays: true,
        }]
    }

    fn adam(p: &Tensor, learning_rate: f64) -> Optimizer {
        Optimizer::new(named(p), Settings::default(), learning_rate)
    }

    /// One parameter, a quadratic loss: the first Adam step moves each coordinate by lr against
    /// the sign of its gradient (m̂/√v̂ = ±1 on the first step).
    #[test]
    fn the_first_step_moves_each_parameter_by_the_learning_rate() {
        let p = parameter();
        let mut adam = adam(&p, 0.1);
        let loss = (&p * &p).sum(Kind::Float);
        adam.backward_step(&loss);
        let after = Vec::<f32>::try_from(&p).unwrap();
        for (a, b) in after.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((a - b).abs() < 1e-6, "{after:?}");
        }
        let Optimizer::Adam(inner) = &adam else {
            unreachable!()
        };
        assert_eq!(inner.steps(), 1);
    }

    #[test]
    fn a_saved_state_restores_the_same_trajectory() {
        let run = |split: Option<usize>| {
            let p = parameter();
            let mut adam = adam(&p, 0.05);
            for step in 0..10 {
                if Some(step) == split {
                    // Round-trip the state through a fresh optimizer, as a resumed run does.
                    let state: BTreeMap<String, Tensor> = adam.state().into_iter().collect();
                    adam = self::adam(&p, 0.05);
                    adam.load_state(&state).unwrap();
                }
                let loss = (&p * &p * &p).abs().sum(Kind::Float);
                adam.backward_step(&loss);
            }
            Vec::<f32>::try_from(&p).unwrap()
        };
        assert_eq!(run(None), run(Some(4)));
    }
}

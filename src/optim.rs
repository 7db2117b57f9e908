//! Adam written on tensors, so that its state (the moment estimates and the step count) can be
//! saved with a checkpoint and a resumed run continues exactly where it stopped. tch's `nn::Adam`
//! wraps libtorch's C++ optimizer, whose state cannot be read or written from Rust.
//!
//! The update is PyTorch's (`torch.optim.Adam`, no weight decay, no AMSGrad):
//! m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
//! Parameters without a gradient (frozen ones) are left untouched, moments included.

use crate::model::{Classifier, NamedTensor};
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use tch::{Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// One parameter and Adam's running estimates for it.
struct Slot {
    name: String,
    parameter: Tensor,
    /// m: the moving average of the gradient.
    first_moment: Tensor,
    /// v: the moving average of the squared gradient.
    second_moment: Tensor,
}

/// Adam over a model's parameters.
pub struct Adam {
    learning_rate: f64,
    step: i64,
    /// One per parameter, in the order given (the model's: by name).
    slots: Vec<Slot>,
}

impl Adam {
    /// Adam over every variable of `model` that requires a gradient (frozen ones, and
    /// batch-norm running statistics, do not).
    pub fn for_model(model: &Classifier, learning_rate: f64) -> Self {
        let parameters = model
            .variables()
            .into_iter()
            .filter(|v| v.tensor.requires_grad())
            .collect();
        Self::new(parameters, learning_rate)
    }

    /// Adam over `parameters`, in their order.
    pub fn new(parameters: Vec<NamedTensor>, learning_rate: f64) -> Self {
        let slots = parameters
            .into_iter()
            .map(|NamedTensor { name, tensor }| Slot {
                first_moment: tensor.zeros_like().detach(),
                second_moment: tensor.zeros_like().detach(),
                name,
                parameter: tensor,
            })
            .collect();
        Self {
            learning_rate,
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

    /// Clears the gradients, back-propagates `loss` and updates the parameters.
    pub fn backward_step(&mut self, loss: &Tensor) {
        for slot in &mut self.slots {
            let mut grad = slot.parameter.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
        loss.backward();
        self.update();
    }

    fn update(&mut self) {
        self.step += 1;
        let step = self.step as f64;
        let bias_correction1 = 1.0 - BETA1.powf(step);
        let bias_correction2_sqrt = (1.0 - BETA2.powf(step)).sqrt();
        let step_size = self.learning_rate / bias_correction1;
        tch::no_grad(|| {
            for slot in &mut self.slots {
                let grad = slot.parameter.grad();
                if !grad.defined() {
                    continue;
                }
                // Eight kernels and two temporaries per parameter: at batch 32 a step is a few
                // milliseconds, so the optimizer's per-call overhead shows.
                let _ = slot.first_moment.lerp_(&grad, 1.0 - BETA1);
                let _ = slot.second_moment.lerp_(&grad.square(), 1.0 - BETA2);
                let mut denom = slot.second_moment.sqrt();
                let _ = denom.g_div_scalar_(bias_correction2_sqrt);
                let _ = denom.g_add_scalar_(EPS);
                let _ = denom.g_div_scalar_(-step_size);
                let _ = slot.parameter.addcdiv_(&slot.first_moment, &denom);
            }
        });
    }

    /// The optimizer's state as named tensors (`adam.step`, `adam.m.NAME`, `adam.v.NAME`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("adam.step".to_owned(), Tensor::from(self.step))];
        for slot in &self.slots {
            state.push((format!("adam.m.{}", slot.name), slot.first_moment.copy()));
            state.push((format!("adam.v.{}", slot.name), slot.second_moment.copy()));
        }
        state
    }

    /// Restores a state saved by [`Adam::state`], checking names and shapes.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let step = state
            .get("adam.step")
            .context("the checkpoint has no optimizer state (adam.step)")?;
        ensure!(
            step.numel() == 1 && step.size().len() <= 1,
            "adam.step has shape {:?}, expected a single number",
            step.size()
        );
        self.step = step.reshape([-1]).int64_value(&[0]);
        ensure!(self.step >= 0, "adam.step is {}, below 0", self.step);
        tch::no_grad(|| -> Result<()> {
            for slot in &mut self.slots {
                let name = &slot.name;
                for (moment, key) in [
                    (&mut slot.first_moment, format!("adam.m.{name}")),
                    (&mut slot.second_moment, format!("adam.v.{name}")),
                ] {
                    let saved = state
                        .get(&key)
                        .with_context(|| format!("the checkpoint has no {key}"))?;
                    ensure!(
                        saved.size() == moment.size(),
                        "{key} has shape {:?}, expected {:?}",
                        saved.size(),
                        moment.size()
                    );
                    moment.copy_(&saved.to_kind(Kind::Float).to_device(moment.device()));
                }
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter() -> Tensor {
        Tensor::from_slice(&[1.0f32, -2.0, 3.0]).set_requires_grad(true)
    }

    fn named(p: &Tensor) -> Vec<NamedTensor> {
        vec![NamedTensor {
            name: "p".to_owned(),
            tensor: p.shallow_clone(),
        }]
    }

    /// One parameter, a quadratic loss: the first Adam step moves each coordinate by lr against
    /// the sign of its gradient (m̂/√v̂ = ±1 on the first step).
    #[test]
    fn the_first_step_moves_each_parameter_by_the_learning_rate() {
        let p = parameter();
        let mut adam = Adam::new(named(&p), 0.1);
        let loss = (&p * &p).sum(Kind::Float);
        adam.backward_step(&loss);
        let after = Vec::<f32>::try_from(&p).unwrap();
        for (a, b) in after.iter().zip([0.9f32, -1.9, 2.9]) {
            assert!((a - b).abs() < 1e-6, "{after:?}");
        }
        assert_eq!(adam.steps(), 1);
    }

    #[test]
    fn a_saved_state_restores_the_same_trajectory() {
        let run = |split: Option<usize>| {
            let p = parameter();
            let mut adam = Adam::new(named(&p), 0.05);
            for step in 0..10 {
                if Some(step) == split {
                    // Round-trip the state through a fresh optimizer, as a resumed run does.
                    let state: BTreeMap<String, Tensor> = adam.state().into_iter().collect();
                    adam = Adam::new(named(&p), 0.05);
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

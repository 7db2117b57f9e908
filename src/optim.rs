//! Adam written on tensors, so that its state (the moment estimates and the step count) can be
//! saved with a checkpoint and a resumed run continues exactly where it stopped. tch's `nn::Adam`
//! wraps libtorch's C++ optimizer, whose state cannot be read or written from Rust.
//!
//! The update is PyTorch's (`torch.optim.Adam`, no weight decay, no AMSGrad):
//! m ← β₁m + (1−β₁)g, v ← β₂v + (1−β₂)g², p ← p − lr/(1−β₁ᵗ) · m / (√v/√(1−β₂ᵗ) + ε).
//! Parameters without a gradient (frozen ones) are left untouched, moments included.

use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use tch::{nn, Kind, Tensor};

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// Adam over the trainable variables of a VarStore.
pub struct Adam {
    learning_rate: f64,
    step: i64,
    /// (name, variable, first moment, second moment), by name.
    slots: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl Adam {
    /// Adam over every variable of `vs` that requires a gradient.
    pub fn new(vs: &nn::VarStore, learning_rate: f64) -> Self {
        let mut variables: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = variables
            .into_iter()
            .map(|(name, variable)| {
                let zeros = || variable.zeros_like().detach();
                let (m, v) = (zeros(), zeros());
                (name, variable, m, v)
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
        for (_, variable, _, _) in &mut self.slots {
            let mut grad = variable.grad();
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
            for (_, variable, m, v) in &mut self.slots {
                let grad = variable.grad();
                if !grad.defined() {
                    continue;
                }
                // Eight kernels and two temporaries per parameter: at batch 32 a step is a few
                // milliseconds, so the optimizer's per-call overhead shows.
                let _ = m.lerp_(&grad, 1.0 - BETA1);
                let _ = v.lerp_(&grad.square(), 1.0 - BETA2);
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bias_correction2_sqrt);
                let _ = denom.g_add_scalar_(EPS);
                let _ = denom.g_div_scalar_(-step_size);
                let _ = variable.addcdiv_(m, &denom);
            }
        });
    }

    /// The optimizer's state as named tensors (`adam.step`, `adam.m.NAME`, `adam.v.NAME`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("adam.step".to_owned(), Tensor::from(self.step))];
        for (name, _, m, v) in &self.slots {
            state.push((format!("adam.m.{name}"), m.copy()));
            state.push((format!("adam.v.{name}"), v.copy()));
        }
        state
    }

    /// Restores a state saved by [`Adam::state`], checking names and shapes.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        let step = state
            .get("adam.step")
            .context("the checkpoint has no optimizer state (adam.step)")?;
        self.step = step.int64_value(&[]);
        tch::no_grad(|| -> Result<()> {
            for (name, _, m, v) in &mut self.slots {
                for (moment, key) in [(m, format!("adam.m.{name}")), (v, format!("adam.v.{name}"))]
                {
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
    use tch::Device;

    /// One parameter, a quadratic loss: the first Adam step moves each coordinate by lr against
    /// the sign of its gradient (m̂/√v̂ = ±1 on the first step).
    #[test]
    fn the_first_step_moves_each_parameter_by_the_learning_rate() {
        let vs = nn::VarStore::new(Device::Cpu);
        let p = vs
            .root()
            .var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
        let mut adam = Adam::new(&vs, 0.1);
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
            let vs = nn::VarStore::new(Device::Cpu);
            let p = vs
                .root()
                .var_copy("p", &Tensor::from_slice(&[1.0f32, -2.0, 3.0]));
            let mut adam = Adam::new(&vs, 0.05);
            for step in 0..10 {
                if Some(step) == split {
                    // Round-trip the state through a fresh optimizer, as a resumed run does.
                    let state: BTreeMap<String, Tensor> = adam.state().into_iter().collect();
                    adam = Adam::new(&vs, 0.05);
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

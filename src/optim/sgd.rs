//! SGD as PyTorch defines it (`torch.optim.SGD`, no dampening):
//!
//! - weight decay is L2: g ← g + λp (only for the parameters marked to decay);
//! - with momentum μ: b ← g on the first step, then b ← μb + g; the step direction is b, or
//!   g + μb with Nesterov;
//! - p ← p − lr · direction.
//!
//! The state is `sgd.step` and `sgd.momentum.NAME` (when there is momentum).

use super::on_device::{DeviceScalars, Factor};
use super::{load_saved, saved_step, Parameter, Settings};
use anyhow::Result;
use std::collections::BTreeMap;
use tch::Tensor;

struct Slot {
    parameter: Parameter,
    /// The momentum buffer b (absent without momentum).
    momentum: Option<Tensor>,
}

pub struct Sgd {
    learning_rate: f64,
    settings: Settings,
    step: i64,
    slots: Vec<Slot>,
}

impl Sgd {
    pub fn new(parameters: Vec<Parameter>, settings: Settings, learning_rate: f64) -> Self {
        let slots = parameters
            .into_iter()
            .map(|parameter| Slot {
                momentum: (settings.momentum != 0.0)
                    .then(|| parameter.tensor.zeros_like().detach()),
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

    pub fn parameters(&self) -> Vec<&Tensor> {
        self.slots.iter().map(|s| &s.parameter.tensor).collect()
    }

    /// One update from the parameters' gradients.
    pub fn update(&mut self) {
        let first = self.step == 0;
        self.step += 1;
        let learning_rate = self.learning_rate;
        tch::no_grad(|| self.update_slots(first, &learning_rate));
    }

    /// [`Sgd::update`] with the rate from `scalars`. The momentum buffer starts at zero, so its
    /// first update (0·μ + g) is the copy of the gradient the host update makes, without asking
    /// the host which step it is.
    pub(super) fn update_on_device(&mut self, scalars: &DeviceScalars) {
        self.update_slots(false, &scalars.learning_rate);
    }

    /// Updates every parameter that has a gradient; `first`: the momentum buffers take the
    /// gradient as it is.
    fn update_slots(&mut self, first: bool, learning_rate: &impl Factor) {
        let Settings {
            weight_decay,
            momentum,
            nesterov,
            ..
        } = self.settings;
        for slot in &mut self.slots {
            let mut grad = slot.parameter.tensor.grad();
            if !grad.defined() {
                continue;
            }
            if weight_decay != 0.0 && slot.parameter.decays {
                grad = grad.g_add(&(&slot.parameter.tensor * weight_decay));
            }
            if let Some(buffer) = slot.momentum.as_mut() {
                if first {
                    buffer.copy_(&grad);
                } else {
                    let _ = buffer.g_mul_scalar_(momentum).g_add_(&grad);
                }
                grad = if nesterov {
                    grad.g_add(&(&*buffer * momentum))
                } else {
                    buffer.shallow_clone()
                };
            }
            let _ = slot.parameter.tensor.g_sub_(&learning_rate.times(&grad));
        }
    }

    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut state = vec![("sgd.step".to_owned(), Tensor::from(self.step))];
        for slot in &self.slots {
            if let Some(buffer) = &slot.momentum {
                let name = &slot.parameter.name;
                state.push((format!("sgd.momentum.{name}"), buffer.copy()));
            }
        }
        state
    }

    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        self.step = saved_step(state, "sgd.step")?;
        for slot in &mut self.slots {
            let key = format!("sgd.momentum.{}", slot.parameter.name);
            if let Some(buffer) = slot.momentum.as_mut() {
                load_saved(state, &key, buffer)?;
            }
        }
        Ok(())
    }
}

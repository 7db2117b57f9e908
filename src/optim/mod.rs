//! The optimizers (Adam, AdamW and SGD as PyTorch defines them, written on tensors so that a
//! resumed run continues with their exact state), gradient clipping, the fp16 loss scale and
//! the learning-rate schedules.

pub mod adam;
pub mod clip;
pub mod loss_scale;
pub mod on_device;
pub mod schedule;
pub mod sgd;

pub use adam::Adam;
pub use loss_scale::LossScale;
pub use sgd::Sgd;

use crate::choice::declare_choice;
use crate::model::{Classifier, NamedTensor};
use crate::nn::names;
use anyhow::Result;
use std::collections::BTreeMap;
use tch::Tensor;

declare_choice! {
    /// Which update rule trains the weights.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub enum OptimizerKind {
        #[default]
        Adam = "adam":
            "Adam (the tutorial's); --weight-decay is L2, added to the gradient",
        AdamW = "adamw":
            "Adam with decoupled weight decay (default 0.01), as torch.optim.AdamW",
        Sgd = "sgd":
            "SGD, with --momentum and --nesterov; --weight-decay is L2",
    }
}

impl OptimizerKind {
    /// The weight decay when none is given: PyTorch's defaults (0.01 for AdamW, else none).
    pub fn default_weight_decay(self) -> f64 {
        match self {
            Self::AdamW => 0.01,
            Self::Adam | Self::Sgd => 0.0,
        }
    }

    /// Whether the Adam family's betas and eps apply.
    pub fn is_adam(self) -> bool {
        matches!(self, Self::Adam | Self::AdamW)
    }
}

/// An optimizer's hyper-parameters (the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub kind: OptimizerKind,
    pub weight_decay: f64,
    /// SGD only.
    pub momentum: f64,
    /// SGD only.
    pub nesterov: bool,
    /// The Adam family only.
    pub betas: [f64; 2],
    /// The Adam family only.
    pub eps: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adam,
            weight_decay: 0.0,
            momentum: 0.0,
            nesterov: false,
            betas: adam::DEFAULT_BETAS,
            eps: adam::DEFAULT_EPS,
        }
    }
}

/// Whether weight decay applies to the parameter `name`: not to biases, nor to batch-norm
/// weights (scales), which decay would pull towards zero for no gain.
pub fn decays(name: &str) -> bool {
    !name.ends_with(".bias") && !names::layer_of(name).starts_with("bn")
}

/// A parameter an optimizer updates, and whether it decays.
pub struct Parameter {
    pub name: String,
    pub tensor: Tensor,
    pub decays: bool,
}

impl Parameter {
    /// The parameters of `named`, each marked by [`decays`].
    pub fn all(named: Vec<NamedTensor>) -> Vec<Self> {
        named
            .into_iter()
            .map(|NamedTensor { name, tensor }| Self {
                decays: decays(&name),
                name,
                tensor,
            })
            .collect()
    }
}

/// One of the optimizers, as a training run uses it.
pub enum Optimizer {
    Adam(Adam),
    Sgd(Sgd),
}

impl Optimizer {
    /// The optimizer over every variable of `model` that requires a gradient (frozen ones, and
    /// batch-norm running statistics, do not).
    pub fn for_model(model: &Classifier, settings: Settings, learning_rate: f64) -> Self {
        let parameters = model
            .variables()
            .into_iter()
            .filter(|v| v.tensor.requires_grad())
            .collect();
        Self::new(Parameter::all(parameters), settings, learning_rate)
    }

    pub fn new(parameters: Vec<Parameter>, settings: Settings, learning_rate: f64) -> Self {
        match settings.kind {
            OptimizerKind::Adam | OptimizerKind::AdamW => {
                Self::Adam(Adam::new(parameters, settings, learning_rate))
            }
            OptimizerKind::Sgd => Self::Sgd(Sgd::new(parameters, settings, learning_rate)),
        }
    }

    pub fn set_lr(&mut self, learning_rate: f64) {
        match self {
            Self::Adam(adam) => adam.set_lr(learning_rate),
            Self::Sgd(sgd) => sgd.set_lr(learning_rate),
        }
    }

    /// The tensors it updates, in order.
    pub fn parameters(&self) -> Vec<&Tensor> {
        match self {
            Self::Adam(adam) => adam.parameters(),
            Self::Sgd(sgd) => sgd.parameters(),
        }
    }

    /// Clears the gradients of the parameters.
    pub fn zero_grad(&mut self) {
        for parameter in self.parameters() {
            let mut grad = parameter.grad();
            if grad.defined() {
                let _ = grad.detach_().zero_();
            }
        }
    }

    /// Updates the parameters from their gradients (those without one are left untouched).
    pub fn update(&mut self) {
        match self {
            Self::Adam(adam) => adam.update(),
            Self::Sgd(sgd) => sgd.update(),
        }
    }

    /// Clears the gradients, back-propagates `loss` and updates the parameters.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.update();
    }

    /// The optimizer's state as named tensors, for `resume.ot`.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        match self {
            Self::Adam(adam) => adam.state(),
            Self::Sgd(sgd) => sgd.state(),
        }
    }

    /// Restores a state saved by [`Optimizer::state`], checking names and shapes.
    pub fn load_state(&mut self, state: &BTreeMap<String, Tensor>) -> Result<()> {
        match self {
            Self::Adam(adam) => adam.load_state(state),
            Self::Sgd(sgd) => sgd.load_state(state),
        }
    }
}

/// The largest step count a state may hold: 2^53, beyond which a float no longer counts steps
/// (Adam's bias correction takes the step as a float).
const MAX_SAVED_STEP: i64 = 1 << 53;

/// The saved step count `key` of a state: a single whole number from 0 to 2^53.
pub(crate) fn saved_step(state: &BTreeMap<String, Tensor>, key: &str) -> Result<i64> {
    use anyhow::{ensure, Context};
    let step = state
        .get(key)
        .with_context(|| format!("the checkpoint has no optimizer state ({key})"))?;
    ensure!(
        step.numel() == 1 && step.size().len() <= 1,
        "{key} has shape {:?}, expected a single number",
        step.size()
    );
    let step = step.reshape([-1]).int64_value(&[0]);
    ensure!(
        (0..=MAX_SAVED_STEP).contains(&step),
        "{key} is {step}: a step count runs from 0 to 2^53"
    );
    Ok(step)
}

/// Copies the saved tensor `key` into `into`, checking that it is there with `into`'s shape.
pub(crate) fn load_saved(
    state: &BTreeMap<String, Tensor>,
    key: &str,
    into: &mut Tensor,
) -> Result<()> {
    use anyhow::{ensure, Context};
    let saved = state
        .get(key)
        .with_context(|| format!("the checkpoint has no {key}"))?;
    ensure!(
        saved.size() == into.size(),
        "{key} has shape {:?}, expected {:?}",
        saved.size(),
        into.size()
    );
    tch::no_grad(|| {
        into.copy_(&saved.to_kind(tch::Kind::Float).to_device(into.device()));
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::choice::Choice;

    /// A step count past 2^53 (where Adam's bias correction stops counting), or below 0, is
    /// refused by name rather than turned into a NaN loss later.
    #[test]
    fn saved_step_counts_run_from_0_to_2_to_the_53() {
        let state = |step: i64| BTreeMap::from([("adam.step".to_owned(), Tensor::from(step))]);
        assert_eq!(saved_step(&state(20), "adam.step").unwrap(), 20);
        assert_eq!(saved_step(&state(1 << 53), "adam.step").unwrap(), 1 << 53);
        for bad in [i64::MAX, (1 << 53) + 1, -1] {
            let err = saved_step(&state(bad), "adam.step")
                .unwrap_err()
                .to_string();
            assert!(err.contains("adam.step") && err.contains("2^53"), "{err}");
        }
    }

    #[test]
    fn biases_and_batch_norm_weights_do_not_decay() {
        assert!(decays("conv1.weight") && decays("fc.weight") && decays("conv3.weight"));
        assert!(!decays("conv1.bias") && !decays("fc.bias"));
        assert!(!decays("bn1.weight") && !decays("bn2.bias"));
        assert_eq!(
            OptimizerKind::from_name("adamw"),
            Some(OptimizerKind::AdamW)
        );
        assert_eq!(OptimizerKind::AdamW.default_weight_decay(), 0.01);
        assert_eq!(
            serde_json::to_string(&OptimizerKind::AdamW).unwrap(),
            "\"adamw\""
        );
    }
}

//! The training state after a completed epoch, or after a step within one, as one file of
//! named tensors (`resume.ot`), so that a run can be resumed from it bit for bit:
//!
//! - `state.epoch`: the epochs completed;
//! - `state.step`, `state.loss_sum`, `state.images`, `state.seconds`: when the run stopped
//!   within the next epoch, the steps it had done there and what the epoch had measured so far
//!   (see [`PartialEpoch`]), and `state.grad_norm_sum` when gradients are clipped;
//! - `model.NAME`: the raw weights (every variable, batch-norm statistics included);
//! - `adam.step`, `adam.m.NAME`, `adam.v.NAME`: the optimizer (see [`crate::optim`]);
//! - `ema.NAME`: the weight average, when the run keeps one;
//! - `best.epoch`, `best.NAME` (names kept from earlier releases): the epoch delivered so far
//!   and its weights (the validation leader is found again from metrics.jsonl).

use super::options::TrainOptions;
use super::selection::Delivered;
use super::trainer::{PartialEpoch, Trainer};
use crate::model::NamedTensor;
use crate::optim::LossScale;
use anyhow::{ensure, Context, Result};
use std::collections::BTreeMap;
use tch::{Device, Kind, Tensor};

const EPOCH: &str = "state.epoch";
const STEP: &str = "state.step";
const LOSS_SUM: &str = "state.loss_sum";
const IMAGES: &str = "state.images";
const SECONDS: &str = "state.seconds";
const GRAD_NORM_SUM: &str = "state.grad_norm_sum";

/// A saved training state, as read back from `resume.ot`.
pub struct TrainingState {
    tensors: BTreeMap<String, Tensor>,
}

/// How far a saved state had come: what a resumed run's logs keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunPosition {
    pub epochs_completed: usize,
    /// Steps of the run done, counted across epochs.
    pub steps_done: usize,
}

impl TrainingState {
    pub fn new(tensors: BTreeMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// The epochs the state had completed.
    pub fn completed_epochs(&self) -> Result<usize> {
        self.count(EPOCH)
    }

    /// Where the state stands in a run with `options` over `examples` training examples.
    pub fn position(&self, options: &TrainOptions, examples: usize) -> Result<RunPosition> {
        let epochs_completed = self.completed_epochs()?;
        let within = match self.tensors.contains_key(STEP) {
            true => self.count(STEP)?,
            false => 0,
        };
        let steps_per_epoch = examples.div_ceil(options.batch_size);
        Ok(RunPosition {
            epochs_completed,
            steps_done: options
                .epochs
                .steps_before(epochs_completed + 1, steps_per_epoch)
                + within,
        })
    }

    fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors
            .get(key)
            .with_context(|| format!("the resume state has no {key}"))
    }

    /// The single number `key` holds (a file may hold any shape there).
    fn scalar(&self, key: &str) -> Result<f64> {
        let tensor = self.get(key)?;
        ensure!(
            tensor.numel() == 1 && tensor.size().len() <= 1,
            "{key} has shape {:?}, expected a single number",
            tensor.size()
        );
        let value = tensor.reshape([-1]).double_value(&[0]);
        ensure!(value.is_finite(), "{key} is {value}");
        Ok(value)
    }

    /// A count: a whole number from 0 up to what a run can reach.
    fn count(&self, key: &str) -> Result<usize> {
        let value = self.scalar(key)?;
        ensure!(
            value >= 0.0 && value.fract() == 0.0 && value < 1e12,
            "{key} is {value}, not a count"
        );
        Ok(value as usize)
    }

    /// Where the next epoch (`epoch`) stopped, when the state was saved within it; `steps` is
    /// the number of steps that epoch has.
    pub fn partial(
        &self,
        epoch: usize,
        steps: usize,
        device: Device,
    ) -> Result<Option<PartialEpoch>> {
        if !self.tensors.contains_key(STEP) {
            return Ok(None); // saved at the end of an epoch
        }
        let steps_done = self.count(STEP)?;
        ensure!(
            (1..steps).contains(&steps_done),
            "{STEP} is {steps_done}, but epoch {epoch} has {steps} steps with these settings"
        );
        Ok(Some(PartialEpoch {
            epoch,
            steps_done,
            loss_sum: Tensor::from(self.scalar(LOSS_SUM)? as f32).to_device(device),
            images: self.count(IMAGES)?,
            seconds: self.scalar(SECONDS)?,
            grad_norm_sum: match self.tensors.contains_key(GRAD_NORM_SUM) {
                true => Some(Tensor::from(self.scalar(GRAD_NORM_SUM)? as f32).to_device(device)),
                false => None,
            },
        }))
    }

    /// The tensors `prefix.NAME` for every variable of the model, in its order, each checked
    /// against the variable's shape.
    fn prefixed(&self, trainer: &Trainer, prefix: &str) -> Result<Vec<Tensor>> {
        let names = trainer.model.variable_names();
        names
            .iter()
            .zip(trainer.model.variables())
            .map(|(name, variable)| {
                let key = format!("{prefix}.{name}");
                let saved = self.get(&key)?;
                ensure!(
                    saved.size() == variable.tensor.size(),
                    "{key} has shape {:?}, expected {:?}",
                    saved.size(),
                    variable.tensor.size()
                );
                Ok(saved.to_kind(Kind::Float))
            })
            .collect()
    }

    /// Puts the state back into the trainer (weights, optimizer, average); returns the best
    /// epoch it had chosen, if it had completed one.
    pub fn restore(&self, trainer: &mut Trainer) -> Result<Option<Delivered>> {
        trainer.model.restore(&self.prefixed(trainer, "model")?);
        trainer.optimizer.load_state(&self.tensors)?;
        if trainer.loss_scale.is_some() {
            trainer.loss_scale = Some(LossScale::from_state(&self.tensors)?);
        }
        if trainer.average.is_some() {
            let shadow = self
                .prefixed(trainer, "ema")
                .context("the run kept a weight average (--ema)")?;
            if let Some(average) = trainer.average.as_mut() {
                average.load(&shadow);
            }
        }
        if !self.tensors.contains_key("best.epoch") {
            return Ok(None);
        }
        Ok(Some(Delivered {
            epoch: self.count("best.epoch")?,
            weights: self
                .prefixed(trainer, "best")?
                .iter()
                .map(|t| t.copy())
                .collect(),
        }))
    }
}

/// The state after `epoch` completed epochs, and `partial`'s steps into the next one, to write
/// as `resume.ot`.
pub fn capture(
    epoch: usize,
    trainer: &Trainer,
    delivered: Option<&Delivered>,
    partial: Option<&PartialEpoch>,
) -> Vec<NamedTensor> {
    let names = trainer.model.variable_names();
    let mut tensors = vec![named(EPOCH.to_owned(), Tensor::from(epoch as i64))];
    if let Some(partial) = partial {
        tensors.extend([
            named(STEP.to_owned(), Tensor::from(partial.steps_done as i64)),
            named(LOSS_SUM.to_owned(), partial.loss_sum.to_device(Device::Cpu)),
            named(IMAGES.to_owned(), Tensor::from(partial.images as i64)),
            named(SECONDS.to_owned(), Tensor::from(partial.seconds)),
        ]);
        if let Some(sum) = &partial.grad_norm_sum {
            tensors.push(named(GRAD_NORM_SUM.to_owned(), sum.to_device(Device::Cpu)));
        }
    }
    for (name, variable) in names.iter().zip(trainer.model.variables()) {
        tensors.push(named(
            format!("model.{name}"),
            variable.tensor.detach().contiguous(),
        ));
    }
    tensors.extend(
        trainer
            .optimizer
            .state()
            .into_iter()
            .map(|(name, tensor)| named(name, tensor)),
    );
    if let Some(scale) = &trainer.loss_scale {
        tensors.extend(scale.state().into_iter().map(|(n, t)| named(n, t)));
    }
    if let Some(average) = &trainer.average {
        for (name, t) in names.iter().zip(average.shadow()) {
            tensors.push(named(format!("ema.{name}"), t.contiguous()));
        }
    }
    if let Some(delivered) = delivered {
        tensors.push(named(
            "best.epoch".to_owned(),
            Tensor::from(delivered.epoch as i64),
        ));
        for (name, t) in names.iter().zip(&delivered.weights) {
            tensors.push(named(format!("best.{name}"), t.contiguous()));
        }
    }
    tensors
}

fn named(name: String, tensor: Tensor) -> NamedTensor {
    NamedTensor { name, tensor }
}

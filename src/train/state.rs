//! The training state after a completed epoch, as one file of named tensors (`resume.ot`), so
//! that a run can be resumed from it bit for bit:
//!
//! - `state.epoch`: the epochs completed;
//! - `model.NAME`: the raw weights (every variable, batch-norm statistics included);
//! - `adam.step`, `adam.m.NAME`, `adam.v.NAME`: the optimizer (see [`crate::optim`]);
//! - `ema.NAME`: the weight average, when the run keeps one;
//! - `best.epoch`, `best.accuracy`, `best.NAME`: the best epoch so far and its weights.

use super::best::Best;
use super::trainer::Trainer;
use crate::model::NamedTensor;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use tch::Tensor;

const EPOCH: &str = "state.epoch";

/// A saved training state, as read back from `resume.ot`.
pub struct TrainingState {
    tensors: BTreeMap<String, Tensor>,
}

impl TrainingState {
    pub fn new(tensors: BTreeMap<String, Tensor>) -> Self {
        Self { tensors }
    }

    /// The epochs the state had completed.
    pub fn completed_epochs(&self) -> Result<usize> {
        Ok(self.get(EPOCH)?.int64_value(&[]) as usize)
    }

    fn get(&self, key: &str) -> Result<&Tensor> {
        self.tensors
            .get(key)
            .with_context(|| format!("the resume state has no {key}"))
    }

    /// The tensors `prefix.NAME` for every variable of the model, in its order.
    fn prefixed(&self, trainer: &Trainer, prefix: &str) -> Result<Vec<Tensor>> {
        trainer
            .model
            .variable_names()
            .iter()
            .map(|name| Ok(self.get(&format!("{prefix}.{name}"))?.shallow_clone()))
            .collect()
    }

    /// Puts the state back into the trainer (weights, optimizer, average); returns the best
    /// epoch it had chosen.
    pub(super) fn restore(&self, trainer: &mut Trainer) -> Result<Best> {
        trainer.model.restore(&self.prefixed(trainer, "model")?);
        trainer.optimizer.load_state(&self.tensors)?;
        if trainer.average.is_some() {
            let shadow = self
                .prefixed(trainer, "ema")
                .context("the run kept a weight average (--ema)")?;
            if let Some(average) = trainer.average.as_mut() {
                average.load(&shadow);
            }
        }
        Ok(Best {
            epoch: self.get("best.epoch")?.int64_value(&[]) as usize,
            accuracy: self.get("best.accuracy")?.double_value(&[]),
            weights: self
                .prefixed(trainer, "best")?
                .iter()
                .map(|t| t.copy())
                .collect(),
        })
    }
}

/// The state after `epoch`, to write as `resume.ot`.
pub(super) fn capture(epoch: usize, trainer: &Trainer, best: Option<&Best>) -> Vec<NamedTensor> {
    let names = trainer.model.variable_names();
    let mut tensors = vec![named(EPOCH.to_owned(), Tensor::from(epoch as i64))];
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
    if let Some(average) = &trainer.average {
        for (name, t) in names.iter().zip(average.shadow()) {
            tensors.push(named(format!("ema.{name}"), t.contiguous()));
        }
    }
    if let Some(best) = best {
        tensors.push(named(
            "best.epoch".to_owned(),
            Tensor::from(best.epoch as i64),
        ));
        tensors.push(named(
            "best.accuracy".to_owned(),
            Tensor::from(best.accuracy),
        ));
        for (name, t) in names.iter().zip(&best.weights) {
            tensors.push(named(format!("best.{name}"), t.contiguous()));
        }
    }
    tensors
}

fn named(name: String, tensor: Tensor) -> NamedTensor {
    NamedTensor { name, tensor }
}

//! What a run records: one [`EpochRecord`] per epoch (a line of `metrics.jsonl`), the run's
//! [`History`] of them, and the [`FinalMetrics`] of the model it delivers.

use crate::eval::Scores;
use anyhow::{ensure, Result};
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`. Epoch 0, when present, scores the starting checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean cross-entropy over the epoch's training batches (absent for epoch 0).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub train_loss: Option<f64>,
    #[serde(flatten)]
    pub scores: Scores,
    /// Seconds spent training in this epoch (evaluation excluded).
    pub seconds: f64,
    /// Training images per second in this epoch.
    pub images_per_second: f64,
    /// The learning rate at the epoch's first step, and at its last.
    pub learning_rate: f64,
    pub learning_rate_end: f64,
    /// The mean global gradient norm before clipping (`--clip-grad-norm`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub grad_norm: Option<f64>,
}

impl EpochRecord {
    /// Checks the values a metrics.jsonl line claims, by key: a damaged or edited line must
    /// not reach the report's charts as an accuracy of 2.5 or a negative loss.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.epoch as f64 <= super::Epochs::MAX,
            "epoch is {}: beyond the most epochs a run may have",
            self.epoch
        );
        let scores = &self.scores;
        let losses = [
            ("train_loss", self.train_loss),
            ("validation_loss", scores.validation_loss),
            ("test_loss", scores.test_loss),
        ];
        for (key, loss) in losses {
            if let Some(loss) = loss {
                ensure!(
                    loss.is_finite() && loss >= 0.0,
                    "{key} is {loss}: must be a finite number from 0"
                );
            }
        }
        let accuracies = [
            ("validation_accuracy", scores.validation_accuracy),
            ("test_accuracy", scores.test_accuracy),
        ];
        for (key, accuracy) in accuracies {
            if let Some(accuracy) = accuracy {
                ensure!(
                    (0.0..=1.0).contains(&accuracy),
                    "{key} is {accuracy}: must be from 0 to 1"
                );
            }
        }
        let amounts = [
            ("seconds", self.seconds),
            ("images_per_second", self.images_per_second),
            ("learning_rate", self.learning_rate),
            ("learning_rate_end", self.learning_rate_end),
        ];
        let optional = [("grad_norm", self.grad_norm)];
        let present = optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v)));
        for (key, amount) in amounts.into_iter().chain(present) {
            ensure!(
                amount.is_finite() && amount >= 0.0,
                "{key} is {amount}: must be a finite number from 0"
            );
        }
        Ok(())
    }

    /// Epoch 0: the starting checkpoint's scores, before any training.
    pub fn start(scores: Scores) -> Self {
        Self {
            epoch: 0,
            train_loss: None,
            scores,
            seconds: 0.0,
            images_per_second: 0.0,
            learning_rate: 0.0,
            learning_rate_end: 0.0,
            grad_norm: None,
        }
    }
}

/// The running figures of an epoch at one of its steps, for TensorBoard's step charts. They
/// depend only on the saved state, so a resumed run samples the same values as an
/// uninterrupted one (the rate apart).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepSample {
    /// Steps done in the run, counted across epochs (from 1).
    pub step: usize,
    pub epoch: usize,
    /// Mean loss over the epoch's batches so far (the progress bar's).
    pub train_loss: f64,
    /// The learning rate of the step.
    pub learning_rate: f64,
    /// Training images per second since the previous sample.
    pub images_per_second: f64,
    /// Mean global gradient norm before clipping over the epoch's steps so far, when clipping.
    pub grad_norm: Option<f64>,
}

/// Every epoch of a run so far, in order: what `metrics.jsonl` holds. The one list of them: the
/// training loop appends to it, and the run folder writes it out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    records: Vec<EpochRecord>,
}

impl History {
    /// A run that starts from a checkpoint scored as `start` (epoch 0), or from nothing.
    pub fn new(start: Option<Scores>) -> Self {
        Self {
            records: start.map(EpochRecord::start).into_iter().collect(),
        }
    }

    /// The records of an interrupted run, up to the `completed` epochs its saved state holds
    /// (later lines were written by an epoch that did not finish saving).
    pub fn resumed(records: Vec<EpochRecord>, completed: usize) -> Result<Self> {
        let history = Self {
            records: records
                .into_iter()
                .filter(|r| r.epoch <= completed)
                .collect(),
        };
        let trained = history.trained().count();
        ensure!(
            trained == completed,
            "metrics.jsonl holds {trained} of the {completed} epochs the resume state has completed"
        );
        Ok(history)
    }

    pub fn push(&mut self, record: EpochRecord) {
        self.records.push(record);
    }

    pub fn records(&self) -> &[EpochRecord] {
        &self.records
    }

    /// The trained epochs (epoch 0, the starting point, left out).
    pub fn trained(&self) -> impl Iterator<Item = &EpochRecord> {
        self.records.iter().filter(|r| r.epoch > 0)
    }

    /// The last epoch recorded (0 when none).
    pub fn last_epoch(&self) -> usize {
        self.records.iter().map(|r| r.epoch).max().unwrap_or(0)
    }

    /// The record of `epoch`.
    pub fn epoch(&self, epoch: usize) -> Option<&EpochRecord> {
        self.records.iter().find(|r| r.epoch == epoch)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitOutcome {
    /// The epoch whose weights the model holds at the end.
    pub chosen_epoch: usize,
    pub stopped_early: bool,
    /// The validation leader, kept in best.ot, when the run delivers its last epoch.
    pub best_validation_epoch: Option<usize>,
}

/// The delivered model's figures (the chosen epoch's), repeated in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub epochs_completed: usize,
    /// The epoch whose weights are in model.ot.
    pub chosen_epoch: usize,
    /// The epoch whose weights are in best.ot (the best validation scores), when `train` kept
    /// one apart from model.ot.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub best_validation_epoch: Option<usize>,
    pub stopped_early: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub train_loss: Option<f64>,
    #[serde(flatten)]
    pub scores: Scores,
    pub train_seconds: f64,
}

impl FinalMetrics {
    pub fn new(history: &History, outcome: FitOutcome) -> Self {
        let chosen = history
            .epoch(outcome.chosen_epoch)
            .expect("the chosen epoch was recorded");
        Self {
            epochs_completed: history.trained().count(),
            chosen_epoch: outcome.chosen_epoch,
            best_validation_epoch: outcome.best_validation_epoch,
            stopped_early: outcome.stopped_early,
            train_loss: chosen.train_loss,
            scores: chosen.scores,
            train_seconds: history.trained().map(|r| r.seconds).sum(),
        }
    }
}

/// A record with made-up figures, for tests elsewhere in the crate.
#[cfg(test)]
pub(crate) fn sample_record(epoch: usize, rate: f64, rate_end: f64) -> EpochRecord {
    EpochRecord {
        epoch,
        train_loss: (epoch > 0).then_some(0.5),
        scores: Scores {
            test_loss: Some(0.4),
            test_accuracy: Some(0.9),
            ..Default::default()
        },
        seconds: 1.0,
        images_per_second: 100.0,
        learning_rate: rate,
        learning_rate_end: rate_end,
        grad_norm: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_history_keeps_the_completed_epochs_and_the_start() {
        let records: Vec<EpochRecord> = (0..4).map(|e| sample_record(e, 1e-3, 1e-3)).collect();
        let history = History::resumed(records.clone(), 2).unwrap();
        assert_eq!(history.records(), &records[..3]);
        assert_eq!(history.last_epoch(), 2);
        let err = History::resumed(records[..2].to_vec(), 2).unwrap_err();
        assert!(err.to_string().contains("holds 1 of the 2 epochs"), "{err}");
        let outcome = FitOutcome {
            chosen_epoch: 1,
            stopped_early: false,
            best_validation_epoch: None,
        };
        let metrics = FinalMetrics::new(&history, outcome);
        assert_eq!((metrics.epochs_completed, metrics.train_seconds), (2, 2.0));
    }
}

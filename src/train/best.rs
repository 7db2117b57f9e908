//! Best-epoch selection: which epoch's weights a run delivers, and when patience runs out.
//!
//! When asked to choose and given a validation split, the epoch with the best validation
//! accuracy wins, and `patience` stops the run after that many epochs without improvement;
//! otherwise the last epoch's weights are the result. The test set is never used to choose.

use crate::eval::Scores;
use crate::model::Classifier;
use tch::Tensor;

/// The best epoch so far and its weights (those the run would deliver: the average, if kept).
pub struct Best {
    pub accuracy: f64,
    pub epoch: usize,
    pub weights: Vec<Tensor>,
}

/// The selection rule of a run and the best epoch so far.
pub struct Selection {
    choose_by_validation: bool,
    patience: Option<usize>,
    pub best: Option<Best>,
}

/// What the rule says of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// These weights are the ones to deliver (so far).
    pub is_best: bool,
    /// The choice was made on validation accuracy (rather than "the latest wins").
    pub by_validation: bool,
}

impl Selection {
    pub fn new(choose_by_validation: bool, patience: Option<usize>) -> Self {
        Self {
            choose_by_validation,
            patience,
            best: None,
        }
    }

    pub fn patience(&self) -> Option<usize> {
        self.patience
    }

    /// Judges an epoch's scores against the best so far.
    pub fn judge(&self, scores: &Scores) -> Verdict {
        let by_validation = self.choose_by_validation && scores.validation_accuracy.is_some();
        let is_best = match (scores.validation_accuracy, &self.best) {
            (Some(accuracy), Some(best)) if by_validation => accuracy > best.accuracy,
            _ => true,
        };
        Verdict {
            is_best,
            by_validation,
        }
    }

    /// Remembers `epoch` as the best, with the weights `model` holds now.
    pub fn keep(&mut self, epoch: usize, scores: &Scores, model: &Classifier) {
        self.best = Some(Best {
            accuracy: scores.validation_accuracy.unwrap_or(0.0),
            epoch,
            weights: model.snapshot(),
        });
    }

    /// Whether the run should stop after `epoch` of `epochs`: `patience` epochs have passed
    /// without a better validation accuracy (only when there is a validation split).
    pub fn patience_ran_out(&self, epoch: usize, epochs: usize, has_validation: bool) -> bool {
        let best_epoch = self.best.as_ref().map_or(epoch, |b| b.epoch);
        match self.patience {
            Some(patience) => has_validation && epoch - best_epoch >= patience && epoch < epochs,
            None => false,
        }
    }

    /// The chosen epoch; puts its weights into `model`.
    pub fn deliver(self, model: &Classifier) -> usize {
        let best = self.best.expect("at least one epoch ran");
        model.restore(&best.weights);
        best.epoch
    }
}

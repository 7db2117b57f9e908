//! Which epoch a run delivers (the delivered epoch), which epoch leads on the
//! validation split, and when patience runs out.
//!
//! An epoch leads when its validation accuracy is higher than the leader's, or equal with a
//! lower validation loss: accuracy on a small validation split saturates (100% of 100 pictures
//! from epoch 3 on) while the loss still tells better models from worse. When asked to choose
//! (`finetune`, with a validation split the starting model never trained on), the leader is
//! delivered; otherwise the last epoch is, and `train` keeps the leader in best.ot. `patience`
//! stops the run after that many epochs without a new leader. The test set is never used to
//! choose.

use crate::eval::Scores;
use crate::model::Classifier;
use tch::Tensor;

/// The epoch whose weights the run delivers so far (the average, if kept).
pub struct Delivered {
    pub epoch: usize,
    pub weights: Vec<Tensor>,
}

/// The epoch with the best validation scores so far.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Leader {
    pub epoch: usize,
    pub accuracy: f64,
    pub loss: f64,
}

impl Leader {
    /// Whether `accuracy` and `loss` beat this leader: higher accuracy, or the same with a
    /// lower loss.
    pub fn beaten_by(&self, accuracy: f64, loss: f64) -> bool {
        accuracy > self.accuracy || (accuracy == self.accuracy && loss < self.loss)
    }
}

/// The selection rule of a run, the delivered epoch and the validation leader so far.
pub struct Selection {
    choose_by_validation: bool,
    patience: Option<usize>,
    pub delivered: Option<Delivered>,
    pub leader: Option<Leader>,
}

/// What the rule says of one epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// These weights are the ones to deliver (so far).
    pub delivers: bool,
    /// The epoch leads on the validation split (false without one).
    pub leads: bool,
    /// The choice was made on validation scores (rather than "the latest wins").
    pub by_validation: bool,
}

impl Selection {
    pub fn new(choose_by_validation: bool, patience: Option<usize>) -> Self {
        Self {
            choose_by_validation,
            patience,
            delivered: None,
            leader: None,
        }
    }

    pub fn patience(&self) -> Option<usize> {
        self.patience
    }

    /// Judges an epoch's scores against the leader so far.
    pub fn judge(&self, scores: &Scores) -> Verdict {
        let validation = scores.validation_accuracy.zip(scores.validation_loss);
        let leads = match (validation, &self.leader) {
            (Some((accuracy, loss)), Some(leader)) => leader.beaten_by(accuracy, loss),
            (Some(_), None) => true,
            (None, _) => false,
        };
        let by_validation = self.choose_by_validation && validation.is_some();
        Verdict {
            delivers: if by_validation { leads } else { true },
            leads,
            by_validation,
        }
    }

    /// Records the verdict on `epoch`: a new leader, and the weights `model` holds now when
    /// they are the ones to deliver.
    pub fn record(&mut self, epoch: usize, scores: &Scores, verdict: Verdict, model: &Classifier) {
        if verdict.leads {
            self.leader = Some(Leader {
                epoch,
                accuracy: scores.validation_accuracy.unwrap_or(0.0),
                loss: scores.validation_loss.unwrap_or(f64::INFINITY),
            });
        }
        if verdict.delivers {
            self.delivered = Some(Delivered {
                epoch,
                weights: model.snapshot(),
            });
        }
    }

    /// Finds the leader again from the epochs recorded so far (a resumed run).
    pub fn replay(&mut self, records: &[crate::train::EpochRecord]) {
        self.leader = None;
        for record in records.iter().filter(|r| r.epoch > 0) {
            let scores = &record.scores;
            if let Some((accuracy, loss)) = scores.validation_accuracy.zip(scores.validation_loss) {
                if self.leader.is_none_or(|l| l.beaten_by(accuracy, loss)) {
                    self.leader = Some(Leader {
                        epoch: record.epoch,
                        accuracy,
                        loss,
                    });
                }
            }
        }
    }

    /// Whether the run should stop after `epoch` of `epochs`: `patience` epochs have passed
    /// without a new leader (only when there is a validation split).
    pub fn patience_ran_out(&self, epoch: usize, epochs: usize) -> bool {
        match (self.patience, &self.leader) {
            (Some(patience), Some(leader)) => epoch - leader.epoch >= patience && epoch < epochs,
            _ => false,
        }
    }

    /// The chosen epoch; puts its weights into `model`.
    pub fn deliver(self, model: &Classifier) -> usize {
        let delivered = self.delivered.expect("at least one epoch ran");
        model.restore(&delivered.weights);
        delivered.epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(accuracy: f64, loss: f64) -> Scores {
        Scores {
            validation_accuracy: Some(accuracy),
            validation_loss: Some(loss),
            ..Default::default()
        }
    }

    #[test]
    fn ties_in_accuracy_go_to_the_lower_loss() {
        let mut selection = Selection::new(true, Some(2));
        let model = Classifier::new(crate::nn::Architecture::Tutorial, tch::Device::Cpu);
        let epochs = [
            (1.0, 0.30),
            (1.0, 0.20),
            (1.0, 0.25),
            (0.99, 0.10),
            (1.0, 0.19),
        ];
        let mut delivered = Vec::new();
        for (index, (accuracy, loss)) in epochs.iter().enumerate() {
            let verdict = selection.judge(&scores(*accuracy, *loss));
            selection.record(index + 1, &scores(*accuracy, *loss), verdict, &model);
            delivered.push(selection.delivered.as_ref().unwrap().epoch);
        }
        assert_eq!(delivered, [1, 2, 2, 2, 5]);
        assert_eq!(selection.leader.unwrap().epoch, 5);
    }

    #[test]
    fn without_choosing_the_last_epoch_is_delivered_and_the_leader_still_tracked() {
        let mut selection = Selection::new(false, Some(1));
        let model = Classifier::new(crate::nn::Architecture::Tutorial, tch::Device::Cpu);
        for (epoch, accuracy) in [(1, 0.9), (2, 0.8)] {
            let verdict = selection.judge(&scores(accuracy, 0.1));
            assert!(verdict.delivers && !verdict.by_validation);
            selection.record(epoch, &scores(accuracy, 0.1), verdict, &model);
        }
        assert_eq!(selection.delivered.as_ref().unwrap().epoch, 2);
        assert_eq!(selection.leader.unwrap().epoch, 1);
        assert!(selection.patience_ran_out(2, 5));
    }
}

//! The loop over epochs shared by `train` and `finetune` (one loop, two front doors): train an
//! epoch, score it, choose, hand it to the run's [`EpochSink`] to save, stop early if patience
//! runs out, and deliver the chosen epoch's weights.

use super::best::{Selection, Verdict};
use super::options::TrainOptions;
use super::records::{EpochRecord, FitOutcome, History};
use super::state::{self, TrainingState};
use super::trainer::{EpochResult, Trainer};
use crate::data::Split;
use crate::eval::{EvalSets, Scores};
use crate::model::{Classifier, NamedTensor};
use anyhow::{ensure, Result};
use tracing::info;

/// Where a run's epochs go: the run folder writes them to disk; tests and benchmarks discard
/// them.
pub trait EpochSink {
    /// After an epoch is scored and recorded in `history`. The model holds the weights the run
    /// would deliver (the average, if kept); `is_best` says they are the best so far.
    fn epoch_scored(&mut self, history: &History, is_best: bool, model: &Classifier) -> Result<()>;

    /// After the epoch, the state a resumed run starts from (see [`super::state`]).
    fn state_captured(&mut self, state: &[NamedTensor]) -> Result<()>;
}

/// An [`EpochSink`] that keeps nothing.
pub struct Discard;

impl EpochSink for Discard {
    fn epoch_scored(&mut self, _: &History, _: bool, _: &Classifier) -> Result<()> {
        Ok(())
    }

    fn state_captured(&mut self, _: &[NamedTensor]) -> Result<()> {
        Ok(())
    }
}

/// One training run's inputs.
pub struct Fit<'a> {
    pub model: &'a Classifier,
    pub train: &'a Split,
    /// Scored after each epoch.
    pub eval: EvalSets<'a>,
    pub options: &'a TrainOptions,
    /// The state of an interrupted run to continue from.
    pub resume: Option<&'a TrainingState>,
}

/// What changes as the epochs go by.
struct Progress<'a, 'b> {
    trainer: Trainer<'a>,
    selection: Selection,
    history: &'b mut History,
    sink: &'b mut dyn EpochSink,
}

impl Fit<'_> {
    /// Trains, appending each epoch to `history` and handing it to `sink`. At the end the model
    /// holds the chosen epoch's weights.
    ///
    /// Stops with an [`crate::interrupt::Interrupted`] error after the current step when SIGINT
    /// or SIGTERM arrives, and with an error when the loss stops being finite; in both cases
    /// what the sink saved after the last completed epoch stands.
    pub fn run(self, history: &mut History, sink: &mut dyn EpochSink) -> Result<FitOutcome> {
        ensure!(!self.train.is_empty(), "the training set is empty");
        let options = self.options;
        let mut progress = Progress {
            trainer: Trainer::new(self.model, options, self.train.len())?,
            selection: Selection::new(options.choose_by_validation, options.patience),
            history,
            sink,
        };
        let epochs = options.epochs.count();
        let first_epoch = match self.resume {
            Some(saved) => self.restore(saved, &mut progress)? + 1,
            None => 1,
        };
        let mut stopped_early = false;
        for epoch in first_epoch..=epochs {
            let trained = progress.trainer.train_epoch(self.train, epoch)?;
            self.finish_epoch(epoch, trained, &mut progress)?;
            let has_validation = self.eval.validation.is_some();
            if progress
                .selection
                .patience_ran_out(epoch, epochs, has_validation)
            {
                let patience = progress.selection.patience().unwrap_or(0);
                info!("no better validation accuracy for {patience} epoch(s): stopping early");
                stopped_early = true;
                break;
            }
        }
        Ok(FitOutcome {
            chosen_epoch: progress.selection.deliver(self.model),
            stopped_early,
        })
    }

    /// Puts a saved state back; returns the epochs it had completed.
    fn restore(&self, saved: &TrainingState, progress: &mut Progress) -> Result<usize> {
        let done = saved.completed_epochs()?;
        progress.selection.best = Some(saved.restore(&mut progress.trainer)?);
        let epochs = self.options.epochs.count();
        ensure!(
            done < epochs,
            "the run has already completed {done} epochs; pass --epochs with a larger total to \
             train further"
        );
        info!("resuming after epoch {done} of {epochs}");
        Ok(done)
    }

    /// Scores the epoch on the weights the run would deliver (the average, if kept), chooses,
    /// records and saves it, then captures the state to resume from.
    fn finish_epoch(
        &self,
        epoch: usize,
        trained: EpochResult,
        progress: &mut Progress,
    ) -> Result<()> {
        let Progress {
            trainer,
            selection,
            history,
            sink,
        } = progress;
        let raw = trainer.average.as_ref().map(|a| a.swap_in(self.model));
        let record = self.record(epoch, &trained, trainer)?;
        let verdict = selection.judge(&record.scores);
        log_epoch(&record, trained.loss, verdict, self.options);
        if verdict.is_best {
            selection.keep(epoch, &record.scores, self.model);
        }
        history.push(record);
        sink.epoch_scored(history, verdict.is_best, self.model)?;
        if let (Some(raw), Some(average)) = (raw, trainer.average.as_ref()) {
            average.swap_out(self.model, raw);
        }
        sink.state_captured(&state::capture(epoch, trainer, selection.best.as_ref()))
    }

    fn record(
        &self,
        epoch: usize,
        trained: &EpochResult,
        trainer: &Trainer,
    ) -> Result<EpochRecord> {
        let first_step = trainer.first_step(epoch);
        let steps = trainer.steps_in(epoch);
        Ok(EpochRecord {
            epoch,
            train_loss: Some(trained.loss),
            scores: Scores::evaluate(self.model, &self.eval)?,
            seconds: trained.seconds,
            images_per_second: trained.images as f64 / trained.seconds,
            learning_rate: trainer.clock.at(first_step),
            learning_rate_end: trainer.clock.at(first_step + steps - 1),
        })
    }
}

fn log_epoch(record: &EpochRecord, train_loss: f64, verdict: Verdict, options: &TrainOptions) {
    info!(
        "epoch {}/{}: train loss {train_loss:.4}, {}, lr {:.2e}→{:.2e}, {:.1} s, {:.0} images/s{}",
        record.epoch,
        options.epochs.count(),
        record.scores.describe(),
        record.learning_rate,
        record.learning_rate_end,
        record.seconds,
        record.images_per_second,
        if verdict.is_best && verdict.by_validation {
            "  (best so far)"
        } else {
            ""
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;
    use crate::schedule::Schedule;
    use crate::shape::batch_shape;
    use crate::train::options::{Epochs, Freeze};
    use tch::{Device, Kind, Tensor};

    /// A small learnable problem: the label is the row of the one bright horizontal bar.
    fn bars(n: i64) -> Split {
        let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(10);
        let images = Tensor::zeros(batch_shape(n), (Kind::Float, Device::Cpu));
        for i in 0..n {
            let row = 2 + 2 * (i % 10);
            let _ = images.get(i).get(0).get(row).fill_(1.0);
        }
        Split { images, labels }
    }

    fn options(seed: u64) -> TrainOptions {
        TrainOptions {
            epochs: Epochs(2.0),
            batch_size: 16,
            learning_rate: 3e-3,
            seed,
            ..Default::default()
        }
    }

    // Bit-identical weights for equal seeds are tested through the CLI (tests/cli.rs), one
    // process per run: libtorch's generator is global, and tests here run in parallel.
    /// A fit whose epochs are kept in memory only.
    fn fit_quietly(
        model: &Classifier,
        data: &Split,
        sets: &EvalSets,
        options: &TrainOptions,
    ) -> (FitOutcome, History) {
        let mut history = History::new(None);
        let fit = Fit {
            model,
            train: data,
            eval: *sets,
            options,
            resume: None,
        };
        let outcome = fit.run(&mut history, &mut Discard).unwrap();
        (outcome, history)
    }

    fn fit_bars(options: &TrainOptions) -> (FitOutcome, History) {
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let data = bars(200);
        let validation = data.first(50);
        let sets = EvalSets {
            validation: Some(&validation),
            test: None,
        };
        fit_quietly(&model, &data, &sets, options)
    }

    #[test]
    fn training_learns_a_learnable_problem() {
        let (_, history) = fit_bars(&options(1));
        let records = history.records();
        assert_eq!(records.len(), 2);
        assert!(records[1].train_loss < records[0].train_loss);
        let accuracy = records[1].scores.validation_accuracy.unwrap();
        assert!(accuracy > 0.9, "{:?}", records[1]);
        assert!(records[1].scores.test_accuracy.is_none());
    }

    #[test]
    fn frozen_layers_stay_bit_identical_and_the_rest_moves() {
        for freeze in [Freeze::Conv1, Freeze::Conv] {
            let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
            let before = model.named_parameters();
            let data = bars(64);
            let options = TrainOptions {
                freeze,
                augment: true,
                schedule: Schedule::Cosine,
                ..options(2)
            };
            fit_quietly(&model, &data, &EvalSets::default(), &options);
            let after = model.named_parameters();
            for (name, tensor) in &before {
                let unchanged = tensor.equal(&after[name]);
                assert_eq!(unchanged, freeze.freezes(name), "{freeze}: {name}");
            }
        }
    }

    #[test]
    fn patience_stops_when_validation_stops_improving() {
        // A learning rate of ~0 cannot improve on the first epoch's validation accuracy.
        let options = TrainOptions {
            epochs: Epochs(6.0),
            learning_rate: 1e-12,
            patience: Some(2),
            choose_by_validation: true,
            ..options(3)
        };
        let (outcome, history) = fit_bars(&options);
        assert!(outcome.stopped_early);
        assert_eq!(history.records().len(), 3);
        assert_eq!(outcome.chosen_epoch, 1);
    }

    #[test]
    fn the_schedule_is_recorded_per_epoch() {
        let options = TrainOptions {
            schedule: Schedule::Cosine,
            ..options(4)
        };
        let (_, history) = fit_bars(&options);
        let r = history.records();
        assert_eq!(r[0].learning_rate, 3e-3);
        assert!(r[0].learning_rate_end < r[0].learning_rate);
        assert!(r[1].learning_rate < r[0].learning_rate_end + 1e-12);
        assert!(r[1].learning_rate_end < 3e-3 * 0.01);
    }

    #[test]
    fn weight_averaging_delivers_the_average_not_the_raw_weights() {
        // With decay 1 the average never moves: the run must deliver the starting weights,
        // although the raw weights trained.
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let start = model.named_parameters();
        let data = bars(64);
        let options = TrainOptions {
            weight_averaging: Some(1.0),
            ..options(5)
        };
        let (_, history) = fit_quietly(&model, &data, &EvalSets::default(), &options);
        let r = history.records();
        assert!(r[1].train_loss.unwrap() < r[0].train_loss.unwrap());
        let delivered = model.named_parameters();
        for (name, tensor) in &start {
            assert!(tensor.equal(&delivered[name]), "{name} is not the average");
        }
    }
}

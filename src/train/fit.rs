//! The loop over epochs shared by `train` and `finetune` (one loop, two front doors): train an
//! epoch, score it, choose, hand it to the run's [`EpochSink`] to save, stop early if patience
//! runs out, and deliver the chosen epoch's weights.

use super::options::TrainOptions;
use super::records::{EpochRecord, FitOutcome, History};
use super::selection::{Selection, Verdict};
use super::sink::{EpochSink, Saves};
use super::state::{self, TrainingState};
use super::trainer::{EpochResult, EpochRun, PartialEpoch, Trainer};
use crate::data::Split;
use crate::eval::{EvalSets, Scores};
use crate::interrupt::{self, Interrupted, StopPoint};
use crate::model::Classifier;
use crate::optim::schedule::Schedule;
use anyhow::{ensure, Result};
use tracing::info;

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
    /// Stops with an [`Interrupted`] error after the current step when SIGINT or SIGTERM
    /// arrives, having handed the sink the state after that step; stops with an error when the
    /// loss stops being finite, and then the last state the sink saved stands.
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
        let (first_epoch, mut partial) = match self.resume {
            Some(saved) => self.restore(saved, &mut progress)?,
            None => (1, None),
        };
        let mut stopped_early = false;
        for epoch in first_epoch..=epochs {
            let trained = self.train_epoch(epoch, partial.take(), &mut progress)?;
            self.finish_epoch(epoch, trained, &mut progress)?;
            if progress.selection.patience_ran_out(epoch, epochs) {
                let patience = progress.selection.patience().unwrap_or(0);
                info!("no better validation scores for {patience} epoch(s): stopping early");
                stopped_early = true;
                break;
            }
            // A signal that came during the epoch's last step or its scoring stops the run
            // here, with the whole epoch saved (unless it was the last one anyway).
            if let (Some(signal), true) = (interrupt::requested(), epoch < epochs) {
                let at = StopPoint {
                    epoch,
                    steps_done: None,
                };
                return Err(Interrupted { signal, at }.into());
            }
        }
        let leader = progress.selection.leader.map(|l| l.epoch);
        let kept_apart = !self.options.choose_by_validation;
        Ok(FitOutcome {
            chosen_epoch: progress.selection.deliver(self.model),
            stopped_early,
            best_validation_epoch: leader.filter(|_| kept_apart),
        })
    }

    /// Trains `epoch` to its end (from where `partial` stopped), saving the state whenever the
    /// trainer pauses within it; a signal ends the run there.
    fn train_epoch(
        &self,
        epoch: usize,
        mut partial: Option<PartialEpoch>,
        progress: &mut Progress,
    ) -> Result<EpochResult> {
        loop {
            let run = progress.trainer.train_epoch(
                self.train,
                epoch,
                partial.take(),
                &mut *progress.sink,
            )?;
            match run {
                EpochRun::Finished(result) => return Ok(result),
                EpochRun::Paused {
                    partial: paused,
                    signal,
                } => {
                    let delivered = progress.selection.delivered.as_ref();
                    let state =
                        state::capture(epoch - 1, &progress.trainer, delivered, Some(&paused));
                    let at = StopPoint {
                        epoch,
                        steps_done: Some(paused.steps_done),
                    };
                    progress.sink.state_captured(at, &state)?;
                    if let Some(signal) = signal {
                        return Err(Interrupted { signal, at }.into());
                    }
                    partial = Some(paused);
                }
            }
        }
    }

    /// Puts a saved state back; returns the epoch to go on with, and where within it the
    /// state was saved, if it was.
    fn restore(
        &self,
        saved: &TrainingState,
        progress: &mut Progress,
    ) -> Result<(usize, Option<PartialEpoch>)> {
        let done = saved.completed_epochs()?;
        let epochs = self.options.epochs.count();
        ensure!(
            done < epochs,
            "the run has already completed {done} epochs; pass --epochs with a larger total to \
             train further"
        );
        progress.selection.delivered = saved.restore(&mut progress.trainer)?;
        progress.selection.replay(progress.history.records());
        for record in progress.history.trained() {
            observe_plateau(&mut progress.trainer, record, self.options);
        }
        let next = done + 1;
        let steps = progress.trainer.steps_in(next);
        let partial = saved.partial(next, steps, self.model.device())?;
        match &partial {
            Some(p) => info!(
                "resuming at step {} of {steps} in epoch {next} of {epochs}",
                p.steps_done
            ),
            None => info!("resuming after epoch {done} of {epochs}"),
        }
        Ok((next, partial))
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
        selection.record(epoch, &record.scores, verdict, self.model);
        observe_plateau(trainer, &record, self.options);
        let saves = Saves {
            delivered: verdict.delivers,
            leader: verdict.leads && !verdict.by_validation,
        };
        history.push(record);
        sink.epoch_scored(history, saves, self.model)?;
        if let (Some(raw), Some(average)) = (raw, trainer.average.as_ref()) {
            average.swap_out(self.model, raw);
        }
        let at = StopPoint {
            epoch,
            steps_done: None,
        };
        let state = state::capture(epoch, trainer, selection.delivered.as_ref(), None);
        sink.state_captured(at, &state)
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
            learning_rate: trainer.learning_rate_at(first_step),
            learning_rate_end: trainer.learning_rate_at(first_step + steps - 1),
            grad_norm: trained.grad_norm,
        })
    }
}

/// Under the plateau schedule, hands the epoch's validation loss to it.
fn observe_plateau(trainer: &mut Trainer, record: &EpochRecord, options: &TrainOptions) {
    if options.schedule != Schedule::Plateau {
        return;
    }
    if let Some(loss) = record.scores.validation_loss {
        if trainer.plateau.observe(loss) {
            info!(
                "validation loss has not improved for {} epoch(s): learning rate × {} (now {:.2e})",
                options.plateau_patience + 1,
                options.plateau_factor,
                options.learning_rate * trainer.plateau.scale
            );
        }
    }
}

/// How the epoch line marks a new validation leader: the weights to deliver when the run
/// chooses by validation, otherwise the ones best.ot keeps.
fn lead_note(verdict: Verdict) -> &'static str {
    match (verdict.leads, verdict.by_validation) {
        (false, _) => "",
        (true, true) => "  (best so far)",
        (true, false) => "  (best validation scores so far: best.ot)",
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
        lead_note(verdict)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Architecture;
    use crate::optim::schedule::Schedule;
    use crate::shape::batch_shape;
    use crate::train::options::{Epochs, Freeze};
    use crate::train::sink::Discard;
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
        // With a decay this close to 1 the average barely moves: the run must deliver weights
        // next to the starting ones, although the raw weights trained.
        let model = Classifier::new(Architecture::Tutorial, Device::Cpu);
        let start = model.named_parameters();
        let data = bars(64);
        let options = TrainOptions {
            weight_averaging: Some(0.999_999),
            ..options(5)
        };
        let (_, history) = fit_quietly(&model, &data, &EvalSets::default(), &options);
        let r = history.records();
        assert!(r[1].train_loss.unwrap() < r[0].train_loss.unwrap());
        let delivered = model.named_parameters();
        for (name, tensor) in &start {
            let moved = (tensor - &delivered[name]).abs().max().double_value(&[]);
            assert!(moved < 1e-5, "{name} moved by {moved}: not the average");
        }
    }
}

//! Where a run's epochs and step samples go: the [`EpochSink`] the training loop hands them to
//! (the run folder writes them to disk; tests and benchmarks discard them).

use super::records::{History, StepSample};
use crate::interrupt::StopPoint;
use crate::model::{Classifier, NamedTensor};
use anyhow::Result;

/// Where a run's epochs go: the run folder writes them to disk; tests and benchmarks discard
/// them.
pub trait EpochSink {
    /// After an epoch is scored and recorded in `history`. The model holds the weights the run
    /// would deliver (the average, if kept); `saves` says which files they go to.
    fn epoch_scored(&mut self, history: &History, saves: Saves, model: &Classifier) -> Result<()>;

    /// The state a resumed run starts from (see [`super::state`]), after an epoch or after a
    /// step within one (`at`).
    fn state_captured(&mut self, at: StopPoint, state: &[NamedTensor]) -> Result<()>;

    /// Every [`super::trainer::SAMPLE_EVERY`] steps and at the end of each epoch: the running
    /// figures of the epoch so far. Nothing to do by default.
    fn step_sampled(&mut self, _sample: &StepSample) -> Result<()> {
        Ok(())
    }
}

/// Which of the epoch's files get the weights the run would deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Saves {
    /// model.ot: they are the ones to deliver so far.
    pub delivered: bool,
    /// best.ot: they lead on the validation split, in a run that delivers its last epoch.
    pub leader: bool,
}

/// An [`EpochSink`] that keeps nothing.
pub struct Discard;

impl EpochSink for Discard {
    fn epoch_scored(&mut self, _: &History, _: Saves, _: &Classifier) -> Result<()> {
        Ok(())
    }

    fn state_captured(&mut self, _: StopPoint, _: &[NamedTensor]) -> Result<()> {
        Ok(())
    }
}

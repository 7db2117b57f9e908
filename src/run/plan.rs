//! What a training run is told: a [`RunPlan`], built by the command line from its flags, or
//! from an interrupted run's folder ([`Resumable`]).

use crate::data::dataset::DataSpec;
use crate::io::checkpoint;
use crate::io::{RunCommand, RunConfig, RunFolder};
use crate::nn::Architecture;
use crate::train::{Epochs, History, Recipe, TrainOptions, TrainingState};
use anyhow::{ensure, Result};
use std::path::{Path, PathBuf};
use tch::Device;

/// What a run starts from.
pub enum Start {
    /// Fresh weights from the seed.
    Fresh(Architecture),
    /// A checkpoint to fine-tune.
    Checkpoint(PathBuf),
    /// An interrupted or finished run to continue, in its own folder.
    Resume(Box<Resumable>),
}

/// Everything a training run is told.
pub struct RunPlan {
    pub command: RunCommand,
    /// The recipe `train` started from, recorded in config.json.
    pub recipe: Option<Recipe>,
    pub start: Start,
    pub data: DataSpec,
    pub options: TrainOptions,
    /// The run folder [default: runs/<UTC timestamp>].
    pub out: Option<PathBuf>,
    /// Replace a run already in `out`.
    pub overwrite: bool,
    pub device: Device,
    /// Log for TensorBoard (events.out.tfevents.* in the run folder).
    pub tensorboard: bool,
}

/// What `--resume` may change in a run's settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResumeChanges {
    /// A new total of epochs (to extend a finished run).
    pub epochs: Option<Epochs>,
    /// Save the state every this many steps from now on.
    pub checkpoint_every_steps: Option<usize>,
}

/// A run folder to continue: its config, its epochs so far and the state it saved after the
/// last completed one.
pub struct Resumable {
    pub folder: RunFolder,
    pub config: RunConfig,
    pub history: History,
    pub state: TrainingState,
}

impl Resumable {
    /// Reads the run in `dir`: config.json, resume.ot and metrics.jsonl.
    pub fn open(dir: &Path) -> Result<Self> {
        let folder = RunFolder::open(dir);
        let config = folder.read_config()?;
        let state_path = folder.resume_path();
        ensure!(
            state_path.exists(),
            "--resume {}: no {} (the run stopped before its first step was saved, or was made \
             by an older version)",
            dir.display(),
            crate::io::run_folder::RESUME_FILE
        );
        let state = TrainingState::new(checkpoint::read_tensors(&state_path)?);
        let completed = state.completed_epochs()?;
        // A run stopped within its first epoch has no metrics yet.
        let records = if completed == 0 && !folder.metrics_path().exists() {
            Vec::new()
        } else {
            folder.read_metrics()?
        };
        let history = History::resumed(records, completed)?;
        Ok(Self {
            folder,
            config,
            history,
            state,
        })
    }

    /// The plan that continues the run on `device` with its own settings and data, up to
    /// `changes.epochs` when given. A run with nothing left to train is refused here, before
    /// anything in its folder changes.
    pub fn plan(self, changes: ResumeChanges, device: Device) -> Result<RunPlan> {
        let mut options = self.config.options.clone();
        if let Some(epochs) = changes.epochs {
            options.epochs = epochs;
        }
        if changes.checkpoint_every_steps.is_some() {
            options.checkpoint_every_steps = changes.checkpoint_every_steps;
        }
        let done = self.state.completed_epochs()?;
        ensure!(
            done < options.epochs.count(),
            "--resume {}: the run has already completed {done} of {} epochs; pass --epochs with \
             a larger total to train further",
            self.folder.path().display(),
            options.epochs
        );
        Ok(RunPlan {
            command: self.config.command,
            recipe: self.config.recipe,
            data: self.config.data.spec(),
            options,
            out: Some(self.folder.path().to_owned()),
            overwrite: true,
            device,
            tensorboard: true,
            start: Start::Resume(Box::new(self)),
        })
    }
}

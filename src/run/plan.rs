//! What a training run is told: a [`RunPlan`], built by the command line from its flags, or
//! from an interrupted run's folder ([`Resumable`]).

use crate::data::dataset::DataSpec;
use crate::io::checkpoint;
use crate::io::{RunCommand, RunConfig, RunFolder};
use crate::nn::Architecture;
use crate::train::{Epochs, History, TrainOptions, TrainingState};
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
    pub start: Start,
    pub data: DataSpec,
    pub options: TrainOptions,
    /// The run folder [default: runs/<UTC timestamp>].
    pub out: Option<PathBuf>,
    /// Replace a run already in `out`.
    pub overwrite: bool,
    pub device: Device,
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
            state_path.is_file(),
            "--resume {}: no {} (the run never completed an epoch, or was made by an older \
             version)",
            dir.display(),
            crate::io::run_folder::RESUME_FILE
        );
        let state = TrainingState::new(checkpoint::read_tensors(&state_path)?);
        let history = History::resumed(folder.read_metrics()?, state.completed_epochs()?)?;
        Ok(Self {
            folder,
            config,
            history,
            state,
        })
    }

    /// The plan that continues the run on `device` with its own settings and data, up to
    /// `epochs` when given.
    pub fn plan(self, epochs: Option<Epochs>, device: Device) -> RunPlan {
        let mut options = self.config.options.clone();
        if let Some(epochs) = epochs {
            options.epochs = epochs;
        }
        RunPlan {
            command: self.config.command,
            data: self.config.data.spec(),
            options,
            out: Some(self.folder.path().to_owned()),
            overwrite: true,
            device,
            start: Start::Resume(Box::new(self)),
        }
    }
}

//! The run folder as the training loop's [`EpochSink`]: after each epoch, `model.ot` (when the
//! epoch is the one to deliver so far), `best.ot` (when a run that delivers its last epoch has a
//! new validation leader), `metrics.jsonl`, then `resume.ot`, each written atomically; and
//! `resume.ot` again whenever the loop saves its state within an epoch; and, unless
//! `--no-tensorboard`, every step sample and epoch to the run's TensorBoard log. It remembers
//! what it wrote, so that a run that stops can say exactly what its folder holds.

use crate::interrupt::StopPoint;
use crate::io::run_folder::{BEST_FILE, CONFIG_FILE, METRICS_FILE, MODEL_FILE, RESUME_FILE};
use crate::io::tensorboard::RunLog;
use crate::io::{checkpoint, RunFolder};
use crate::model::{Classifier, NamedTensor};
use crate::train::{EpochSink, History, Saves, StepSample};
use anyhow::Result;

pub struct FolderSink<'a> {
    pub folder: &'a RunFolder,
    /// The epoch whose weights this process last wrote to model.ot.
    pub model_epoch: Option<usize>,
    /// The epoch whose weights this process last wrote to best.ot.
    pub best_epoch: Option<usize>,
    /// The epochs metrics.jsonl holds, as this process last wrote it.
    pub metrics_epochs: Option<usize>,
    /// Where the state this process last wrote to resume.ot was taken.
    pub state_at: Option<StopPoint>,
    /// The run's TensorBoard log, unless turned off.
    pub tensorboard: Option<RunLog>,
}

impl<'a> FolderSink<'a> {
    pub fn new(folder: &'a RunFolder, tensorboard: Option<RunLog>) -> Self {
        Self {
            folder,
            tensorboard,
            model_epoch: None,
            best_epoch: None,
            metrics_epochs: None,
            state_at: None,
        }
    }

    /// What the folder holds now, file by file: "config.json, model.ot (epoch 2), …".
    pub fn holdings(&self) -> String {
        let mut files = vec![CONFIG_FILE.to_owned()];
        let present = |name: &str| self.folder.path().join(name).is_file();
        let earlier = "(from before this process)";
        if present(MODEL_FILE) {
            files.push(match self.model_epoch {
                Some(epoch) => format!("{MODEL_FILE} (epoch {epoch})"),
                None => format!("{MODEL_FILE} {earlier}"),
            });
        }
        if present(BEST_FILE) {
            files.push(match self.best_epoch {
                Some(epoch) => format!("{BEST_FILE} (epoch {epoch}, the best validation scores)"),
                None => format!("{BEST_FILE} {earlier}"),
            });
        }
        if present(METRICS_FILE) {
            files.push(match self.metrics_epochs {
                Some(0) => format!("{METRICS_FILE} (the starting scores)"),
                Some(epochs) => format!("{METRICS_FILE} (epochs 1 to {epochs})"),
                None => format!("{METRICS_FILE} {earlier}"),
            });
        }
        if present(RESUME_FILE) {
            files.push(match self.state_at {
                Some(at) => format!("{RESUME_FILE} (the state after {at})"),
                None => format!("{RESUME_FILE} {earlier}"),
            });
        }
        files.join(", ")
    }
}

impl EpochSink for FolderSink<'_> {
    fn epoch_scored(&mut self, history: &History, saves: Saves, model: &Classifier) -> Result<()> {
        let epoch = history.last_epoch();
        if saves.delivered {
            checkpoint::save(model, &self.folder.model_path())?;
            self.model_epoch = Some(epoch);
        }
        if saves.leader {
            checkpoint::save(model, &self.folder.best_path())?;
            self.best_epoch = Some(epoch);
        }
        self.folder.write_metrics(history.records())?;
        self.metrics_epochs = Some(history.last_epoch());
        if let (Some(log), Some(record)) = (self.tensorboard.as_mut(), history.epoch(epoch)) {
            log.epoch(record)?;
        }
        Ok(())
    }

    fn step_sampled(&mut self, sample: &StepSample) -> Result<()> {
        match self.tensorboard.as_mut() {
            Some(log) => log.step(sample),
            None => Ok(()),
        }
    }

    fn state_captured(&mut self, at: StopPoint, state: &[NamedTensor]) -> Result<()> {
        checkpoint::save_tensors(state, &self.folder.resume_path())?;
        self.state_at = Some(at);
        Ok(())
    }
}

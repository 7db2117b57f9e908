//! The run folder as the training loop's [`EpochSink`]: after each epoch, `model.ot` (when the
//! epoch is the best so far), `metrics.jsonl`, then `resume.ot`, each written atomically.

use crate::io::{checkpoint, RunFolder};
use crate::model::{Classifier, NamedTensor};
use crate::train::{EpochSink, History};
use anyhow::Result;

pub struct FolderSink<'a> {
    pub folder: &'a RunFolder,
}

impl EpochSink for FolderSink<'_> {
    fn epoch_scored(&mut self, history: &History, is_best: bool, model: &Classifier) -> Result<()> {
        if is_best {
            checkpoint::save(model, &self.folder.model_path())?;
        }
        self.folder.write_metrics(history.records())
    }

    fn state_captured(&mut self, state: &[NamedTensor]) -> Result<()> {
        checkpoint::save_tensors(state, &self.folder.resume_path())
    }
}

//! The run folder: what a training run leaves behind.
//!
//! - `model.ot`: the weights (libtorch VarStore format), saved after every epoch;
//! - `metrics.jsonl`: one JSON line per epoch ([`EpochRecord`]);
//! - `config.json`: everything needed to understand and reproduce the run ([`RunConfig`]);
//! - `resume.ot`: the training state after the last completed epoch, for `train --resume`.
//!
//! Every file is replaced atomically, so a crash leaves the previous complete version.

use crate::fsutil;
use crate::model::Architecture;
use crate::train::{EpochRecord, FitOutcome, Scores, TrainOptions};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.ot";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CONFIG_FILE: &str = "config.json";
/// The training state after the last completed epoch, for `train --resume`.
pub const RESUME_FILE: &str = "resume.ot";

/// The contents of `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunConfig {
    /// `train` or `finetune`.
    pub command: String,
    pub status: RunStatus,
    pub architecture: Architecture,
    pub parameters: i64,
    /// The checkpoint a fine-tuning run started from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub parent: Option<PathBuf>,
    #[serde(flatten)]
    pub options: TrainOptions,
    pub optimizer: String,
    pub loss: String,
    pub device: String,
    pub threads: i32,
    pub data: DataDescription,
    pub mnist_cnn_version: String,
    pub tch_version: String,
    pub libtorch_version: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The starting checkpoint's scores on the run's evaluation data (fine-tuning).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub before: Option<Scores>,
    pub final_metrics: Option<FinalMetrics>,
}

/// Where the run's data came from and how it was divided.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataDescription {
    /// The MNIST folder, or the picture folder of `--images`.
    pub source: PathBuf,
    /// `mnist` or `images`.
    pub kind: String,
    pub train_examples: usize,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_examples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub validation_split: Option<f64>,
    /// The seed the validation split was drawn with (runs that share it hold out the same
    /// images).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub split_seed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub test_examples: Option<usize>,
    /// `--limit`: only the first N training images were used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub limit: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Completed,
    /// Stopped by Ctrl-C or SIGTERM; the files hold the last completed epoch.
    Interrupted,
    /// Stopped by an error (a loss that stopped being finite, a failed write).
    Failed,
}

/// The delivered model's figures (the chosen epoch's), repeated in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalMetrics {
    pub epochs_completed: usize,
    /// The epoch whose weights are in model.ot.
    pub chosen_epoch: usize,
    pub stopped_early: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub train_loss: Option<f64>,
    #[serde(flatten)]
    pub scores: Scores,
    pub train_seconds: f64,
}

impl FinalMetrics {
    pub fn from_outcome(outcome: &FitOutcome) -> Self {
        let chosen = outcome
            .records
            .iter()
            .find(|r| r.epoch == outcome.chosen_epoch)
            .expect("the chosen epoch was recorded");
        Self {
            epochs_completed: outcome.records.len(),
            chosen_epoch: outcome.chosen_epoch,
            stopped_early: outcome.stopped_early,
            train_loss: chosen.train_loss,
            scores: chosen.scores,
            train_seconds: outcome.records.iter().map(|r| r.seconds).sum(),
        }
    }
}

/// A run folder, created for a new run.
#[derive(Debug, Clone)]
pub struct RunDir {
    path: PathBuf,
}

impl RunDir {
    /// Creates the folder for a new run: `out` when given, else `runs/<UTC timestamp>`.
    /// An existing folder that already holds a run is refused unless `overwrite` is set.
    pub fn create(out: Option<&Path>, overwrite: bool) -> Result<Self> {
        let path = match out {
            Some(path) => path.to_owned(),
            None => fresh_default_path(),
        };
        if !overwrite {
            for file in [MODEL_FILE, METRICS_FILE, CONFIG_FILE] {
                if path.join(file).exists() {
                    bail!(
                        "--out {}: the folder already holds a run ({file}); choose another folder or pass --overwrite",
                        path.display()
                    );
                }
            }
        }
        fsutil::create_dir_all(&path).with_context(|| format!("--out {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model_path(&self) -> PathBuf {
        self.path.join(MODEL_FILE)
    }

    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        fsutil::write_atomically(&self.path.join(CONFIG_FILE), |w| {
            serde_json::to_writer_pretty(&mut *w, config)?;
            writeln!(w)?;
            Ok(())
        })
    }

    /// Rewrites `metrics.jsonl` with all records so far (atomically, so it is never cut short).
    pub fn write_metrics(&self, records: &[EpochRecord]) -> Result<()> {
        fsutil::write_atomically(&self.path.join(METRICS_FILE), |w| {
            for record in records {
                serde_json::to_writer(&mut *w, record)?;
                writeln!(w)?;
            }
            Ok(())
        })
    }
}

/// Reads the `config.json` of the run folder that holds `checkpoint`, when there is one.
pub fn config_beside(checkpoint: &Path) -> Option<RunConfig> {
    let path = checkpoint.parent()?.join(CONFIG_FILE);
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Reads `metrics.jsonl`, naming the line that does not parse.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{} line {}: not an epoch record", path.display(), i + 1))
        })
        .collect()
}

/// `runs/<YYYYmmdd-HHMMSS>` in UTC, with a suffix when that folder already exists.
fn fresh_default_path() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%d-%H%M%S").to_string();
    let base = Path::new("runs").join(&stamp);
    (1..)
        .map(|i| {
            if i == 1 {
                base.clone()
            } else {
                Path::new("runs").join(format!("{stamp}-{i}"))
            }
        })
        .find(|p| !p.exists())
        .expect("an unused name exists")
}

pub fn now_utc() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(epoch: usize) -> EpochRecord {
        EpochRecord {
            epoch,
            train_loss: Some(0.5),
            scores: Scores {
                test_loss: Some(0.4),
                test_accuracy: Some(0.9),
                ..Default::default()
            },
            seconds: 1.0,
            images_per_second: 100.0,
            learning_rate: 1e-3,
            learning_rate_end: 1e-3,
        }
    }

    #[test]
    fn metrics_round_trip_one_line_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(Some(dir.path()), false).unwrap();
        run.write_metrics(&[record(1), record(2)]).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back = read_metrics(&dir.path().join(METRICS_FILE)).unwrap();
        assert_eq!(back, vec![record(1), record(2)]);
    }

    #[test]
    fn damaged_metrics_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(METRICS_FILE);
        std::fs::write(&path, "{\"epoch\": 1}\n").unwrap();
        let err = format!("{:#}", read_metrics(&path).unwrap_err());
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn an_existing_run_is_not_overwritten_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunDir::create(Some(dir.path()), false).unwrap();
        run.write_metrics(&[record(1)]).unwrap();
        let err = RunDir::create(Some(dir.path()), false).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert!(RunDir::create(Some(dir.path()), true).is_ok());
    }
}

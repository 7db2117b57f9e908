//! The run folder: what a training run leaves behind, and the one place that reads and writes it.
//!
//! - `model.ot`: the weights the run delivers (libtorch's format), saved after every epoch
//!   that is the best so far;
//! - `metrics.jsonl`: one JSON line per epoch ([`EpochRecord`]);
//! - `config.json`: everything needed to understand and reproduce the run ([`RunConfig`]);
//! - `resume.ot`: the training state after the last completed epoch, for `train --resume`.
//!
//! Every file is replaced atomically, so a crash leaves the previous complete version.

use super::run_config::RunConfig;
use crate::fsutil;
use crate::train::EpochRecord;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.ot";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CONFIG_FILE: &str = "config.json";
/// The training state after the last completed epoch, for `train --resume`.
pub const RESUME_FILE: &str = "resume.ot";

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    path: PathBuf,
}

impl RunFolder {
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

    /// The run folder at `path`, to read.
    pub fn open(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn model_path(&self) -> PathBuf {
        self.path.join(MODEL_FILE)
    }

    pub fn resume_path(&self) -> PathBuf {
        self.path.join(RESUME_FILE)
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.path.join(METRICS_FILE)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join(CONFIG_FILE)
    }

    pub fn write_config(&self, config: &RunConfig) -> Result<()> {
        fsutil::write_atomically(&self.config_path(), |w| {
            serde_json::to_writer_pretty(&mut *w, config)?;
            writeln!(w)?;
            Ok(())
        })
    }

    /// The run's config.json; a folder without one is not a run.
    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {}: is {} a run folder (from train or finetune)?",
                path.display(),
                self.path.display()
            )
        })?;
        serde_json::from_str(&text)
            .with_context(|| format!("{}: not a run configuration", path.display()))
    }

    /// Rewrites `metrics.jsonl` with all records so far (atomically, so it is never cut short).
    pub fn write_metrics(&self, records: &[EpochRecord]) -> Result<()> {
        fsutil::write_atomically(&self.metrics_path(), |w| {
            for record in records {
                serde_json::to_writer(&mut *w, record)?;
                writeln!(w)?;
            }
            Ok(())
        })
    }

    pub fn read_metrics(&self) -> Result<Vec<EpochRecord>> {
        read_metrics(&self.metrics_path())
    }
}

/// The config of the run folder that holds `checkpoint`: none when the folder has no
/// `config.json`, an error naming the file and the field when it has one that does not parse.
pub fn config_beside(checkpoint: &Path) -> Result<Option<RunConfig>> {
    let folder = RunFolder::open(checkpoint.parent().unwrap_or(Path::new(".")));
    if !folder.config_path().is_file() {
        return Ok(None);
    }
    folder.read_config().map(Some)
}

/// Reads a `metrics.jsonl`, naming the line that does not parse.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::records::sample_record;

    fn record(epoch: usize) -> EpochRecord {
        sample_record(epoch, 1e-3, 1e-3)
    }

    #[test]
    fn metrics_round_trip_one_line_per_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let run = RunFolder::create(Some(dir.path()), false).unwrap();
        run.write_metrics(&[record(1), record(2)]).unwrap();
        let text = std::fs::read_to_string(dir.path().join(METRICS_FILE)).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert_eq!(run.read_metrics().unwrap(), vec![record(1), record(2)]);
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
        let run = RunFolder::create(Some(dir.path()), false).unwrap();
        run.write_metrics(&[record(1)]).unwrap();
        let err = RunFolder::create(Some(dir.path()), false).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert!(RunFolder::create(Some(dir.path()), true).is_ok());
    }

    #[test]
    fn a_config_beside_a_checkpoint_is_optional_but_must_parse() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("model.ot");
        assert!(config_beside(&checkpoint).unwrap().is_none());
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "{\"architecture\": \"tutorial\"}",
        )
        .unwrap();
        let err = format!("{:#}", config_beside(&checkpoint).unwrap_err());
        assert!(
            err.contains("config.json") && err.contains("command"),
            "{err}"
        );
    }
}

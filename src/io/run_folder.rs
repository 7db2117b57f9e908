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
use super::tensorboard;
use crate::fsutil;
use crate::train::EpochRecord;
use anyhow::{bail, ensure, Context, Result};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

pub const MODEL_FILE: &str = "model.ot";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CONFIG_FILE: &str = "config.json";
/// The training state after the last completed epoch, for `train --resume`.
pub const RESUME_FILE: &str = "resume.ot";
/// `train` with a validation split: the weights of the epoch with the best validation scores
/// (model.ot holds the last epoch's).
pub const BEST_FILE: &str = "best.ot";
pub const CURVES_FILE: &str = "curves.png";
pub const CONFUSION_FILE: &str = "confusion.png";
pub const MISTAKES_FILE: &str = "mistakes.png";
pub const FILTERS_FILE: &str = "filters.png";
pub const HTML_FILE: &str = "report.html";

/// Every file a run (or its report) writes into its folder: what `--overwrite` removes, with
/// the TensorBoard event files (`events.out.tfevents.*`). A file that runs start writing joins
/// this list. config.json comes last, so that a folder whose
/// clearing was cut short is still recognised as a run folder.
pub const RUN_FILES: [&str; 10] = [
    MODEL_FILE,
    BEST_FILE,
    METRICS_FILE,
    RESUME_FILE,
    CURVES_FILE,
    CONFUSION_FILE,
    MISTAKES_FILE,
    FILTERS_FILE,
    HTML_FILE,
    CONFIG_FILE,
];

/// Far more than any config.json the tool writes (about 2 KB).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// About 500 bytes an epoch: room for 100,000 epochs.
const MAX_METRICS_BYTES: u64 = 64 << 20;

/// How a run takes its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderUse {
    /// A new run: the folder must be new, empty, or hold no run.
    New,
    /// A new run replacing the run in the folder: that run's files are removed first.
    Overwrite,
    /// The run already in the folder goes on (`--resume`).
    Continue,
}

/// A run folder.
#[derive(Debug, Clone)]
pub struct RunFolder {
    path: PathBuf,
}

impl RunFolder {
    /// The folder for a run: `out` when given, else `runs/<UTC timestamp>`. A folder that holds
    /// other files than a run's is refused (`--out /`, `--out data/mnist`); one that holds a run
    /// is refused unless the run is overwritten (its files removed first) or continued.
    pub fn create(out: Option<&Path>, how: FolderUse) -> Result<Self> {
        let path = match out {
            Some(path) => path.to_owned(),
            None => fresh_default_path(),
        };
        let folder = Self { path };
        if how == FolderUse::Continue {
            return Ok(folder);
        }
        match folder.contents()? {
            Contents::Missing => fsutil::create_dir_all(&folder.path)
                .with_context(|| format!("--out {}", folder.path.display()))?,
            Contents::Empty => {}
            Contents::Run if how == FolderUse::Overwrite => folder.remove_run_files()?,
            Contents::Run => bail!(
                "--out {}: the folder already holds a run ({CONFIG_FILE}); choose another folder or pass --overwrite",
                folder.path.display()
            ),
            Contents::NotARun(why) => bail!(
                "--out {}: the folder's {CONFIG_FILE} is not a run's record ({why}); a run folder \
                 must be new, empty or a run folder, and --overwrite removes nothing from another",
                folder.path.display()
            ),
            Contents::Other(name) => bail!(
                "--out {}: the folder holds files that are not a run's ({name:?}); a run folder must be new, empty or a run folder",
                folder.path.display()
            ),
        }
        Ok(folder)
    }

    /// What is at the folder's path.
    fn contents(&self) -> Result<Contents> {
        let shown = self.path.display();
        let meta = match fs::metadata(&self.path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Contents::Missing),
            Err(e) if e.kind() == ErrorKind::NotADirectory => {
                bail!("--out {shown}: part of the path is a file, not a folder")
            }
            Err(e) => bail!("--out {shown}: {e}"),
        };
        ensure!(meta.is_dir(), "--out {shown}: a file, not a folder");
        let entries = fs::read_dir(&self.path).with_context(|| format!("--out {shown}"))?;
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("--out {shown}"))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        if names.is_empty() {
            return Ok(Contents::Empty);
        }
        if names.iter().any(|name| name == CONFIG_FILE) {
            // Only a config.json that reads as a run's record makes a run folder: another
            // program's config.json must never let --overwrite delete anything.
            return Ok(match self.read_config() {
                Ok(_) => Contents::Run,
                Err(err) => Contents::NotARun(format!("{err:#}")),
            });
        }
        let other = names.into_iter().find(|name| !is_run_file(name));
        Ok(other.map_or(Contents::Run, Contents::Other))
    }

    /// Removes the files of the run in the folder (and the temporary files of a write that was
    /// cut short), leaving anything else.
    fn remove_run_files(&self) -> Result<()> {
        let leftovers = fs::read_dir(&self.path)
            .with_context(|| format!("--out {}", self.path.display()))?
            .filter_map(|entry| entry.ok())
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| is_temporary_run_file(name) || is_event_file(name));
        let files = leftovers.chain(RUN_FILES.iter().map(|name| name.to_string()));
        for name in files.collect::<Vec<_>>() {
            let file = self.path.join(&name);
            match fs::symlink_metadata(&file) {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => bail!("--overwrite: cannot inspect {}: {e}", file.display()),
                Ok(meta) if meta.is_dir() && is_temporary_run_file(&name) => {
                    remove_temporary_folder(&file)?;
                    continue;
                }
                Ok(meta) => ensure!(
                    !meta.is_dir(),
                    "--overwrite: {} is a folder, not a run's file; remove it yourself",
                    file.display()
                ),
            }
            fs::remove_file(&file)
                .with_context(|| format!("--overwrite: cannot remove {}", file.display()))?;
        }
        Ok(())
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

    pub fn best_path(&self) -> PathBuf {
        self.path.join(BEST_FILE)
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

    /// The run's config.json, checked like flags; a folder without one is not a run.
    pub fn read_config(&self) -> Result<RunConfig> {
        let path = self.config_path();
        if !path.exists() {
            bail!(
                "{} has no {CONFIG_FILE}: is it a run folder (from train or finetune)?",
                self.path.display()
            );
        }
        read_config_file(&path)
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
    if !folder.config_path().exists() {
        return Ok(None);
    }
    folder.read_config().map(Some)
}

/// A run's record at `path` (a config.json, wherever it lies), checked like flags.
pub fn read_config_file(path: &Path) -> Result<RunConfig> {
    let text = fsutil::read_text_limited(path, MAX_CONFIG_BYTES, "run configuration")?;
    RunConfig::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Reads a `metrics.jsonl`, naming the line that does not parse.
pub fn read_metrics(path: &Path) -> Result<Vec<EpochRecord>> {
    let text = fsutil::read_text_limited(path, MAX_METRICS_BYTES, "metrics file")?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            parse_record(line)
                .with_context(|| format!("{} line {}: not an epoch record", path.display(), i + 1))
        })
        .collect()
}

/// What a folder for a new run holds.
enum Contents {
    Missing,
    Empty,
    /// A run's files (config.json, or only files of [`RUN_FILES`]).
    Run,
    /// A file that is not a run's, named.
    Other(String),
    /// A config.json that does not read as a run's record, and why.
    NotARun(String),
}

fn is_run_file(name: &str) -> bool {
    RUN_FILES.contains(&name) || is_temporary_run_file(name) || is_event_file(name)
}

/// A TensorBoard event file of the run (any number of them), or the temporary file of one
/// being rewritten.
fn is_event_file(name: &str) -> bool {
    name.starts_with(tensorboard::EVENTS_PREFIX) || name.starts_with(tensorboard::TEMP_PREFIX)
}

/// Removes the temporary folder of a save that was cut short (`.model.ot.XXXXXX.tmp/`, see
/// [`fsutil::save_atomically`]): only a run file inside it, then the folder; anything else in
/// it is left, and the removal fails naming it.
fn remove_temporary_folder(dir: &Path) -> Result<()> {
    let entries = fs::read_dir(dir).with_context(|| format!("--overwrite: {}", dir.display()))?;
    for entry in entries.filter_map(|entry| entry.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        ensure!(
            is_file && RUN_FILES.contains(&name.as_str()),
            "--overwrite: {} holds {name:?}, which no save of the tool leaves; remove it yourself",
            dir.display()
        );
        fs::remove_file(entry.path())
            .with_context(|| format!("--overwrite: cannot remove {}", entry.path().display()))?;
    }
    fs::remove_dir(dir).with_context(|| format!("--overwrite: cannot remove {}", dir.display()))
}

/// A temporary file of [`fsutil`]'s atomic writes of a run file (`.metrics.jsonl.XXXXXX.tmp`),
/// or the temporary folder of a checkpoint's save (`.model.ot.XXXXXX.tmp`).
fn is_temporary_run_file(name: &str) -> bool {
    RUN_FILES
        .iter()
        .any(|file| name.starts_with(&format!(".{file}.")) && name.contains(".tmp"))
}

fn parse_record(line: &str) -> Result<EpochRecord> {
    let record: EpochRecord = serde_json::from_str(line)?;
    record.validate()?;
    Ok(record)
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

/// The checkpoint a `--model` or `--from` path names: the path itself, or, for a run folder, its
/// `model.ot` (what Keras users expect of `load_model(folder)`). A folder without one is an
/// error naming it, so that a mistyped run folder is not reported as an unreadable file.
pub fn model_file(path: &Path) -> Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_owned());
    }
    let model = path.join(MODEL_FILE);
    ensure!(
        model.exists(),
        "{} is a folder without a {MODEL_FILE} (a run folder holds its model there; pass a \
         checkpoint file, or the folder of a run that finished an epoch)",
        path.display()
    );
    Ok(model)
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
        let run = RunFolder::create(Some(dir.path()), FolderUse::New).unwrap();
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
        let run = RunFolder::create(Some(dir.path()), FolderUse::New).unwrap();
        run.write_metrics(&[record(1)]).unwrap();
        let err = RunFolder::create(Some(dir.path()), FolderUse::New).unwrap_err();
        assert!(err.to_string().contains("--overwrite"), "{err}");
        assert!(RunFolder::create(Some(dir.path()), FolderUse::Overwrite).is_ok());
    }

    /// A run's record, as a GPU run wrote it.
    const A_RUNS_CONFIG: &str =
        include_str!("../../tests/data/cuda-written/tutorial-cuda/config.json");

    #[test]
    fn overwriting_removes_the_old_runs_files_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for file in RUN_FILES
            .iter()
            .chain(&[".metrics.jsonl.abc123.tmp", "notes.txt"])
        {
            fs::write(dir.path().join(file), b"old").unwrap();
        }
        // A checkpoint's save cut short leaves its temporary folder.
        let cut_short = dir.path().join(".model.ot.def456.tmp");
        fs::create_dir(&cut_short).unwrap();
        fs::write(cut_short.join(MODEL_FILE), b"half").unwrap();
        fs::write(dir.path().join(CONFIG_FILE), A_RUNS_CONFIG).unwrap();
        RunFolder::create(Some(dir.path()), FolderUse::Overwrite).unwrap();
        let left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["notes.txt"]);
    }

    /// A temporary folder that holds anything a save never leaves is not removed: the error
    /// names it, and the run's files stay.
    #[test]
    fn a_temporary_folder_holding_something_else_is_left_and_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CONFIG_FILE), A_RUNS_CONFIG).unwrap();
        let odd = dir.path().join(".model.ot.abc123.tmp");
        fs::create_dir(&odd).unwrap();
        fs::write(odd.join("notes.txt"), b"mine").unwrap();
        let err = RunFolder::create(Some(dir.path()), FolderUse::Overwrite).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("notes.txt") && err.contains("remove it yourself"),
            "{err}"
        );
        assert!(odd.join("notes.txt").is_file());
    }

    /// Another program's folder with a config.json of its own is no run folder: nothing in it
    /// is overwritten or removed, with or without --overwrite.
    #[test]
    fn a_config_json_that_is_not_a_runs_record_makes_no_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        let own = [
            (CONFIG_FILE, "{\"name\":\"app\"}"),
            (HTML_FILE, "<p>mine</p>"),
            (MODEL_FILE, "weights"),
        ];
        for (name, text) in own {
            fs::write(dir.path().join(name), text).unwrap();
        }
        for how in [FolderUse::New, FolderUse::Overwrite] {
            let err = RunFolder::create(Some(dir.path()), how).unwrap_err();
            let err = err.to_string();
            assert!(err.contains("is not a run's record"), "{err}");
            assert!(err.contains("removes nothing"), "{err}");
        }
        for (name, text) in own {
            assert_eq!(fs::read_to_string(dir.path().join(name)).unwrap(), text);
        }
    }

    #[test]
    fn a_folder_with_other_files_or_a_file_is_not_a_run_folder() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("train-images-idx3-ubyte"), b"data").unwrap();
        for how in [FolderUse::New, FolderUse::Overwrite] {
            let err = RunFolder::create(Some(dir.path()), how).unwrap_err();
            assert!(err.to_string().contains("not a run's"), "{err}");
        }
        assert!(dir.path().join("train-images-idx3-ubyte").exists());
        let file = dir.path().join("train-images-idx3-ubyte/");
        let err = RunFolder::create(Some(&file), FolderUse::New).unwrap_err();
        assert!(err.to_string().contains("not a folder"), "{err}");
        let fresh = dir.path().join("a/b");
        assert!(RunFolder::create(Some(&fresh), FolderUse::New).is_ok());
        assert!(fresh.is_dir());
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

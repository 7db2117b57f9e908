//! What a training run logs for TensorBoard (`RUN_DIR/events.out.tfevents.*`), under which
//! tags and at which steps:
//!
//! - `step/train_loss`, `step/learning_rate`, `step/images_per_second` and `step/grad_norm`
//!   (when clipping) at the run's step, every [`crate::train::SAMPLE_EVERY`] steps and at the end
//!   of each epoch. The loss and the norm are the epoch's running means (the progress bar's),
//!   which a resumed run reproduces exactly.
//! - `epoch/KEY` for every number of the epoch's metrics.jsonl line (`train_loss`,
//!   `validation_loss`, `validation_accuracy`, `test_loss`, `test_accuracy`, `learning_rate`,
//!   `learning_rate_end`, `grad_norm`, `seconds`, `images_per_second`) at the epoch, as Keras
//!   logs them, so that runs with different batch sizes line up; epoch 0 is a fine-tuning
//!   run's starting checkpoint (its scores only).
//! - `final/test_accuracy`, `final/test_loss`, `final/validation_accuracy`,
//!   `final/validation_loss`, `final/precision_macro`, `final/recall_macro`,
//!   `final/f1_macro`, and the pictures `final/confusion_matrix` and `final/mistakes`, at the
//!   last epoch, for the delivered model.
//! - The HParams plugin's experiment and session start (at the start) and session end, with
//!   the final test and validation scores as its metrics ([`METRICS`]).
//!
//! A resumed run drops what was logged after the state it resumes from (a run stopped by a
//! signal saves the step it stopped at; a killed one may have logged further) and keeps the
//! rest: it rewrites the kept events into one new file, which begins with TensorBoard's restart
//! marker so that a TensorBoard already showing the run forgets the dropped steps, and removes
//! the old files. No step is ever logged twice.

use super::hparams_proto::{
    h_params_plugin_data, DataType, Experiment, HParamInfo, HParamsPluginData, MetricInfo,
    MetricName, SessionEndInfo, SessionStartInfo, Status,
};
use super::proto::{event, session_log, Event, SessionLog};
use super::read::read_events;
use super::{EventWriter, EVENTS_PREFIX};
use crate::eval::metrics::MacroAverages;
use crate::io::figure::Figure;
use crate::io::RunConfig;
use crate::train::{EpochRecord, FinalMetrics, RunPosition, StepSample};
use anyhow::{Context, Result};
use prost::Message;
use prost_types::value::Kind as ValueKind;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use tracing::warn;

/// The HParams plugin's name and tags, as TensorBoard's `plugins/hparams/metadata.py` has them.
const HPARAMS_PLUGIN: &str = "hparams";
const HPARAMS_PREFIX: &str = "_hparams_/";
const EXPERIMENT_TAG: &str = "_hparams_/experiment";
const SESSION_START_TAG: &str = "_hparams_/session_start_info";
const SESSION_END_TAG: &str = "_hparams_/session_end_info";
const PLUGIN_DATA_VERSION: i32 = 0;

/// Tags logged at the run's step; every other tag is logged at an epoch.
const STEP_PREFIX: &str = "step/";
/// The metrics of the HParams table: the delivered model's test scores (MNIST's, also for a
/// fine-tune on pictures when MNIST is at hand) and its validation scores (which a picture
/// fine-tune always has).
const METRICS: [&str; 4] = [
    "final/test_accuracy",
    "final/test_loss",
    "final/validation_accuracy",
    "final/validation_loss",
];

/// What the end of a run logs.
pub struct FinalFigures<'a> {
    /// The epoch the figures are logged at: the last one trained.
    pub epoch: usize,
    pub metrics: &'a FinalMetrics,
    /// The report's macro averages, when the report was written.
    pub macro_avg: Option<&'a MacroAverages>,
    /// The report's figures; those with a tag are logged.
    pub figures: &'a [Figure],
}

/// A run's TensorBoard log, open for appending.
pub struct RunLog {
    writer: EventWriter,
}

impl RunLog {
    /// Starts the log of the run in `dir` described by `config`: a new file, or for a resumed
    /// run (saved at `resumed`) a new file holding what the old ones logged up to there.
    pub fn start(dir: &Path, config: &RunConfig, resumed: Option<RunPosition>) -> Result<Self> {
        let old_files = event_files(dir)?;
        let mut events = Vec::new();
        if let Some(position) = resumed {
            events.push(restart_marker());
            events.extend(kept_events(&old_files, position, MAX_KEPT_BYTES)?);
        }
        let writer = EventWriter::create(dir, &events)?;
        for old in old_files {
            std::fs::remove_file(&old)
                .with_context(|| format!("cannot remove {} (now rewritten)", old.display()))?;
        }
        let mut log = Self { writer };
        log.hparams(config)?;
        Ok(log)
    }

    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    /// A sample of the running figures at one step.
    pub fn step(&mut self, sample: &StepSample) -> Result<()> {
        let step = sample.step as i64;
        let w = &mut self.writer;
        w.scalar("step/train_loss", step, sample.train_loss as f32)?;
        w.scalar("step/learning_rate", step, sample.learning_rate as f32)?;
        w.scalar(
            "step/images_per_second",
            step,
            sample.images_per_second as f32,
        )?;
        if let Some(norm) = sample.grad_norm {
            w.scalar("step/grad_norm", step, norm as f32)?;
        }
        Ok(())
    }

    /// An epoch's line of metrics.jsonl.
    pub fn epoch(&mut self, record: &EpochRecord) -> Result<()> {
        let scores = &record.scores;
        let trained = record.epoch > 0; // epoch 0 (a starting checkpoint) trained nothing
        let scalars = [
            ("epoch/train_loss", record.train_loss),
            ("epoch/validation_loss", scores.validation_loss),
            ("epoch/validation_accuracy", scores.validation_accuracy),
            ("epoch/test_loss", scores.test_loss),
            ("epoch/test_accuracy", scores.test_accuracy),
            (
                "epoch/learning_rate",
                trained.then_some(record.learning_rate),
            ),
            (
                "epoch/learning_rate_end",
                trained.then_some(record.learning_rate_end),
            ),
            ("epoch/grad_norm", record.grad_norm),
            ("epoch/seconds", trained.then_some(record.seconds)),
            (
                "epoch/images_per_second",
                trained.then_some(record.images_per_second),
            ),
        ];
        self.scalars(record.epoch, &scalars)
    }

    /// The delivered model's figures and pictures, and the end of the HParams session.
    pub fn finish(&mut self, figures: &FinalFigures) -> Result<()> {
        let scores = &figures.metrics.scores;
        let averages = figures.macro_avg;
        let scalars = [
            ("final/test_accuracy", scores.test_accuracy),
            ("final/test_loss", scores.test_loss),
            ("final/validation_accuracy", scores.validation_accuracy),
            ("final/validation_loss", scores.validation_loss),
            ("final/precision_macro", averages.map(|a| a.precision)),
            ("final/recall_macro", averages.map(|a| a.recall)),
            ("final/f1_macro", averages.map(|a| a.f1)),
        ];
        self.scalars(figures.epoch, &scalars)?;
        for figure in figures.figures {
            let Some(tag) = figure.tag else { continue };
            let size = png_size(&figure.png).context("not a PNG picture")?;
            self.writer
                .image(tag, figures.epoch as i64, &figure.png, size)?;
        }
        self.session_end(Status::Success)
    }

    /// Ends the HParams session of a run that failed.
    pub fn failed(&mut self) -> Result<()> {
        self.session_end(Status::Failure)
    }

    fn scalars(&mut self, epoch: usize, scalars: &[(&str, Option<f64>)]) -> Result<()> {
        for (tag, value) in scalars {
            if let Some(value) = value {
                self.writer.scalar(tag, epoch as i64, *value as f32)?;
            }
        }
        Ok(())
    }

    /// The experiment (which hyper-parameters and metrics the table shows) and this session's
    /// values, as `torch.utils.tensorboard`'s `add_hparams` writes them.
    fn hparams(&mut self, config: &RunConfig) -> Result<()> {
        let values = hparam_values(config);
        let experiment = Experiment {
            hparam_infos: values
                .iter()
                .map(|(name, value)| HParamInfo {
                    name: (*name).to_owned(),
                    r#type: data_type(value) as i32,
                    ..Default::default()
                })
                .collect(),
            metric_infos: METRICS
                .iter()
                .map(|tag| MetricInfo {
                    name: Some(MetricName {
                        group: String::new(),
                        tag: (*tag).to_owned(),
                    }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let start = SessionStartInfo {
            hparams: values
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect::<HashMap<_, _>>(),
            start_time_secs: super::wall_time(),
            ..Default::default()
        };
        self.plugin(
            EXPERIMENT_TAG,
            h_params_plugin_data::Data::Experiment(experiment),
        )?;
        self.plugin(
            SESSION_START_TAG,
            h_params_plugin_data::Data::SessionStartInfo(start),
        )
    }

    fn session_end(&mut self, status: Status) -> Result<()> {
        let end = SessionEndInfo {
            status: status as i32,
            end_time_secs: super::wall_time(),
        };
        self.plugin(
            SESSION_END_TAG,
            h_params_plugin_data::Data::SessionEndInfo(end),
        )
    }

    fn plugin(&mut self, tag: &str, data: h_params_plugin_data::Data) -> Result<()> {
        let content = HParamsPluginData {
            version: PLUGIN_DATA_VERSION,
            data: Some(data),
        };
        self.writer
            .plugin_data(tag, HPARAMS_PLUGIN, content.encode_to_vec())
    }
}

/// The run's hyper-parameters for the HParams table, by name.
fn hparam_values(config: &RunConfig) -> Vec<(&'static str, prost_types::Value)> {
    let text = |s: String| ValueKind::StringValue(s);
    let number = ValueKind::NumberValue;
    let options = &config.options;
    let recipe = config.recipe.map_or("none".to_owned(), |r| r.to_string());
    let kinds = [
        ("command", text(config.command.to_string())),
        ("recipe", text(recipe)),
        ("architecture", text(config.architecture.to_string())),
        ("optimizer", text(options.optimizer.to_string())),
        ("learning_rate", number(options.learning_rate)),
        ("schedule", text(options.schedule.to_string())),
        ("batch_size", number(options.batch_size as f64)),
        ("epochs", number(options.epochs.0)),
        ("augment", ValueKind::BoolValue(options.augment)),
        ("label_smoothing", number(options.label_smoothing)),
        ("weight_decay", number(options.weight_decay.unwrap_or(0.0))),
        ("seed", number(options.seed as f64)),
    ];
    kinds
        .into_iter()
        .map(|(name, kind)| (name, prost_types::Value { kind: Some(kind) }))
        .collect()
}

fn data_type(value: &prost_types::Value) -> DataType {
    match value.kind {
        Some(ValueKind::StringValue(_)) => DataType::String,
        Some(ValueKind::BoolValue(_)) => DataType::Bool,
        _ => DataType::Float64,
    }
}

/// The most event files a resumed run reads (a run writes one, and one more per resume, which
/// replaces the others).
pub const MAX_EVENT_FILES: usize = 64;
/// The most bytes of events a resumed run keeps from the files before it: the rewritten file
/// stays well within what the next resume reads.
pub const MAX_KEPT_BYTES: usize = 64 << 20;

/// The event files in `dir`, in name order (the order TensorBoard reads them in): regular
/// files only; a folder, a link or a device with such a name is skipped with a warning, and
/// left where it is.
fn event_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        if !entry
            .file_name()
            .to_string_lossy()
            .starts_with(EVENTS_PREFIX)
        {
            continue;
        }
        // The entry itself, not what a link points to.
        match entry.file_type() {
            Ok(kind) if kind.is_file() => files.push(entry.path()),
            _ => warn!(
                "{}: not a regular file (a folder, a link or a device), so not a TensorBoard \
                 log of this run; skipped and left in place",
                entry.path().display()
            ),
        }
    }
    files.sort();
    if files.len() > MAX_EVENT_FILES {
        warn!(
            "{}: {} TensorBoard event files; the run's log is read from the last {MAX_EVENT_FILES}",
            dir.display(),
            files.len()
        );
        files.drain(..files.len() - MAX_EVENT_FILES);
    }
    Ok(files)
}

/// TensorBoard's restart marker (`SessionLog.START`) at step 0: a reader that already holds
/// events of this run discards them and reads the rewritten file afresh.
fn restart_marker() -> Event {
    Event {
        wall_time: super::wall_time(),
        step: 0,
        what: Some(event::What::SessionLog(SessionLog {
            status: session_log::SessionStatus::Start as i32,
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// The events of `files` that a run resumed at `position` keeps: each scalar and picture up to
/// the position (each (tag, step) once), and nothing of the HParams plugin, which the resumed
/// run writes again; at most `budget` bytes of them (encoded), the earliest first.
fn kept_events(files: &[PathBuf], position: RunPosition, budget: usize) -> Result<Vec<Event>> {
    let mut seen = BTreeSet::new();
    let mut kept = Vec::new();
    let mut kept_bytes = 0usize;
    let mut full = false;
    for file in files {
        let mut read = 0usize;
        let damage = read_events(file, |event| {
            read += 1;
            let Some(tag) = summary_tag(&event) else {
                return true; // the file version and restart markers: the new file has its own
            };
            let bound = match tag.starts_with(STEP_PREFIX) {
                true => position.steps_done,
                false => position.epochs_completed,
            };
            let logged_before = usize::try_from(event.step).is_ok_and(|step| step <= bound);
            if tag.starts_with(HPARAMS_PREFIX)
                || !logged_before
                || !seen.insert((tag.to_owned(), event.step))
            {
                return true;
            }
            kept_bytes += event.encoded_len();
            if kept_bytes > budget {
                full = true;
                return false;
            }
            kept.push(event);
            true
        })?;
        if let Some(damage) = damage {
            warn!(
                "{}: {damage}; keeping what came before it ({read} events read)",
                file.display()
            );
        }
        if full {
            warn!(
                "{}: the TensorBoard log kept so far reached {budget} bytes; the rest of the \
                 earlier log is dropped",
                file.display()
            );
            break;
        }
    }
    Ok(kept)
}

/// The tag of an event holding one summary value.
fn summary_tag(event: &Event) -> Option<&str> {
    match &event.what {
        Some(event::What::Summary(summary)) if summary.value.len() == 1 => {
            Some(&summary.value[0].tag)
        }
        _ => None,
    }
}

/// A PNG's width and height, from its header.
fn png_size(png: &[u8]) -> Option<(u32, u32)> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    if png.get(..8)? != SIGNATURE || png.get(12..16)? != b"IHDR" {
        return None;
    }
    let width = u32::from_be_bytes(png.get(16..20)?.try_into().ok()?);
    let height = u32::from_be_bytes(png.get(20..24)?.try_into().ok()?);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags_and_steps(events: &[Event]) -> Vec<(String, i64)> {
        events
            .iter()
            .map(|e| (summary_tag(e).unwrap().to_owned(), e.step))
            .collect()
    }

    #[test]
    fn a_resumed_run_keeps_each_tag_up_to_its_position_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = EventWriter::create(dir.path(), &[]).unwrap();
        first
            .plugin_data(EXPERIMENT_TAG, HPARAMS_PLUGIN, vec![])
            .unwrap();
        for step in [10, 20, 30] {
            first.scalar("step/train_loss", step, 1.0).unwrap();
        }
        for epoch in [1, 2] {
            first.scalar("epoch/test_accuracy", epoch, 0.9).unwrap();
        }
        // A second file repeating a step (a rewrite cut short before the old file went).
        let mut second = EventWriter::create(dir.path(), &[]).unwrap();
        second.scalar("step/train_loss", 20, 2.0).unwrap();
        // ... whose last record a kill cut short.
        second.scalar("step/train_loss", 15, 2.0).unwrap();
        let bytes = std::fs::read(second.path()).unwrap();
        std::fs::write(second.path(), &bytes[..bytes.len() - 3]).unwrap();
        let position = RunPosition {
            epochs_completed: 1,
            steps_done: 20,
        };
        let files = event_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let kept = kept_events(&files, position, MAX_KEPT_BYTES).unwrap();
        let expected = [
            ("step/train_loss", 10),
            ("step/train_loss", 20),
            ("epoch/test_accuracy", 1),
        ]
        .map(|(tag, step)| (tag.to_owned(), step));
        assert_eq!(tags_and_steps(&kept), expected);
        // Within a budget of two events' bytes, the earliest two are kept.
        let one = kept[0].encoded_len();
        let kept = kept_events(&files, position, 2 * one + 1).unwrap();
        assert_eq!(tags_and_steps(&kept), expected[..2]);
    }

    /// A folder, a dangling link and a link to a device named like event files are skipped;
    /// the run's own files are read.
    #[test]
    fn only_regular_files_are_event_files() {
        let dir = tempfile::tempdir().unwrap();
        let own = EventWriter::create(dir.path(), &[]).unwrap();
        std::fs::create_dir(dir.path().join("events.out.tfevents.folder")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("nowhere"),
            dir.path().join("events.out.tfevents.dangling"),
        )
        .unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("events.out.tfevents.zero"))
            .unwrap();
        assert_eq!(event_files(dir.path()).unwrap(), [own.path().to_owned()]);
    }

    #[test]
    fn png_sizes_come_from_the_header_and_nothing_else_passes() {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend(720u32.to_be_bytes());
        png.extend(700u32.to_be_bytes());
        assert_eq!(png_size(&png), Some((720, 700)));
        assert_eq!(png_size(&png[..20]), None);
        assert_eq!(png_size(b"GIF89a"), None);
    }
}

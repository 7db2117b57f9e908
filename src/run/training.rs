//! [`execute`]: one training run from start to end. It builds the model, creates the run
//! folder, records the configuration, trains (saving every epoch through [`FolderSink`]), marks
//! how the run ended, and hands back what the command line prints and reports.

use super::plan::{Resumable, RunPlan, Start};
use super::sink::FolderSink;
use crate::data::dataset::{DataKind, Dataset};
use crate::data::Split;
use crate::device::DeviceName;
use crate::eval::metrics::MacroAverages;
use crate::eval::{EvalSets, Scores};
use crate::interrupt::{self, Interrupted};
use crate::io::figure::Figure;
use crate::io::run_config::now_utc;
use crate::io::run_folder::{FolderUse, RESUME_FILE};
use crate::io::tensorboard::{FinalFigures, RunLog};
use crate::io::{checkpoint, RunCommand, RunConfig, RunFolder, RunStatus};
use crate::model::Classifier;
use crate::nn::Architecture;
use crate::runtime;
use crate::train::{FinalMetrics, Fit, History, Recipe, TrainOptions, TrainingState};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use tch::Device;
use tracing::{info, warn};

/// A finished run: its folder and configuration, and the model and test split still in memory
/// (for the report).
pub struct CompletedRun {
    pub folder: RunFolder,
    pub config: RunConfig,
    pub final_metrics: FinalMetrics,
    /// Holds the delivered weights, those of model.ot.
    pub model: Classifier,
    pub test: Option<Split>,
}

/// What a front end does once a run is complete and saved (writes its report); the figures it
/// hands back end the run's TensorBoard log.
pub trait AfterRun {
    fn after(&self, run: &CompletedRun) -> Option<RunFigures>;
}

/// Nothing after the run: its log ends with the final scores alone.
pub struct NothingAfter;

impl AfterRun for NothingAfter {
    fn after(&self, _: &CompletedRun) -> Option<RunFigures> {
        None
    }
}

/// The figures drawn after a run, and the macro averages computed for them.
pub struct RunFigures {
    pub figures: Vec<Figure>,
    pub macro_avg: MacroAverages,
}

/// What the run starts with, once the plan's start is resolved.
struct Beginning {
    model: Classifier,
    /// The checkpoint a fine-tuning run started from.
    parent: Option<PathBuf>,
    /// The run to continue, when resuming.
    resumed: Option<Resumable>,
}

/// A run set up to train: its model, its record and history so far, the state it resumes
/// from, and its TensorBoard log.
struct Started {
    model: Classifier,
    config: RunConfig,
    history: History,
    state: Option<TrainingState>,
    tensorboard: Option<RunLog>,
}

/// Runs a training session end to end, then `after` (the report), whose figures end the
/// run's TensorBoard log.
pub fn execute(mut plan: RunPlan, after: &dyn AfterRun) -> Result<CompletedRun> {
    // Listening before config.json says "running": a signal from now on stops the run after a
    // step, with its state saved and its status set.
    interrupt::install()?;
    // Flags and config files both arrive here: one check of the settings together.
    plan.options.validate()?;
    if plan.options.deterministic {
        runtime::make_deterministic(plan.device)?;
    }
    let data = Dataset::load(&plan.data)?.to_device(plan.device);
    // The start is taken out of the plan (a resumed run's state moves into the run); the rest
    // of the plan is read below.
    let from = std::mem::replace(&mut plan.start, Start::Fresh(Architecture::Tutorial));
    let beginning = begin(from, plan.options.seed, plan.device)?;
    let how = if beginning.resumed.is_some() {
        FolderUse::Continue
    } else if plan.overwrite {
        FolderUse::Overwrite
    } else {
        FolderUse::New
    };
    let folder = RunFolder::create(plan.out.as_deref(), how)?;
    let started = start(&plan, beginning, &data, &folder)?;
    let completed = train(&plan, started, data, folder)?;
    Ok(completed.finish(after))
}

/// Sets the run up: the model in its precision, config.json's record (the run's own, when it
/// resumes; a fine-tune's starting scores first), the TensorBoard log; config.json says
/// "running" from here.
fn start(
    plan: &RunPlan,
    beginning: Beginning,
    data: &Dataset,
    folder: &RunFolder,
) -> Result<Started> {
    let mut model = beginning.model;
    // A resumed run's recorded precision, or the flag's: checked against this device again.
    match beginning.resumed.is_some() {
        true => plan.options.precision.check_continuing(plan.device)?,
        false => plan.options.precision.check(plan.device)?,
    }
    model.set_precision(plan.options.precision);
    let mut config = new_config(plan.command, &plan.options, plan.device, &model, data);
    config.parent = beginning.parent.clone();
    config.recipe = plan.recipe;
    let (history, state) = match beginning.resumed {
        Some(resumed) => {
            // The run's own history: its start time, its starting scores, its epochs so far.
            config.started_at = resumed.config.started_at;
            config.before = resumed.config.before;
            (resumed.history, Some(resumed.state))
        }
        None => {
            let parent = beginning.parent.as_deref();
            let sets = EvalSets {
                validation: data.validation.as_ref(),
                test: data.test.as_ref(),
            };
            (
                score_start(&model, parent, &sets, folder, &mut config)?,
                None,
            )
        }
    };
    let tensorboard = match plan.tensorboard {
        true => Some(start_tensorboard(
            folder,
            &config,
            &history,
            state.as_ref(),
            data,
        )?),
        false => None,
    };
    folder.write_config(&config)?;
    log_start(&config, folder);
    Ok(Started {
        model,
        config,
        history,
        state,
        tensorboard,
    })
}

/// Trains the started run, saving every epoch; records how it ended. Every way out that the
/// process can catch (an error, a signal, a panic) is recorded in config.json.
fn train(plan: &RunPlan, started: Started, data: Dataset, folder: RunFolder) -> Result<Finished> {
    let Started {
        model,
        mut config,
        mut history,
        state,
        tensorboard,
    } = started;
    let resuming = state.is_some();
    let fit = Fit {
        model: &model,
        train: &data.train,
        eval: EvalSets {
            validation: data.validation.as_ref(),
            test: data.test.as_ref(),
        },
        options: &plan.options,
        resume: state.as_ref(),
    };
    let mut sink = FolderSink::new(&folder, tensorboard);
    if !resuming && config.before.is_some() {
        sink.metrics_epochs = Some(0); // the starting checkpoint's scores
    }
    let outcome = match catching_panics(|| fit.run(&mut history, &mut sink)) {
        Ok(outcome) => outcome,
        Err(err) => return Err(mark_stopped(err, &mut sink, &mut config)),
    };
    let final_metrics = FinalMetrics::new(&history, outcome);
    mark_completed(&folder, &mut config, &final_metrics)?;
    log_test_change(&config, &final_metrics);
    let tensorboard = sink.tensorboard.take();
    Ok(Finished {
        run: CompletedRun {
            folder,
            config,
            final_metrics,
            model,
            test: data.test,
        },
        tensorboard,
    })
}

/// A completed run whose TensorBoard log is still open.
struct Finished {
    run: CompletedRun,
    tensorboard: Option<RunLog>,
}

impl Finished {
    /// Runs `after`, then ends the log with the delivered model's figures and the figures
    /// `after` drew. The run is complete and saved by then: a log that cannot be ended is a
    /// warning.
    fn finish(self, after: &dyn AfterRun) -> CompletedRun {
        let drawn = after.after(&self.run);
        if let Some(mut log) = self.tensorboard {
            let figures = FinalFigures {
                epoch: self.run.final_metrics.epochs_completed,
                metrics: &self.run.final_metrics,
                macro_avg: drawn.as_ref().map(|d| &d.macro_avg),
                figures: drawn.as_ref().map_or(&[], |d| d.figures.as_slice()),
            };
            if let Err(err) = log.finish(&figures) {
                warn!("{}: {err:#}", log.path().display());
            }
        }
        self.run
    }
}

/// Starts the run's TensorBoard log: for a resumed run, the steps and epochs logged up to its
/// saved state are kept; a fine-tuning run logs its starting scores as epoch 0.
fn start_tensorboard(
    folder: &RunFolder,
    config: &RunConfig,
    history: &History,
    state: Option<&TrainingState>,
    data: &Dataset,
) -> Result<RunLog> {
    let resumed = state
        .map(|s| s.position(&config.options, data.train.len()))
        .transpose()?;
    let mut log = RunLog::start(folder.path(), config, resumed).context(
        "the run's TensorBoard log (events.out.tfevents.*) cannot be written; pass \
         --no-tensorboard to train without one",
    )?;
    if resumed.is_none() {
        for record in history.records() {
            log.epoch(record)?;
        }
    }
    info!("TensorBoard log: {}", log.path().display());
    Ok(log)
}

/// Runs `work`, turning a panic into an error (after the panic message is printed), so that the
/// caller can still record that the run failed.
fn catching_panics<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|payload| {
        let what = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic");
        Err(anyhow::anyhow!("internal error: {what}"))
    })
}

/// The configuration of a run that is starting (or starting again).
fn new_config(
    command: RunCommand,
    options: &TrainOptions,
    device: Device,
    model: &Classifier,
    data: &Dataset,
) -> RunConfig {
    RunConfig {
        command,
        status: RunStatus::Running,
        architecture: model.architecture(),
        parameters: model.parameter_count(),
        parent: None,
        recipe: None,
        options: options.clone(),
        loss: "cross_entropy".to_owned(),
        device: DeviceName(device),
        threads: tch::get_num_threads(),
        data: data.description.clone(),
        mnist_cnn_version: env!("CARGO_PKG_VERSION").to_owned(),
        tch_version: runtime::TCH_VERSION.to_owned(),
        libtorch_version: runtime::LIBTORCH_VERSION.to_owned(),
        started_at: now_utc(),
        finished_at: None,
        before: None,
        final_metrics: None,
    }
}

/// The model the run starts from, and what it continues.
fn begin(start: Start, seed: u64, device: Device) -> Result<Beginning> {
    Ok(match start {
        Start::Fresh(architecture) => {
            tch::manual_seed(seed as i64);
            Beginning {
                model: Classifier::new(architecture, device),
                parent: None,
                resumed: None,
            }
        }
        Start::Checkpoint(path) => Beginning {
            model: checkpoint::load(&path, device)?,
            parent: Some(path),
            resumed: None,
        },
        Start::Resume(resumable) => Beginning {
            // The weights come from the saved state.
            model: Classifier::new(resumable.config.architecture, device),
            parent: resumable.config.parent.clone(),
            resumed: Some(*resumable),
        },
    })
}

/// A fine-tuning run scores its starting checkpoint first (epoch 0 of its history).
fn score_start(
    model: &Classifier,
    parent: Option<&Path>,
    sets: &EvalSets,
    folder: &RunFolder,
    config: &mut RunConfig,
) -> Result<History> {
    let Some(parent) = parent else {
        return Ok(History::new(None));
    };
    let before = Scores::evaluate(model, sets)?;
    info!(
        "starting checkpoint {}: {}",
        parent.display(),
        before.describe()
    );
    config.before = Some(before);
    let history = History::new(Some(before));
    folder.write_metrics(history.records())?;
    Ok(history)
}

/// A fine-tune's test accuracy before and after, said at the end; a warning when it fell by
/// more than [`TEST_DROP_WARNING`] (a fine-tune on pictures that costs the model its MNIST
/// accuracy).
fn log_test_change(config: &RunConfig, final_metrics: &FinalMetrics) {
    let before = config.before.and_then(|b| b.test_accuracy);
    let Some((before, after)) = before.zip(final_metrics.scores.test_accuracy) else {
        return;
    };
    let what = match config.data.kind {
        DataKind::Images => "MNIST test accuracy (the pictures' run is judged on MNIST too)",
        DataKind::Mnist => "test accuracy",
    };
    let change = format!(
        "{what}: {:.2}% before the fine-tune, {:.2}% after ({:+.2} points)",
        100.0 * before,
        100.0 * after,
        100.0 * (after - before)
    );
    if before - after > TEST_DROP_WARNING {
        warn!("{change}");
    } else {
        info!("{change}");
    }
}

/// A fall in test accuracy (as a fraction) past which a fine-tune's end warns.
const TEST_DROP_WARNING: f64 = 0.005;

/// What a run's settings are compared with at its start, and its name: a fine-tune's defaults,
/// the recipe `train` was given, or the tutorial recipe.
fn start_defaults(command: RunCommand, recipe: Option<Recipe>) -> (String, TrainOptions) {
    let (name, defaults) = match (command, recipe) {
        // A fine-tune chooses by validation whenever its split is unseen (the tool's choice, not
        // a setting given): only the opposite is worth naming.
        (RunCommand::Finetune, _) => (
            "finetune's defaults".to_owned(),
            TrainOptions {
                choose_by_validation: true,
                ..crate::train::finetune_defaults()
            },
        ),
        (RunCommand::Train, Some(recipe)) => (format!("the {recipe} recipe's"), recipe.options()),
        (RunCommand::Train, None) => ("train's defaults".to_owned(), TrainOptions::default()),
    };
    (name, defaults.recorded())
}

/// The settings of `options` that differ from `defaults`, as `key=value`.
fn changed_settings(options: &TrainOptions, defaults: &TrainOptions) -> Vec<String> {
    crate::train::SETTINGS
        .iter()
        .filter(|setting| !(setting.same)(options, defaults))
        .map(|setting| match (setting.shown)(options) {
            Some(value) => format!("{}={value}", setting.key),
            None if setting.is_switch => setting.key.to_owned(),
            None => format!("{}=none", setting.key),
        })
        .collect()
}

fn log_start(config: &RunConfig, folder: &RunFolder) {
    let (defaults_name, defaults) = start_defaults(config.command, config.recipe);
    let changed = changed_settings(&config.options, &defaults);
    info!(
        "settings other than {defaults_name}: {}",
        match changed.is_empty() {
            true => "none".to_owned(),
            false => changed.join(", "),
        }
    );
    let options = &config.options;
    info!(
        "{}: the {} CNN ({} parameters) on {} with {} thread(s) in {}; {} epochs, batch {}, {} lr {} ({} schedule), augment {}, freeze {}, seed {}; {} training and {} validation examples; run folder {}",
        config.command,
        config.architecture,
        config.parameters,
        config.device,
        config.threads,
        options.precision,
        options.epochs,
        options.batch_size,
        options.optimizer,
        options.learning_rate,
        options.schedule,
        options.augment,
        options.freeze,
        options.seed,
        config.data.train_examples,
        config.data.validation_examples.unwrap_or(0),
        folder.path().display()
    );
}

/// Records in config.json that the run completed, with the delivered model's figures.
fn mark_completed(
    folder: &RunFolder,
    config: &mut RunConfig,
    metrics: &FinalMetrics,
) -> Result<()> {
    if let Some(before) = &config.before {
        info!(
            "before: {}; after (epoch {}): {}",
            before.describe(),
            metrics.chosen_epoch,
            metrics.scores.describe()
        );
    }
    config.status = RunStatus::Completed;
    config.finished_at = Some(now_utc());
    config.final_metrics = Some(metrics.clone());
    folder.write_config(config)?;
    info!("run saved in {}", folder.path().display());
    Ok(())
}

/// Records in config.json how the run stopped (interrupted or failed) and says exactly what the
/// folder holds; returns the error to pass on.
fn mark_stopped(
    err: anyhow::Error,
    sink: &mut FolderSink,
    config: &mut RunConfig,
) -> anyhow::Error {
    let folder = sink.folder;
    let interrupted = err.downcast_ref::<Interrupted>();
    if let (None, Some(log)) = (interrupted, sink.tensorboard.as_mut()) {
        if let Err(log_error) = log.failed() {
            warn!("{log_error:#}");
        }
    }
    config.status = match interrupted {
        Some(_) => RunStatus::Interrupted,
        None => RunStatus::Failed,
    };
    config.finished_at = Some(now_utc());
    if let Err(write_error) = folder.write_config(config) {
        return write_error;
    }
    let how = match interrupted {
        Some(stop) => format!("stopped by {} after {}", stop.signal_name(), stop.at),
        None => "failed".to_owned(),
    };
    let next = if folder.resume_path().is_file() {
        format!(
            "continue it with `mnist-cnn train --resume {}`",
            folder.path().display()
        )
    } else {
        format!("no {RESUME_FILE} was saved yet: start the run again")
    };
    warn!(
        "{how}: the run folder {} holds {}; {next}",
        folder.path().display(),
        sink.holdings()
    );
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::schedule::Schedule;

    #[test]
    fn the_start_names_the_settings_other_than_the_commands_defaults() {
        let changed = |command, recipe, options: &TrainOptions| {
            changed_settings(options, &start_defaults(command, recipe).1)
        };
        let defaults = TrainOptions::default().recorded();
        assert!(changed(RunCommand::Train, None, &defaults).is_empty());
        let options = TrainOptions {
            learning_rate: 1e-2,
            schedule: Schedule::Onecycle,
            augment: true,
            patience: Some(3),
            ..defaults
        };
        assert_eq!(
            changed(RunCommand::Train, None, &options),
            [
                "learning_rate=0.01",
                "schedule=onecycle",
                "augment",
                "patience=3"
            ]
        );
        // A recipe's own settings are not news; what differs from it is.
        let fast = Recipe::Fast.options().recorded();
        assert!(changed(RunCommand::Train, Some(Recipe::Fast), &fast).is_empty());
        let seeded = TrainOptions { seed: 7, ..fast };
        assert_eq!(
            changed(RunCommand::Train, Some(Recipe::Fast), &seeded),
            ["seed=7"]
        );
        let finetune = TrainOptions {
            choose_by_validation: true,
            ..crate::train::finetune_defaults()
        }
        .recorded();
        assert!(changed(RunCommand::Finetune, None, &finetune).is_empty());
        assert_eq!(
            changed(RunCommand::Train, None, &finetune),
            ["epochs=3", "learning_rate=1e-4", "choose_by_validation"]
        );
        // A fine-tune that cannot choose by its validation images says so.
        let delivering_the_last = crate::train::finetune_defaults().recorded();
        assert_eq!(
            changed(RunCommand::Finetune, None, &delivering_the_last).len(),
            1
        );
    }
}

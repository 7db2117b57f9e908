//! What `train` and `finetune` share: the flags for data, batches, device, seed, threads,
//! augmentation and schedule, and the run itself (data, run folder, the loop, the reports).

use crate::data::images;
use crate::data::{Mnist, Split};
use crate::device::device_name;
use crate::model::Classifier;
use crate::run::{self, DataDescription, FinalMetrics, RunConfig, RunDir, RunStatus};
use crate::runtime;
use crate::schedule::Schedule;
use crate::train::{self, EpochRecord, Epochs, EvalSets, Scores, TrainOptions};
use anyhow::{ensure, Result};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Device;
use tracing::{info, warn};

#[derive(Debug, Clone, clap::Args)]
pub struct SessionArgs {
    /// Folder holding the four MNIST idx files (see `mnist-cnn data`).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,

    /// Run folder for model.ot, metrics.jsonl and config.json [default: runs/<UTC timestamp>].
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,

    /// Replace the run already in --out.
    #[arg(long)]
    pub overwrite: bool,

    /// Images per training step [default: 32, or the recipe's].
    #[arg(long, value_parser = super::at_least_one)]
    pub batch_size: Option<usize>,

    #[command(flatten)]
    pub compute: super::DeviceArgs,

    /// Seed of the weight initialisation, the shuffles, the validation split and augmentation;
    /// on the CPU the same seed (and thread count) gives bit-identical weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Train on the first N training images only (quick trials); the test set stays whole.
    #[arg(long, value_parser = super::at_least_one)]
    pub limit: Option<usize>,

    /// Random affine transforms per image (rotation ±12°, shift ±2.5 px, scale 0.9–1.1,
    /// shear ±8°), drawn from the seed.
    #[arg(long)]
    pub augment: bool,

    /// Learning-rate schedule over the run [default: constant, or the recipe's].
    #[arg(long, value_enum)]
    pub schedule: Option<Schedule>,

    /// Label smoothing of the cross-entropy [default: 0 (none), or the recipe's].
    #[arg(long, value_parser = fraction_below_one)]
    pub label_smoothing: Option<f64>,

    /// Keep an exponential moving average of the weights with this decay per step (e.g. 0.999),
    /// and evaluate and save it instead of the raw weights.
    #[arg(long, value_name = "DECAY", value_parser = decay)]
    pub ema: Option<f64>,

    /// Print a JSON summary on stdout when done.
    #[arg(long)]
    pub json: bool,

    /// Skip the report (curves.png, confusion.png, mistakes.png, filters.png, report.html)
    /// written into the run folder at the end.
    #[arg(long)]
    pub no_report: bool,
}

impl SessionArgs {
    /// `base` (a recipe's settings) with every flag given here put over it, and `epochs` and
    /// `learning_rate` when the command's own flags set them.
    pub fn train_options(
        &self,
        base: TrainOptions,
        epochs: Option<Epochs>,
        learning_rate: Option<f64>,
    ) -> TrainOptions {
        TrainOptions {
            epochs: epochs.unwrap_or(base.epochs),
            batch_size: self.batch_size.unwrap_or(base.batch_size),
            learning_rate: learning_rate.unwrap_or(base.learning_rate),
            seed: self.seed,
            schedule: self.schedule.unwrap_or(base.schedule),
            augment: self.augment || base.augment,
            label_smoothing: self.label_smoothing.unwrap_or(base.label_smoothing),
            weight_averaging: self.ema.or(base.weight_averaging),
            ..base
        }
    }
}

fn fraction_below_one(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..1.0).contains(&x) => Ok(x),
        Ok(_) => Err("must be at least 0 and below 1".to_owned()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

fn decay(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1.0 => Ok(x),
        Ok(_) => Err("must be above 0 and at most 1".to_owned()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// clap value parser for `--val-split`.
pub(crate) fn validation_fraction(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x < 1.0 => Ok(x),
        Ok(_) => Err("must be above 0 and below 1".to_owned()),
        Err(_) => Err(format!("{s:?} is not a number")),
    }
}

/// Where a run trains and what it is judged on.
pub struct RunData {
    pub train: Split,
    pub validation: Option<Split>,
    pub test: Option<Split>,
    pub description: DataDescription,
}

impl RunData {
    /// MNIST: the training split (after `--limit`), optionally with a stratified validation
    /// split (fraction, seed) held out of it, and the whole test split.
    pub fn mnist(args: &SessionArgs, validation: Option<(f64, u64)>) -> Result<Self> {
        let mnist = Mnist::load(&args.data)?;
        let mut train = mnist.train;
        if let Some(limit) = args.limit {
            ensure!(
                limit <= train.len(),
                "--limit {limit}: the training set has only {} images",
                train.len()
            );
            train = train.first(limit);
        }
        let (train, held_out) = match validation {
            Some((fraction, seed)) => {
                let (train, held_out) = train.stratified_split(fraction, seed);
                (train, Some(held_out))
            }
            None => (train, None),
        };
        let mut data = Self::new(
            train,
            held_out,
            Some(mnist.test),
            &args.data,
            "mnist",
            validation,
        );
        data.description.limit = args.limit;
        Ok(data)
    }

    /// A labelled picture folder, split into training and validation (stratified).
    pub fn images(dir: &Path, args: &SessionArgs, validation_split: f64) -> Result<Self> {
        let folder = images::load_folder(dir)?;
        let mut pictures = folder.split;
        if let Some(limit) = args.limit {
            ensure!(
                limit <= pictures.len(),
                "--limit {limit}: {} holds only {} usable pictures",
                dir.display(),
                pictures.len()
            );
            pictures = pictures.first(limit);
        }
        let (train, validation) = pictures.stratified_split(validation_split, args.seed);
        ensure!(
            !train.is_empty() && !validation.is_empty(),
            "--images {}: too few pictures for a training and a validation set ({} usable)",
            dir.display(),
            pictures.len()
        );
        let mut data = Self::new(
            train,
            Some(validation),
            None,
            dir,
            "images",
            Some((validation_split, args.seed)),
        );
        data.description.limit = args.limit;
        Ok(data)
    }

    fn new(
        train: Split,
        validation: Option<Split>,
        test: Option<Split>,
        source: &Path,
        kind: &str,
        split: Option<(f64, u64)>,
    ) -> Self {
        let description = DataDescription {
            source: source.to_owned(),
            kind: kind.to_owned(),
            train_examples: train.len(),
            validation_examples: validation.as_ref().map(Split::len),
            validation_split: split.map(|v| v.0),
            split_seed: split.map(|v| v.1),
            test_examples: test.as_ref().map(Split::len),
            limit: None,
        };
        Self {
            train,
            validation,
            test,
            description,
        }
    }

    fn into_device(self, device: Device) -> Self {
        Self {
            train: self.train.to_device(device),
            validation: self.validation.map(|s| s.to_device(device)),
            test: self.test.map(|s| s.to_device(device)),
            description: self.description,
        }
    }
}

/// What a run starts from.
pub enum Start<'a> {
    /// Fresh weights from the seed.
    Fresh(crate::model::Architecture),
    /// A checkpoint to fine-tune.
    Checkpoint(&'a Path),
    /// An interrupted or finished run to continue: its config, its metrics and its resume
    /// state.
    Resume(Box<ResumeFrom>),
}

pub struct ResumeFrom {
    pub config: RunConfig,
    pub records: Vec<EpochRecord>,
    pub state: std::collections::BTreeMap<String, tch::Tensor>,
}

/// The `--json` summary of a finished run.
#[derive(Debug, Serialize)]
struct RunSummary<'a> {
    run_dir: &'a Path,
    model: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Scores>,
    #[serde(flatten)]
    final_metrics: &'a FinalMetrics,
}

/// Writes the run's report from the model and data already in memory (the model holds the
/// delivered weights, those of model.ot); a picture-folder run is reported on the whole folder,
/// as `mnist-cnn report` does. The run itself is complete and saved by then, so a report that
/// cannot be written is a warning that says how to retry, not a failed run.
fn write_report(run_dir: &Path, config: &RunConfig, model: &Classifier, test: Option<&Split>) {
    use super::report::{mnist_test_description, write, ReportData};
    let written = match test {
        Some(test) => {
            crate::report::write_report(run_dir, model, test, &mnist_test_description(test.len()))
        }
        None => write(run_dir, &ReportData::choose(None, None, config), model),
    };
    match written {
        Ok(summary) => info!(
            "report: {}",
            summary.run_dir.join(crate::report::HTML_FILE).display()
        ),
        Err(err) => warn!(
            "no report: {err:#} (retry with `mnist-cnn report {}`)",
            run_dir.display()
        ),
    }
}

/// Resolves the device and thread settings of a session.
pub fn prepare(args: &SessionArgs) -> Result<Device> {
    args.compute.resolve()
}

/// Runs a training session end to end and reports it.
pub fn execute(
    command: &str,
    args: &SessionArgs,
    device: Device,
    data: RunData,
    start: Start,
    options: TrainOptions,
) -> Result<()> {
    let data = data.into_device(device);
    let (model, parent, resume) = match start {
        Start::Fresh(architecture) => {
            tch::manual_seed(args.seed as i64);
            (Classifier::new(architecture, device), None, None)
        }
        Start::Checkpoint(path) => (Classifier::load(path, device)?, Some(path.to_owned()), None),
        Start::Resume(from) => {
            let model = Classifier::new(from.config.architecture, device);
            let parent = from.config.parent.clone();
            (model, parent, Some(*from))
        }
    };
    let run_dir = RunDir::create(args.out.as_deref(), args.overwrite || resume.is_some())?;
    let sets = EvalSets {
        validation: data.validation.as_ref(),
        test: data.test.as_ref(),
    };
    let mut config = RunConfig {
        command: command.to_owned(),
        status: RunStatus::Running,
        architecture: model.architecture,
        parameters: model.parameter_count(),
        parent: parent.clone(),
        options: options.clone(),
        optimizer: "adam".to_owned(),
        loss: "cross_entropy".to_owned(),
        device: device_name(device),
        threads: tch::get_num_threads(),
        data: data.description.clone(),
        mnist_cnn_version: env!("CARGO_PKG_VERSION").to_owned(),
        tch_version: runtime::TCH_VERSION.to_owned(),
        libtorch_version: runtime::LIBTORCH_VERSION.to_owned(),
        started_at: run::now_utc(),
        finished_at: None,
        before: None,
        final_metrics: None,
    };
    let mut records: Vec<EpochRecord> = Vec::new();
    let mut fit_resume = None;
    if let Some(from) = resume {
        // The run's own history: its start time, its starting scores, its epochs so far.
        config.command = from.config.command.clone();
        config.started_at = from.config.started_at.clone();
        config.before = from.config.before;
        let from = train::Resume {
            records: from.records,
            state: from.state,
        };
        let done = from.completed_epochs()?;
        records = from
            .records
            .iter()
            .filter(|r| r.epoch <= done)
            .cloned()
            .collect();
        fit_resume = Some(from);
    } else if let Some(parent) = &parent {
        let before = Scores::evaluate(&model, &sets)?;
        info!(
            "starting checkpoint {}: {}",
            parent.display(),
            before.describe()
        );
        config.before = Some(before);
        records.push(EpochRecord {
            epoch: 0,
            train_loss: None,
            scores: before,
            seconds: 0.0,
            images_per_second: 0.0,
            learning_rate: 0.0,
            learning_rate_end: 0.0,
        });
        run_dir.write_metrics(&records)?;
    }
    run_dir.write_config(&config)?;
    info!(
        "{command}: the {} CNN ({} parameters) on {} with {} thread(s); {} epochs, batch {}, Adam lr {} ({} schedule), augment {}, freeze {}, seed {}; {} training and {} validation examples; run folder {}",
        config.architecture,
        config.parameters,
        config.device,
        config.threads,
        options.epochs,
        options.batch_size,
        options.learning_rate,
        options.schedule,
        options.augment,
        options.freeze,
        options.seed,
        data.description.train_examples,
        data.description.validation_examples.unwrap_or(0),
        run_dir.path().display()
    );

    crate::interrupt::install()?;
    let state_file = run_dir.path().join(run::RESUME_FILE);
    let fitted = train::fit(
        &model,
        &data.train,
        &sets,
        &options,
        fit_resume,
        Some(&state_file),
        |record: &EpochRecord, is_best: bool| {
            records.push(record.clone());
            if is_best {
                model.save(&run_dir.model_path())?;
            }
            run_dir.write_metrics(&records)
        },
    );
    let outcome = match fitted {
        Ok(outcome) => outcome,
        Err(err) => {
            let interrupted = err
                .downcast_ref::<crate::interrupt::Interrupted>()
                .is_some();
            config.status = if interrupted {
                RunStatus::Interrupted
            } else {
                RunStatus::Failed
            };
            config.finished_at = Some(run::now_utc());
            run_dir.write_config(&config)?;
            let kept = records.iter().map(|r| r.epoch).max().unwrap_or(0);
            warn!(
                "{}: the run folder {} keeps epoch {kept} (model.ot, metrics.jsonl, {}); continue it with `mnist-cnn train --resume {}`",
                if interrupted { "stopped" } else { "failed" },
                run_dir.path().display(),
                run::RESUME_FILE,
                run_dir.path().display()
            );
            return Err(err);
        }
    };

    let final_metrics = FinalMetrics::from_outcome(&outcome);
    if let Some(before) = &config.before {
        info!(
            "before: {}; after (epoch {}): {}",
            before.describe(),
            final_metrics.chosen_epoch,
            final_metrics.scores.describe()
        );
    }
    config.status = RunStatus::Completed;
    config.finished_at = Some(run::now_utc());
    config.final_metrics = Some(final_metrics.clone());
    run_dir.write_config(&config)?;
    info!("run saved in {}", run_dir.path().display());
    if !args.no_report {
        write_report(run_dir.path(), &config, &model, data.test.as_ref());
    }
    if args.json {
        return super::print_json(&RunSummary {
            run_dir: run_dir.path(),
            model: run_dir.model_path(),
            before: config.before,
            final_metrics: &final_metrics,
        });
    }
    println!(
        "{} from epoch {} of {}, {:.1} s of training; model: {}",
        final_metrics.scores.describe(),
        final_metrics.chosen_epoch,
        final_metrics.epochs_completed,
        final_metrics.train_seconds,
        run_dir.model_path().display()
    );
    Ok(())
}

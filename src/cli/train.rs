//! `mnist-cnn train`: train a network (the tutorial CNN by default) from scratch and leave a run
//! folder behind; or continue one with `--resume`.

use super::args::{DeviceArgs, SessionArgs};
use super::output::run_and_finish;
use super::settings_flags::{ForTrain, SettingFlags};
use super::values;
use crate::choice::Choice;
use crate::data::dataset::{self, DataSource, HeldOut};
use crate::device::{DeviceChoice, DeviceName};
use crate::io::settings_file::SettingsFile;
use crate::io::RunCommand;
use crate::nn::Architecture;
use crate::optim::schedule::Schedule;
use crate::run::{Resumable, ResumeChanges, RunPlan, Start};
use crate::train::Recipe;
use anyhow::{anyhow, bail, ensure, Result};
use std::path::{Path, PathBuf};
use tch::Device;
use tracing::warn;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The settings to start from: `tutorial` (the Keras tutorial: 10 epochs, batch 32, Adam
    /// 1e-3), `fast` (99% in the least training time: 1.3 epochs, batch 128, one-cycle
    /// schedule peaking at 1e-2, label smoothing 0.1) or `large` (vgg-32, 15 epochs, batch 128,
    /// augmentation, one-cycle peaking at 4e-3, label smoothing 0.1). Flags given explicitly
    /// override it.
    #[arg(long, value_parser = values::choice::<Recipe>(), default_value_t = Recipe::Tutorial)]
    pub recipe: Recipe,

    /// The network: `tutorial` (the Keras tutorial's CNN, 35k parameters) or `vgg-N`
    /// (batch-normalised 3×3 convolutions in stages of N, 2N and 4N channels: vgg-16 75k,
    /// vgg-32 289k, vgg-48 641k parameters; `vgg` is vgg-32) [default: the recipe's].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Architecture>,

    /// Hold out this fraction of the training images (stratified, from the seed) as a
    /// validation set: scored each epoch, never trained on, and reused by `finetune`, so that
    /// fine-tuning is judged on images the model has never seen. model.ot is still the last
    /// epoch's; best.ot holds the epoch with the best validation scores.
    #[arg(long, value_parser = values::number(dataset::VALIDATION_FRACTION))]
    pub val_split: Option<f64>,

    /// Continue the run in RUN_DIR (interrupted, or finished and to be extended with a larger
    /// --epochs) from the step it stopped at, with its own settings, data and random state;
    /// on the CPU with the same thread count it ends bit-identical to an uninterrupted run.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["recipe", "arch", "lr", "val_split", "config", "patience"])]
    pub resume: Option<PathBuf>,

    /// Take the settings from FILE: a TOML file, or a run's config.json (whose record-only
    /// keys are ignored), with config.json's key names. Flags given explicitly override it, and
    /// it overrides the recipe. `train --config runs/X/config.json --out runs/Y` repeats run X
    /// (with its thread count unless --threads is given); a fine-tune's config.json is refused
    /// (`finetune --config` replays it).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub session: SessionArgs,

    #[command(flatten)]
    pub settings: SettingFlags<ForTrain>,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        return resume(dir, args);
    }
    let file = match &args.config {
        Some(path) => SettingsFile::read(path)?,
        None => SettingsFile::default(),
    };
    let session = &args.session;
    let mut compute = session.compute.clone();
    compute.threads_or(file.threads, &file.path)?;
    let device = compute.resolve()?;
    let given = &args.settings.given;
    let mut options = given
        .over(file.options.over(args.recipe.options()))
        .recorded();
    options.precision = compute.precision_over(options.precision, device)?;
    // The tutorial's recipe delivers the last epoch; a validation split is only scored.
    let validation = args
        .val_split
        .or(file.validation_split)
        .map(|fraction| HeldOut {
            fraction,
            seed: options.seed,
        });
    ensure!(
        options.schedule != Schedule::Plateau || validation.is_some(),
        "--schedule plateau watches the validation loss, and there is no validation split: add \
         --val-split F (the test set is never used to choose)"
    );
    ensure!(
        options.patience.is_none() || validation.is_some(),
        "--patience watches the validation split, and there is none: add --val-split F (the \
         test set is never used to choose)"
    );
    let mut data = session.data_spec(
        DataSource::Mnist(session.data_dir(file.data.as_deref())),
        validation,
    );
    data.limit = data.limit.or(file.limit);
    let architecture = args
        .arch
        .or(file.architecture)
        .unwrap_or(args.recipe.architecture());
    let start = Start::Fresh(architecture);
    let plan = RunPlan {
        recipe: Some(args.recipe),
        ..session.run_plan(RunCommand::Train, start, data, options, device)
    };
    run_and_finish(plan, session)
}

/// The settings a resumed run may be given anew: a longer run, and how often it saves.
const RESUME_MAY_CHANGE: [&str; 2] = ["epochs", "checkpoint_every_steps"];

/// `train --resume RUN_DIR`: the run's config gives the settings and the data, its metrics the
/// epochs so far, and resume.ot the state after the last completed epoch.
fn resume(dir: &Path, args: &TrainArgs) -> Result<()> {
    let given = &args.settings.given;
    let changes_settings = given
        .keys()
        .iter()
        .any(|key| !RESUME_MAY_CHANGE.contains(key));
    if changes_settings || args.session.sets_data() {
        bail!(
            "--resume {}: the run continues with its own settings; only --epochs, --device, \
             --threads, --checkpoint-every-steps, --json, --no-report and --no-tensorboard may be \
             given with it",
            dir.display()
        );
    }
    if let Some(precision) = args.session.compute.precision {
        bail!(
            "--resume {}: the run continues in its own precision; --precision {} cannot be given \
             with it",
            dir.display(),
            precision.name()
        );
    }
    let resumable = Resumable::open(dir)?;
    let mut compute = args.session.compute.clone();
    let source = resumable.folder.config_path();
    compute
        .threads_of_record(&resumable.config, &source)
        .map_err(|e| {
            anyhow!(
                "{e}; pass --threads to choose another count (the run then stops being \
                 bit-identical to an uninterrupted one)"
            )
        })?;
    let device = resume_device(&compute, &resumable)?;
    let changes = ResumeChanges {
        epochs: given.epochs,
        checkpoint_every_steps: given.checkpoint_every_steps.flatten(),
    };
    let mut plan = resumable.plan(changes, device)?;
    plan.tensorboard = !args.session.no_tensorboard;
    run_and_finish(plan, &args.session)
}

/// The device a resumed run continues on: --device when given, else the one it was trained on,
/// which must be on this machine. Moving between devices is allowed, and said.
fn resume_device(compute: &DeviceArgs, resumable: &Resumable) -> Result<Device> {
    let recorded = resumable.config.device.0;
    let config_path = resumable.folder.config_path();
    if compute.device.is_none() {
        if let Device::Cuda(index) = recorded {
            let count = tch::Cuda::device_count();
            ensure!(
                (index as i64) < count,
                "--resume {}: the run was trained on {} ({}: device), which this machine does \
                 not have ({}); pass --device cpu to continue it on the CPU (its state moves \
                 over whole, but the results are not bit-identical to an uninterrupted run)",
                resumable.folder.path().display(),
                DeviceName(recorded),
                config_path.display(),
                match count {
                    0 => "libtorch sees no GPU".to_owned(),
                    n => format!("it has {n} CUDA device(s), numbered from 0"),
                }
            );
        }
    }
    let device = compute.resolve_or(DeviceChoice::from(recorded))?;
    if device != recorded {
        warn!(
            "continuing a run trained on {} on {}: the weights, optimizer state, loss scale and \
             weight average move over, but the results are not bit-identical to an \
             uninterrupted run on {}",
            DeviceName(recorded),
            DeviceName(device),
            DeviceName(recorded)
        );
    }
    Ok(device)
}

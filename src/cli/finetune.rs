//! `mnist-cnn finetune`: reload a checkpoint and retrain it, by default with a lower learning
//! rate, on MNIST or on a folder of the user's own pictures; the model is chosen on a
//! validation split held out of the training data.

use super::args::SessionArgs;
use super::output::run_and_finish;
use super::settings_flags::{ForFinetune, SettingFlags};
use super::values;
use crate::data::dataset::{self, DataKind, DataSource, DataSpec, HeldOut};
use crate::data::MNIST_FILES;
use crate::fsutil;
use crate::io::run_folder::{config_beside, model_file, read_config_file};
use crate::io::settings_file::SettingsFile;
use crate::io::{RunCommand, RunConfig};
use crate::run::Start;
use crate::train::finetune_defaults;
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// The checkpoint to start from: a run folder (its model.ot), a `.ot` from a run, or a
    /// `.safetensors` state dict (one saved from the equivalent PyTorch module works).
    #[arg(long, value_name = "PATH", required_unless_present_any = ["resume", "config"])]
    pub from: Option<PathBuf>,

    /// Take the settings from FILE: a fine-tune's config.json, which is replayed as it ran (its
    /// parent, data, split and settings; only --out, --overwrite, --device, --threads, --json,
    /// --no-report and --no-tensorboard may be given with it: on the CPU with the same thread
    /// count the weights come out bit-identical), or a TOML file of config.json's keys, between
    /// the defaults and the flags.
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub config: Option<PathBuf>,

    /// An interrupted fine-tune goes on with `mnist-cnn train --resume RUN_DIR`, as every run
    /// does; given here, this says so.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "from")]
    pub resume: Option<PathBuf>,

    /// Train on labelled pictures laid out as DIR/0/*, …, DIR/9/* (PNG, JPEG, GIF, BMP or WebP;
    /// any size) instead of MNIST.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// Fraction of the training data held out (stratified, from the seed) to choose the best
    /// epoch; that epoch's weights are saved as RUN_DIR/model.ot [default: 0.1, or on MNIST the
    /// starting run's own validation split when it held one out].
    #[arg(long, value_parser = values::number(dataset::VALIDATION_FRACTION))]
    pub val_split: Option<f64>,

    #[command(flatten)]
    pub session: SessionArgs,

    #[command(flatten)]
    pub settings: SettingFlags<ForFinetune>,
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        bail!(
            "--resume {}: a fine-tune goes on like any run, with `mnist-cnn train --resume {}` \
             (its own settings, data and starting checkpoint come from its folder)",
            dir.display(),
            dir.display()
        );
    }
    let file = match &args.config {
        Some(path) if path.extension().is_some_and(|e| e == "toml") => {
            Some(SettingsFile::read(path)?)
        }
        Some(path) => return replay(args, path, read_config_file(path)?),
        None => None,
    };
    let Some(from) = args.from.as_deref() else {
        bail!("--from PATH: the checkpoint to fine-tune is required");
    };
    let from = &model_file(from).context("--from")?;
    ensure!(
        from.exists(),
        "--from {}: no such checkpoint file",
        from.display()
    );
    let session = &args.session;
    refuse_out_holding(session, from)?;
    let mut compute = session.compute.clone();
    if let Some(file) = &file {
        compute.threads_or(file.threads, &file.path)?;
    }
    let device = compute.resolve()?;
    // Flags over the file, the file over a fine-tune's defaults.
    let file_options = file.as_ref().map(|f| f.options.clone()).unwrap_or_default();
    let mut options = (args.settings.given)
        .over(file_options.over(finetune_defaults()))
        .recorded();
    options.precision = compute.precision_over(options.precision, device)?;
    let (data, held_out) = finetune_data(args, from, file.as_ref(), options.seed)?;
    if !held_out {
        warn!(
            "the validation images were trained on by {}: the run delivers its last epoch{} \
             rather than choosing by them (config.json: choose_by_validation false)",
            from.display(),
            if options.weight_averaging.is_some() {
                " (the weight average)"
            } else {
                ""
            }
        );
    }
    options.choose_by_validation = held_out;
    let start = Start::Checkpoint(from.to_owned());
    let plan = session.run_plan(RunCommand::Finetune, start, data, options, device);
    run_and_finish(plan, session)
}

/// --out may not be the folder of the checkpoint the run starts from: --overwrite would remove
/// it.
fn refuse_out_holding(session: &SessionArgs, from: &Path) -> Result<()> {
    if let Some(out) = &session.out {
        let parent = from.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(Path::new("."));
        ensure!(
            !fsutil::same_file(out, parent),
            "--out {}: the folder holds the --from checkpoint {}; choose another folder",
            out.display(),
            from.display()
        );
    }
    Ok(())
}

/// The fine-tune's data (a picture folder, or MNIST: --data, else the settings file's, else
/// data/mnist), with its validation split; and whether the starting model never trained on
/// that split (pictures of a folder are never in MNIST, which it learned).
fn finetune_data(
    args: &FinetuneArgs,
    from: &Path,
    file: Option<&SettingsFile>,
    seed: u64,
) -> Result<(DataSpec, bool)> {
    let session = &args.session;
    let val_split = args.val_split.or(file.and_then(|f| f.validation_split));
    let mut data = match &args.images {
        Some(dir) => {
            let fraction = val_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
            let split = HeldOut { fraction, seed };
            let mut spec = session.data_spec(DataSource::Images(dir.clone()), Some(split));
            spec.mnist_test = mnist_at_hand(session, file);
            (spec, true)
        }
        None => {
            let validation = mnist_validation(val_split, from, seed)?;
            let dir = session.data_dir(file.and_then(|f| f.data.as_deref()));
            let spec = session.data_spec(DataSource::Mnist(dir), Some(validation.split));
            (spec, validation.unseen)
        }
    };
    data.0.limit = data.0.limit.or(file.and_then(|f| f.limit));
    Ok(data)
}

/// The MNIST folder whose test set a fine-tune on pictures reports (before and after, so that
/// what the pictures cost on MNIST shows): --data (or the settings file's) whatever it holds,
/// else data/mnist when it holds MNIST's files; none otherwise, said in the log.
fn mnist_at_hand(session: &SessionArgs, file: Option<&SettingsFile>) -> Option<PathBuf> {
    let given = session.data.is_some() || file.is_some_and(|f| f.data.is_some());
    let dir = session.data_dir(file.and_then(|f| f.data.as_deref()));
    let present = MNIST_FILES.iter().all(|f| dir.join(f.name).is_file());
    if given || present {
        return Some(dir);
    }
    info!(
        "no MNIST in {}: the fine-tune reports no MNIST test scores (pass --data DIR to have them)",
        dir.display()
    );
    None
}

/// A validation split, and whether the starting model never trained on it.
struct Validation {
    split: HeldOut,
    unseen: bool,
}

/// The MNIST validation split. The starting checkpoint has usually trained on MNIST's training
/// images; validating on images it learned would reward memorisation, so when its run held a
/// validation split out (`train --val-split`), the same images are held out here.
fn mnist_validation(val_split: Option<f64>, from: &Path, seed: u64) -> Result<Validation> {
    let parent = config_beside(from)?.filter(|c| c.data.kind == DataKind::Mnist);
    let parent_split = parent.as_ref().and_then(|c| c.data.held_out());
    let held_out = |fraction| HeldOut { fraction, seed };
    let seen = |split| Validation {
        split,
        unseen: false,
    };
    Ok(match (val_split, parent_split) {
        (None, Some(split)) => {
            info!(
                "validating on the starting run's held-out split ({:.0}% of the training images, seed {}), which it never trained on",
                100.0 * split.fraction,
                split.seed
            );
            Validation {
                split,
                unseen: true,
            }
        }
        (Some(fraction), Some(split)) if (fraction, seed) != (split.fraction, split.seed) => {
            warn!(
                "--val-split {fraction} with seed {seed} differs from the starting run's held-out split ({}, seed {}): some validation images were trained on",
                split.fraction, split.seed
            );
            seen(held_out(fraction))
        }
        (fraction, None) => {
            warn!(
                "{} was trained without a held-out validation split (train --val-split): the validation images were trained on, so validation accuracy rewards memorisation",
                from.display()
            );
            seen(held_out(fraction.unwrap_or(DEFAULT_VALIDATION_SPLIT)))
        }
        (Some(fraction), Some(_)) => Validation {
            split: held_out(fraction),
            unseen: true,
        },
    })
}

/// Whether any flag that sets a fine-tune's settings, data or start was given (refused when a
/// fine-tune's record is replayed).
fn sets_finetune_settings(args: &FinetuneArgs) -> bool {
    args.session.sets_data()
        || !args.settings.given.keys().is_empty()
        || args.from.is_some()
        || args.images.is_some()
        || args.val_split.is_some()
        || args.session.compute.precision.is_some()
}

/// `finetune --config RUN/config.json`: the fine-tune the record describes, run again into
/// --out: its parent, its data and exact validation split, its settings and thread count.
fn replay(args: &FinetuneArgs, path: &Path, record: RunConfig) -> Result<()> {
    ensure!(
        record.command == RunCommand::Finetune,
        "--config {}: it is the record of a training run; repeat it with `mnist-cnn train \
         --config {}`",
        path.display(),
        path.display()
    );
    ensure!(
        !sets_finetune_settings(args),
        "--config {}: a fine-tune's record is replayed with its own settings; only --out, \
         --overwrite, --device, --threads, --json, --no-report and --no-tensorboard may be given \
         with it (a TOML file takes settings under the flags)",
        path.display()
    );
    let Some(parent) = record.parent.clone() else {
        bail!(
            "--config {}: the record names no parent checkpoint to fine-tune",
            path.display()
        );
    };
    let session = &args.session;
    refuse_out_holding(session, &parent)?;
    let mut compute = session.compute.clone();
    compute.threads_of_record(&record, path)?;
    let device = compute.resolve()?;
    let plan = session.run_plan(
        RunCommand::Finetune,
        Start::Checkpoint(parent),
        record.data.spec(),
        record.options.clone(),
        device,
    );
    run_and_finish(plan, session)
}

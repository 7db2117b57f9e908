//! `mnist-cnn finetune`: reload a checkpoint and retrain it, by default with a lower learning
//! rate, on MNIST or on a folder of the user's own pictures; the model is chosen on a
//! validation split held out of the training data.

use super::args::SessionArgs;
use super::output::finish_run;
use super::values;
use crate::data::dataset::{self, DataKind, DataSource, HeldOut};
use crate::fsutil;
use crate::io::run_folder::config_beside;
use crate::io::RunCommand;
use crate::run::{self, Start};
use crate::train::{rules, Epochs, Freeze, TrainOptions};
use anyhow::{bail, ensure, Result};
use std::path::{Path, PathBuf};
use tracing::{info, warn};

const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// The checkpoint to start from: a `.ot` from a run, or a `.safetensors` state dict (one
    /// saved from the equivalent PyTorch module works).
    #[arg(long, value_name = "PATH", required_unless_present = "resume")]
    pub from: Option<PathBuf>,

    /// An interrupted fine-tune goes on with `mnist-cnn train --resume RUN_DIR`, as every run
    /// does; given here, this says so.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "from")]
    pub resume: Option<PathBuf>,

    /// Passes over the training data.
    #[arg(long, default_value = "3", value_parser = values::epochs(), allow_negative_numbers = true)]
    pub epochs: Epochs,

    /// The optimizer's learning rate (the peak rate under a schedule).
    #[arg(long, default_value_t = 1e-4, value_parser = values::number(rules::LEARNING_RATE), allow_negative_numbers = true)]
    pub lr: f64,

    /// Layers that get no gradient.
    #[arg(long, value_parser = values::choice::<Freeze>(), default_value_t = Freeze::None)]
    pub freeze: Freeze,

    /// Train on labelled pictures laid out as DIR/0/*, …, DIR/9/* (PNG, JPEG, GIF, BMP or WebP;
    /// any size) instead of MNIST.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// Fraction of the training data held out (stratified, from the seed) to choose the best
    /// epoch; that epoch's weights are saved as RUN_DIR/model.ot [default: 0.1, or on MNIST the
    /// starting run's own validation split when it held one out].
    #[arg(long, value_parser = values::number(dataset::VALIDATION_FRACTION))]
    pub val_split: Option<f64>,

    /// Stop after N epochs without better validation scores (a higher accuracy, or the same with a lower loss).
    #[arg(long, value_name = "N", value_parser = values::number(rules::PATIENCE))]
    pub patience: Option<usize>,

    #[command(flatten)]
    pub session: SessionArgs,
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    let session = &args.session;
    if let Some(dir) = &args.resume {
        bail!(
            "--resume {}: a fine-tune goes on like any run, with `mnist-cnn train --resume {}` \
             (its own settings, data and starting checkpoint come from its folder)",
            dir.display(),
            dir.display()
        );
    }
    let Some(from) = args.from.as_deref() else {
        bail!("--from PATH: the checkpoint to fine-tune is required");
    };
    ensure!(
        from.exists(),
        "--from {}: no such checkpoint file",
        from.display()
    );
    if let Some(out) = &session.out {
        // --overwrite would remove the checkpoint the run starts from.
        let parent = from.parent().filter(|p| !p.as_os_str().is_empty());
        let parent = parent.unwrap_or(std::path::Path::new("."));
        ensure!(
            !fsutil::same_file(out, parent),
            "--out {}: the folder holds the --from checkpoint {}; choose another folder",
            out.display(),
            from.display()
        );
    }
    let device = session.compute.resolve()?;
    // Pictures of a folder are never in MNIST, which the starting model learned.
    let mut held_out = true;
    let data = match &args.images {
        Some(dir) => {
            let fraction = args.val_split.unwrap_or(DEFAULT_VALIDATION_SPLIT);
            session.data_spec(
                DataSource::Images(dir.clone()),
                Some(session.held_out(fraction, DEFAULT_SEED)),
            )
        }
        None => {
            let validation = mnist_validation(args, from)?;
            held_out = validation.unseen;
            session.data_spec(
                DataSource::Mnist(session.data_dir(None)),
                Some(validation.split),
            )
        }
    };
    if !held_out {
        warn!(
            "the validation images were trained on by {}: the run delivers its last epoch{} \
             rather than choosing by them (config.json: choose_by_validation false)",
            from.display(),
            if session.ema.is_some() {
                " (the weight average)"
            } else {
                ""
            }
        );
    }
    let options = TrainOptions {
        freeze: args.freeze,
        choose_by_validation: held_out,
        patience: args.patience,
        precision: session.compute.precision(device)?,
        ..session.train_options(TrainOptions::default(), Some(args.epochs), Some(args.lr))
    };
    let start = Start::Checkpoint(from.to_owned());
    let plan = session.run_plan(RunCommand::Finetune, start, data, options, device);
    finish_run(run::execute(plan)?, session)
}

/// A validation split, and whether the starting model never trained on it.
struct Validation {
    split: HeldOut,
    unseen: bool,
}

/// The seed when --seed is not given: the default run's.
const DEFAULT_SEED: u64 = 42;

/// The MNIST validation split. The starting checkpoint has usually trained on MNIST's training
/// images; validating on images it learned would reward memorisation, so when its run held a
/// validation split out (`train --val-split`), the same images are held out here.
fn mnist_validation(args: &FinetuneArgs, from: &Path) -> Result<Validation> {
    let parent = config_beside(from)?.filter(|c| c.data.kind == DataKind::Mnist);
    let parent_split = parent.as_ref().and_then(|c| c.data.held_out());
    let seed = args.session.seed.unwrap_or(DEFAULT_SEED);
    let seen = |split| Validation {
        split,
        unseen: false,
    };
    Ok(match (args.val_split, parent_split) {
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
            seen(args.session.held_out(fraction, DEFAULT_SEED))
        }
        (fraction, None) => {
            warn!(
                "{} was trained without a held-out validation split (train --val-split): the validation images were trained on, so validation accuracy rewards memorisation",
                from.display()
            );
            seen(
                args.session
                    .held_out(fraction.unwrap_or(DEFAULT_VALIDATION_SPLIT), DEFAULT_SEED),
            )
        }
        (Some(fraction), Some(_)) => Validation {
            split: args.session.held_out(fraction, DEFAULT_SEED),
            unseen: true,
        },
    })
}

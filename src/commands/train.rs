//! `mnist-cnn train`: train a network (the tutorial CNN by default) from scratch and leave a run
//! folder behind.

use super::session::{self, RunData, SessionArgs, Start};
use crate::model;
use crate::model::Architecture;
use crate::run::{self, RESUME_FILE};
use crate::train::{Epochs, Recipe};
use anyhow::{bail, ensure, Context, Result};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The settings to start from: `tutorial` (the Keras tutorial: 10 epochs, batch 32, Adam
    /// 1e-3), `fast` (99% in the least training time: 1.3 epochs, batch 128, one-cycle
    /// schedule peaking at 1e-2, label smoothing 0.1) or `large` (vgg-32, 15 epochs, batch 128,
    /// augmentation, one-cycle peaking at 4e-3, label smoothing 0.1; about 20 minutes on two
    /// CPU cores). Flags given explicitly override it.
    #[arg(long, value_enum, default_value_t = Recipe::Tutorial)]
    pub recipe: Recipe,

    /// The network: `tutorial` (the Keras tutorial's CNN, 35k parameters) or `vgg-N`
    /// (batch-normalised 3×3 convolutions in stages of N, 2N and 4N channels: vgg-16 75k,
    /// vgg-32 289k, vgg-48 641k parameters; `vgg` is vgg-32) [default: the recipe's].
    #[arg(long, value_name = "ARCH")]
    pub arch: Option<Architecture>,

    /// Passes over the training set; a fraction (1.5) ends with part of an epoch [default: 10,
    /// or the recipe's].
    #[arg(long, allow_negative_numbers = true)]
    pub epochs: Option<Epochs>,

    /// Adam's learning rate, the peak rate under a schedule [default: 1e-3, or the recipe's].
    #[arg(long, value_parser = super::positive_finite, allow_negative_numbers = true)]
    pub lr: Option<f64>,

    /// Hold out this fraction of the training images (stratified, from the seed) as a
    /// validation set: scored each epoch, never trained on, and reused by `finetune`, so that
    /// fine-tuning is judged on images the model has never seen. The model saved is still the
    /// last epoch's.
    #[arg(long, value_parser = session::validation_fraction)]
    pub val_split: Option<f64>,

    /// Continue the run in RUN_DIR (interrupted, or finished and to be extended with a larger
    /// --epochs) from its last completed epoch, with its own settings, data and random state;
    /// on the CPU with the same thread count it ends bit-identical to an uninterrupted run.
    #[arg(long, value_name = "RUN_DIR", conflicts_with_all = ["recipe", "arch", "lr", "val_split"])]
    pub resume: Option<PathBuf>,

    #[command(flatten)]
    pub session: SessionArgs,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    if let Some(dir) = &args.resume {
        return resume(dir, args);
    }
    let session = &args.session;
    let device = session::prepare(session)?;
    let data = RunData::mnist(session, args.val_split.map(|f| (f, session.seed)))?;
    // The tutorial's recipe delivers the last epoch; a validation split is only scored.
    let options = session.train_options(args.recipe.options(), args.epochs, args.lr);
    session::execute(
        "train",
        session,
        device,
        data,
        Start::Fresh(args.arch.unwrap_or(args.recipe.architecture())),
        options,
    )
}

/// `train --resume RUN_DIR`: the run's config gives the settings and the data, its metrics the
/// epochs so far, and resume.ot the state after the last completed epoch.
fn resume(dir: &Path, args: &TrainArgs) -> Result<()> {
    let given = &args.session;
    if given.batch_size.is_some()
        || given.schedule.is_some()
        || given.label_smoothing.is_some()
        || given.ema.is_some()
        || given.augment
        || given.limit.is_some()
    {
        bail!(
            "--resume {}: the run continues with its own settings; only --epochs, --device, \
             --threads, --json and --no-report may be given with it",
            dir.display()
        );
    }
    let config = crate::report::read_config(dir)?;
    let state_path = dir.join(RESUME_FILE);
    ensure!(
        state_path.is_file(),
        "--resume {}: no {RESUME_FILE} (the run never completed an epoch, or was made by an older \
         version)",
        dir.display()
    );
    let state = model::read_checkpoint(&state_path)?;
    let records = run::read_metrics(&dir.join(run::METRICS_FILE))?;
    let mut options = config.options.clone();
    if let Some(epochs) = args.epochs {
        options.epochs = epochs;
    }
    // The run's own data and settings; device, threads and output flags from this command.
    let mut session = given.clone();
    session.data = config.data.source.clone();
    session.out = Some(dir.to_owned());
    session.seed = options.seed;
    session.limit = config.data.limit;
    if session.compute.threads.is_none() && config.device == "cpu" {
        // The same thread count keeps the CPU run bit-identical.
        session.compute.threads = usize::try_from(config.threads).ok();
    }
    let device = session::prepare(&session)?;
    let validation = config.data.validation_split.zip(config.data.split_seed);
    let data = match config.data.kind.as_str() {
        "mnist" => RunData::mnist(&session, validation)?,
        "images" => {
            let (fraction, seed) =
                validation.context("the run's config has no validation split")?;
            session.seed = seed;
            let data = RunData::images(&config.data.source, &session, fraction)?;
            session.seed = options.seed;
            data
        }
        other => bail!(
            "--resume {}: unknown data kind {other:?} in config.json",
            dir.display()
        ),
    };
    let command = config.command.clone();
    session::execute(
        &command,
        &session,
        device,
        data,
        Start::Resume(Box::new(session::ResumeFrom {
            config,
            records,
            state,
        })),
        options,
    )
}

//! `mnist-cnn finetune`: reload a checkpoint and retrain it, by default with a lower learning
//! rate, on MNIST or on a folder of the user's own pictures; the model is chosen on a
//! validation split held out of the training data.

use super::session::{self, RunData, SessionArgs, Start};
use crate::run;
use crate::train::{Epochs, Freeze, TrainOptions};
use anyhow::{ensure, Result};
use std::path::PathBuf;
use tracing::{info, warn};

const DEFAULT_VALIDATION_SPLIT: f64 = 0.1;

#[derive(Debug, clap::Args)]
pub struct FinetuneArgs {
    /// The checkpoint to start from: a `.ot` from a run, or a `.safetensors` state dict (one
    /// saved from the equivalent PyTorch module works).
    #[arg(long, value_name = "PATH")]
    pub from: PathBuf,

    /// Passes over the training data.
    #[arg(long, default_value = "3", allow_negative_numbers = true)]
    pub epochs: Epochs,

    /// Adam's learning rate (the peak rate under a schedule).
    #[arg(long, default_value_t = 1e-4, value_parser = super::positive_finite, allow_negative_numbers = true)]
    pub lr: f64,

    /// Layers that get no gradient.
    #[arg(long, value_enum, default_value_t = Freeze::None)]
    pub freeze: Freeze,

    /// Train on labelled pictures laid out as DIR/0/*, …, DIR/9/* (PNG, JPEG, GIF, BMP or WebP;
    /// any size) instead of MNIST.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// Fraction of the training data held out (stratified, from the seed) to choose the best
    /// epoch; that epoch's weights are saved as RUN_DIR/model.ot [default: 0.1, or on MNIST the
    /// starting run's own validation split when it held one out].
    #[arg(long, value_parser = session::validation_fraction)]
    pub val_split: Option<f64>,

    /// Stop after N epochs without a better validation accuracy.
    #[arg(long, value_name = "N", value_parser = super::at_least_one)]
    pub patience: Option<usize>,

    #[command(flatten)]
    pub session: SessionArgs,
}

pub fn run(args: &FinetuneArgs) -> Result<()> {
    let session = &args.session;
    ensure!(
        args.from.is_file(),
        "--from {}: no such checkpoint file",
        args.from.display()
    );
    let device = session::prepare(session)?;
    let data = match &args.images {
        Some(dir) => RunData::images(
            dir,
            session,
            args.val_split.unwrap_or(DEFAULT_VALIDATION_SPLIT),
        )?,
        None => RunData::mnist(session, Some(mnist_validation(args)))?,
    };
    let options = TrainOptions {
        freeze: args.freeze,
        choose_by_validation: true,
        patience: args.patience,
        ..session.train_options(TrainOptions::default(), Some(args.epochs), Some(args.lr))
    };
    session::execute(
        "finetune",
        session,
        device,
        data,
        Start::Checkpoint(&args.from),
        options,
    )
}

/// The MNIST validation split (fraction, seed). The starting checkpoint has usually trained on
/// MNIST's training images; validating on images it learned would reward memorisation, so when
/// its run held a validation split out (`train --val-split`), the same images are held out here.
fn mnist_validation(args: &FinetuneArgs) -> (f64, u64) {
    let parent = run::config_beside(&args.from).filter(|c| c.data.kind == "mnist");
    let parent_split = parent
        .as_ref()
        .and_then(|c| Some((c.data.validation_split?, c.data.split_seed?)));
    match (args.val_split, parent_split) {
        (None, Some(split)) => {
            info!(
                "validating on the starting run's held-out split ({:.0}% of the training images, seed {}), which it never trained on",
                100.0 * split.0,
                split.1
            );
            split
        }
        (Some(fraction), Some(split)) if (fraction, args.session.seed) != split => {
            warn!(
                "--val-split {fraction} with seed {} differs from the starting run's held-out split ({}, seed {}): some validation images were trained on",
                args.session.seed, split.0, split.1
            );
            (fraction, args.session.seed)
        }
        (fraction, None) => {
            warn!(
                "{} was trained without a held-out validation split (train --val-split): the validation images were trained on, so validation accuracy rewards memorisation",
                args.from.display()
            );
            (
                fraction.unwrap_or(DEFAULT_VALIDATION_SPLIT),
                args.session.seed,
            )
        }
        (Some(fraction), Some(_)) => (fraction, args.session.seed),
    }
}

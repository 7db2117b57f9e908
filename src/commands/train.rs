//! `mnist-cnn train`: train the tutorial CNN from scratch and leave a run folder behind.

use super::session::{self, RunData, SessionArgs, Start};
use crate::model::Architecture;
use crate::train::{Epochs, Recipe};
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The settings to start from: `tutorial` (the Keras tutorial: 10 epochs, batch 32, Adam
    /// 1e-3) or `fast` (99% in the least training time: 1.3 epochs, batch 128, one-cycle
    /// schedule peaking at 1e-2, label smoothing 0.1). Flags given explicitly override it.
    #[arg(long, value_enum, default_value_t = Recipe::Tutorial)]
    pub recipe: Recipe,

    /// Passes over the training set; a fraction (1.5) ends with part of an epoch [default: 10,
    /// or the recipe's].
    #[arg(long)]
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

    #[command(flatten)]
    pub session: SessionArgs,
}

pub fn run(args: &TrainArgs) -> Result<()> {
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
        Start::Fresh(Architecture::Tutorial),
        options,
    )
}

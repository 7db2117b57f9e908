//! `mnist-cnn train`: train the tutorial CNN from scratch and leave a run folder behind.

use super::session::{self, RunData, SessionArgs, Start};
use crate::model::Architecture;
use anyhow::Result;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Passes over the training set.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one)]
    pub epochs: usize,

    /// Adam's learning rate (the peak rate under a schedule).
    #[arg(long, default_value_t = 1e-3, value_parser = super::positive_finite, allow_negative_numbers = true)]
    pub lr: f64,

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
    let options = session.train_options(args.epochs, args.lr);
    session::execute(
        "train",
        session,
        device,
        data,
        Start::Fresh(Architecture::Tutorial),
        options,
    )
}

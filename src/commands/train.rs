//! `mnist-cnn train`: train the tutorial CNN and leave a run folder behind.

use crate::data::Mnist;
use crate::device::{device_name, DeviceChoice};
use crate::model::{Architecture, Classifier};
use crate::run::{self, FinalMetrics, RunConfig, RunDir, RunStatus};
use crate::runtime;
use crate::train::{self, TrainOptions};
use anyhow::{ensure, Result};
use serde::Serialize;
use std::path::PathBuf;
use tracing::info;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Folder holding the four MNIST idx files (see `mnist-cnn data`).
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,

    /// Run folder for model.ot, metrics.jsonl and config.json [default: runs/<UTC timestamp>].
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,

    /// Replace the run already in --out.
    #[arg(long)]
    pub overwrite: bool,

    /// Passes over the training set.
    #[arg(long, default_value_t = 10, value_parser = super::at_least_one)]
    pub epochs: usize,

    /// Images per training step.
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    pub batch_size: usize,

    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3, value_parser = super::positive_finite, allow_negative_numbers = true)]
    pub lr: f64,

    /// auto (CUDA when available), cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,

    /// Seed of the weight initialisation and of each epoch's shuffle; on the CPU the same seed
    /// (and thread count) gives bit-identical weights.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// libtorch intra-op threads (default: libtorch's choice, one per core).
    #[arg(long)]
    pub threads: Option<usize>,

    /// Train on the first N training images only (quick trials); the test set stays whole.
    #[arg(long, value_parser = super::at_least_one)]
    pub limit: Option<usize>,

    /// Print a JSON summary on stdout when done.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` summary of a finished run.
#[derive(Debug, Serialize)]
struct TrainSummary<'a> {
    run_dir: &'a std::path::Path,
    model: PathBuf,
    #[serde(flatten)]
    final_metrics: &'a FinalMetrics,
}

pub fn run(args: &TrainArgs) -> Result<()> {
    runtime::apply_threads(args.threads)?;
    let device = args.device.resolve()?;
    let mnist = Mnist::load(&args.data)?;
    let mut train_split = mnist.train;
    if let Some(limit) = args.limit {
        ensure!(
            limit <= train_split.len(),
            "--limit {limit}: the training set has only {} images",
            train_split.len()
        );
        train_split = train_split.first(limit);
    }
    let train_split = train_split.to_device(device);
    let test_split = mnist.test.to_device(device);
    let run_dir = RunDir::create(args.out.as_deref(), args.overwrite)?;

    let options = TrainOptions {
        epochs: args.epochs,
        batch_size: args.batch_size,
        learning_rate: args.lr,
        seed: args.seed,
    };
    tch::manual_seed(args.seed as i64);
    let model = Classifier::new(Architecture::Tutorial, device);
    let mut config = RunConfig {
        command: "train".to_owned(),
        status: RunStatus::Running,
        architecture: model.architecture,
        parameters: model.parameter_count(),
        options: options.clone(),
        optimizer: "adam".to_owned(),
        loss: "cross_entropy".to_owned(),
        device: device_name(device),
        threads: tch::get_num_threads(),
        data_dir: args.data.clone(),
        train_examples: train_split.len(),
        test_examples: test_split.len(),
        mnist_cnn_version: env!("CARGO_PKG_VERSION").to_owned(),
        tch_version: runtime::TCH_VERSION.to_owned(),
        libtorch_version: runtime::LIBTORCH_VERSION.to_owned(),
        started_at: run::now_utc(),
        finished_at: None,
        final_metrics: None,
    };
    run_dir.write_config(&config)?;
    info!(
        "training the {} CNN ({} parameters) on {} with {} thread(s): {} epochs, batch {}, Adam lr {}, seed {}, {} training images; run folder {}",
        config.architecture,
        config.parameters,
        config.device,
        config.threads,
        options.epochs,
        options.batch_size,
        options.learning_rate,
        options.seed,
        config.train_examples,
        run_dir.path().display()
    );

    let mut completed = Vec::new();
    let records = train::fit(&model, &train_split, &test_split, &options, |record, _| {
        completed.push(record.clone());
        model.save(&run_dir.model_path())?;
        run_dir.write_metrics(&completed)
    })?;

    let final_metrics = FinalMetrics::from_records(&records).expect("at least one epoch");
    config.status = RunStatus::Completed;
    config.finished_at = Some(run::now_utc());
    config.final_metrics = Some(final_metrics.clone());
    run_dir.write_config(&config)?;
    info!("run saved in {}", run_dir.path().display());
    if args.json {
        super::print_json(&TrainSummary {
            run_dir: run_dir.path(),
            model: run_dir.model_path(),
            final_metrics: &final_metrics,
        })
    } else {
        println!(
            "test accuracy {:.2}% (loss {:.4}) after {} epochs, {:.1} s of training; model: {}",
            100.0 * final_metrics.test_accuracy,
            final_metrics.test_loss,
            final_metrics.epochs_completed,
            final_metrics.train_seconds,
            run_dir.model_path().display()
        );
        Ok(())
    }
}

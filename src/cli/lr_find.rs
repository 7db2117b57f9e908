//! `mnist-cnn lr-find`: the learning-rate range test. A fresh model (or `--from` a checkpoint)
//! trains for `--steps` batches while the rate rises exponentially from `--start` to `--end`;
//! the smoothed loss is recorded until it diverges, and the rate where it fell fastest is
//! suggested. Nothing is saved but the chart.

use super::args::DeviceArgs;
use super::output::print_json;
use super::values;
use crate::data::{self, Mnist};
use crate::fsutil;
use crate::io::checkpoint;
use crate::io::inputs::Inputs;
use crate::model::Classifier;
use crate::nn::Architecture;
use crate::optim::OptimizerKind;
use crate::report::lr_find::lr_find_png;
use crate::train::lr_find::{find_learning_rate, RangeTest, RateFinding};
use crate::train::{rules, TrainOptions};
use anyhow::{ensure, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct LrFindArgs {
    /// Folder holding the four MNIST idx files.
    #[arg(long, default_value = data::DEFAULT_DIR)]
    pub data: PathBuf,

    /// The network to start fresh [default: tutorial].
    #[arg(long, value_name = "ARCH", conflicts_with = "from")]
    pub arch: Option<Architecture>,

    /// Start from this checkpoint (or run folder) instead (its weights change in memory only).
    #[arg(long, value_name = "PATH")]
    pub from: Option<PathBuf>,

    /// Images per step.
    #[arg(long, default_value_t = 32, value_parser = values::number(rules::BATCH_SIZE))]
    pub batch_size: usize,

    /// The optimizer [default: adam].
    #[arg(long, value_parser = values::choice::<OptimizerKind>())]
    pub optimizer: Option<OptimizerKind>,

    /// SGD's momentum.
    #[arg(long, value_name = "X", value_parser = values::number(rules::MOMENTUM))]
    pub momentum: Option<f64>,

    /// The lowest rate of the sweep.
    #[arg(long, default_value_t = 1e-7, value_parser = values::number(rules::LEARNING_RATE))]
    pub start: f64,

    /// The highest rate of the sweep.
    #[arg(long, default_value_t = 10.0, value_parser = values::number(rules::LEARNING_RATE))]
    pub end: f64,

    /// Batches in the sweep (at least 10, at most 10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub steps: u64,

    /// Seed of the fresh weights and the batches.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Where to write the chart.
    #[arg(long, value_name = "FILE", default_value = "lr_find.png")]
    pub out: PathBuf,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Print one JSON object on stdout (every point, and the suggestions).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &LrFindArgs) -> Result<()> {
    ensure!(args.start < args.end, "--start must be below --end");
    let mut inputs = Inputs::new().mnist(&args.data);
    if let Some(from) = &args.from {
        inputs = inputs.checkpoint(from);
    }
    inputs.refuse(&args.out, "--out")?;
    let device = args.compute.resolve()?;
    let precision = args.compute.precision(device)?;
    let options = TrainOptions {
        batch_size: args.batch_size,
        seed: args.seed,
        optimizer: args.optimizer.unwrap_or_default(),
        momentum: args.momentum.unwrap_or(0.0),
        ..TrainOptions::default()
    };
    options.validate()?;
    let mut model = match &args.from {
        Some(path) => checkpoint::load(path, device)?,
        None => {
            tch::manual_seed(args.seed as i64);
            Classifier::new(args.arch.unwrap_or(Architecture::Tutorial), device)
        }
    };
    model.set_precision(precision);
    let train = Mnist::load(&args.data)?.train.to_device(device);
    let range = RangeTest {
        start: args.start,
        end: args.end,
        steps: args.steps as usize,
        ..RangeTest::default()
    };
    let finding = find_learning_rate(&model, &train, &options, range)?;
    let title = format!(
        "{} at batch {}, {}: suggested {:.1e}",
        model.architecture(),
        args.batch_size,
        options.optimizer,
        finding.suggestion
    );
    fsutil::write_bytes_atomically(&args.out, &lr_find_png(&finding, &title)?)?;
    if args.json {
        return print_json(&finding);
    }
    print_finding(&finding, args);
    Ok(())
}

fn print_finding(finding: &RateFinding, args: &LrFindArgs) {
    let last = finding.points.last().expect("points were recorded");
    println!(
        "swept {} steps from {:.0e} to {:.1e}{}",
        finding.points.len(),
        args.start,
        last.learning_rate,
        if finding.diverged {
            " (the loss diverged there)"
        } else {
            ""
        }
    );
    println!(
        "suggested learning rate: {:.1e} (the steepest descent of the smoothed loss); the \
         minimum divided by ten: {:.1e}",
        finding.suggestion, finding.minimum_over_ten
    );
    println!("chart: {}", args.out.display());
}

//! `mnist-cnn eval`: test-set accuracy, loss, per-class precision/recall/F1 and the confusion
//! matrix of a checkpoint or an ensemble of them, on the MNIST test set or a labelled picture
//! folder.

use super::args::DeviceArgs;
use super::output::print_json;
use crate::data::{self, images, Mnist};
use crate::eval::{self, ClassificationReport};
use crate::io::checkpoint;
use anyhow::Result;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate (a run folder, its `model.ot`, or a `.safetensors` state dict;
    /// the architecture comes with it). Given several times, the models answer as an ensemble:
    /// the mean of their probabilities.
    #[arg(long = "model", value_name = "PATH", required = true)]
    pub models: Vec<PathBuf>,

    /// Test-time augmentation: also show each model the picture turned 7° each way, and
    /// average the three answers.
    #[arg(long)]
    pub tta: bool,

    /// Folder holding the MNIST idx files.
    #[arg(long, default_value = data::DEFAULT_DIR)]
    pub data: PathBuf,

    /// Evaluate on labelled pictures laid out as DIR/0/*, …, DIR/9/* instead of the MNIST test
    /// set.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// The `--json` output: the report, and what answered.
#[derive(Serialize)]
struct EvalOutput<'a> {
    models: &'a [PathBuf],
    architectures: Vec<String>,
    tta: bool,
    #[serde(flatten)]
    report: ClassificationReport,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let precision = args.compute.precision(device)?;
    let ensemble =
        checkpoint::load_ensemble(&args.models, device, args.tta)?.with_precision(precision);
    let split = match &args.images {
        Some(dir) => images::load_folder(dir)?.split,
        None => Mnist::load(&args.data)?.test,
    };
    let report = eval::evaluate(&ensemble, &split)?.report();
    if args.json {
        print_json(&EvalOutput {
            models: &args.models,
            architectures: ensemble.architectures(),
            tta: args.tta,
            report,
        })
    } else {
        if args.models.len() > 1 || args.tta {
            println!("ensemble: {}", ensemble.describe());
        }
        print!("{report}");
        Ok(())
    }
}

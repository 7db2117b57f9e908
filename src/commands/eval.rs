//! `mnist-cnn eval`: test-set accuracy, loss, per-class precision/recall/F1 and the confusion
//! matrix of a checkpoint, on the MNIST test set or a labelled picture folder.

use crate::data::{images, Mnist};
use crate::metrics;
use crate::model::{Architecture, Classifier};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    /// The checkpoint to evaluate (`model.ot` from a run, or a `.safetensors` state dict).
    #[arg(long, value_name = "PATH")]
    pub model: PathBuf,

    /// Folder holding the MNIST idx files.
    #[arg(long, default_value = "data/mnist")]
    pub data: PathBuf,

    /// Evaluate on labelled pictures laid out as DIR/0/*, …, DIR/9/* instead of the MNIST test
    /// set.
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    #[command(flatten)]
    pub compute: super::DeviceArgs,

    /// Print one JSON object on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let model = Classifier::load(Architecture::Tutorial, &args.model, device)
        .with_context(|| format!("--model {}", args.model.display()))?;
    let split = match &args.images {
        Some(dir) => images::load_folder(dir)?.split,
        None => Mnist::load(&args.data)?.test,
    };
    let report = metrics::evaluate(&model, &split)?.report();
    if args.json {
        super::print_json(&report)
    } else {
        print!("{report}");
        Ok(())
    }
}

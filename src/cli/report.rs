//! `mnist-cnn report RUN_DIR`: curves, confusion matrix, mistakes, filters and report.html for a
//! run folder (also run at the end of `train` and `finetune`).

use super::args::DeviceArgs;
use super::output::print_json;
use crate::io::{checkpoint, RunFolder};
use crate::report::{self, examples::ReportData};
use anyhow::{Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The run folder (from train or finetune) to report on; the files are written into it.
    #[arg(value_name = "RUN_DIR")]
    pub run_dir: PathBuf,

    /// Folder holding the MNIST idx files, for the confusion matrix and the mistakes on the test
    /// set [default: the run's own MNIST folder, from its config.json].
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,

    /// Evaluate on labelled pictures laid out as DIR/0/*, …, DIR/9/* instead [default: the
    /// run's picture folder when it was trained on one].
    #[arg(long, value_name = "DIR", conflicts_with = "data")]
    pub images: Option<PathBuf>,

    #[command(flatten)]
    pub compute: DeviceArgs,

    /// Print a JSON summary (the files written, the accuracy) on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let precision = args.compute.precision(device)?;
    let folder = RunFolder::open(&args.run_dir);
    let config = folder.read_config()?;
    let data = ReportData::choose(args.data.as_deref(), args.images.as_deref(), &config);
    let model_path = folder.model_path();
    let mut model = checkpoint::load(&model_path, device)
        .with_context(|| format!("the run's checkpoint {}", model_path.display()))?;
    model.set_precision(precision);
    let summary = report::write_for_folder(&args.run_dir, &data, &model)?;
    if args.json {
        return print_json(&summary);
    }
    println!(
        "report for {}: {:.2}% on {}; {}",
        summary.run_dir.display(),
        100.0 * summary.accuracy,
        summary.evaluated_on,
        summary
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

//! `mnist-cnn report RUN_DIR`: curves, confusion matrix, mistakes, filters and report.html for a
//! run folder (also run at the end of `train` and `finetune`).

use crate::data::{images, Mnist, Split};
use crate::model::Classifier;
use crate::report::{self, ReportSummary};
use crate::run::{RunConfig, MODEL_FILE};
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

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
    pub compute: super::DeviceArgs,

    /// Print a JSON summary (the files written, the accuracy) on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The data a report evaluates on.
pub enum ReportData {
    Mnist(PathBuf),
    Images(PathBuf),
}

impl ReportData {
    /// What the flags ask for, else what the run was trained on.
    pub fn choose(data: Option<&Path>, images: Option<&Path>, config: &RunConfig) -> Self {
        match (data, images) {
            (_, Some(dir)) => Self::Images(dir.to_owned()),
            (Some(dir), None) => Self::Mnist(dir.to_owned()),
            (None, None) if config.data.kind == "images" => {
                Self::Images(config.data.source.clone())
            }
            (None, None) => Self::Mnist(config.data.source.clone()),
        }
    }

    /// Loads the split and says what it is.
    pub fn load(&self) -> Result<(Split, String)> {
        Ok(match self {
            Self::Mnist(dir) => {
                let test = Mnist::load(dir)
                    .with_context(|| {
                        format!(
                            "the report evaluates on the MNIST test set in {} (choose another \
                             folder with --data)",
                            dir.display()
                        )
                    })?
                    .test;
                let description = mnist_test_description(test.len());
                (test, description)
            }
            Self::Images(dir) => {
                let folder = images::load_folder(dir)?;
                let description = format!(
                    "the pictures in {} ({} pictures)",
                    dir.display(),
                    folder.split.len()
                );
                (folder.split, description)
            }
        })
    }
}

pub fn run(args: &ReportArgs) -> Result<()> {
    let device = args.compute.resolve()?;
    let config = report::read_config(&args.run_dir)?;
    let data = ReportData::choose(args.data.as_deref(), args.images.as_deref(), &config);
    let model_path = args.run_dir.join(MODEL_FILE);
    let model = Classifier::load(&model_path, device)
        .with_context(|| format!("the run's checkpoint {}", model_path.display()))?;
    let summary = write(&args.run_dir, &data, &model)?;
    if args.json {
        return super::print_json(&summary);
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

/// How a report names the MNIST test set it was computed on.
pub fn mnist_test_description(digits: usize) -> String {
    format!("the MNIST test set ({digits} digits)")
}

/// Loads `data` and writes the report of `model` into `run_dir`.
pub fn write(run_dir: &Path, data: &ReportData, model: &Classifier) -> Result<ReportSummary> {
    let (split, description) = data.load()?;
    report::write_report(run_dir, model, &split, &description)
}

//! What commands print on stdout: one JSON line with --json, else a short text line; and what a
//! finished training run prints and reports.

use super::args::SessionArgs;
use crate::eval::Scores;
use crate::run::CompletedRun;
use crate::train::FinalMetrics;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Prints a value as one line of JSON on stdout (the `--json` output of every command).
pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// The `--json` summary of a finished run.
#[derive(Debug, Serialize)]
struct RunSummary<'a> {
    run_dir: &'a Path,
    model: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Scores>,
    #[serde(flatten)]
    final_metrics: &'a FinalMetrics,
}

/// Writes the report of a finished `train` or `finetune` run (unless --no-report) and prints
/// its outcome.
pub fn finish_run(run: &CompletedRun, args: &SessionArgs) -> Result<()> {
    if !args.no_report {
        crate::report::write_after_run(run);
    }
    let metrics = &run.final_metrics;
    if args.json {
        return print_json(&RunSummary {
            run_dir: run.folder.path(),
            model: run.folder.model_path(),
            before: run.config.before,
            final_metrics: metrics,
        });
    }
    println!(
        "{} from epoch {} of {}, {:.1} s of training; model: {}",
        metrics.scores.describe(),
        metrics.chosen_epoch,
        metrics.epochs_completed,
        metrics.train_seconds,
        run.folder.model_path().display()
    );
    Ok(())
}

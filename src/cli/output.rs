//! What commands print on stdout: one JSON line with --json, else a short text line; and what a
//! training run writes and prints after it ends.

use super::args::SessionArgs;
use crate::eval::Scores;
use crate::report;
use crate::run::{self, AfterRun, CompletedRun, NothingAfter, RunFigures, RunPlan};
use crate::train::FinalMetrics;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Prints a value as one line of JSON on stdout (the `--json` output of every command).
pub fn print_json(value: &impl Serialize) -> Result<()> {
    println!("{}", serde_json::to_string(value)?);
    Ok(())
}

/// A path for a line of text output: as it is, or quoted with escapes when it holds a control
/// character (a newline in a file name would otherwise forge a line of output).
pub fn shown_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text.chars().any(char::is_control) {
        format!("{text:?}")
    } else {
        text.into_owned()
    }
}

/// A message for a line of text output, its control characters escaped (`\n`): an error
/// that names a file with a newline in its name stays on one line.
pub fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
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

/// Runs `plan`, then writes its report (unless --no-report), whose figures end the run's
/// TensorBoard log, and prints the run's outcome.
pub fn run_and_finish(plan: RunPlan, args: &SessionArgs) -> Result<()> {
    let run = match args.no_report {
        true => run::execute(plan, &NothingAfter)?,
        false => run::execute(plan, &Report)?,
    };
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

/// After a run: its report, written into the run folder.
struct Report;

impl AfterRun for Report {
    fn after(&self, run: &CompletedRun) -> Option<RunFigures> {
        report::write_after_run(run).map(|summary| RunFigures {
            figures: summary.figures,
            macro_avg: summary.macro_avg,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(shown_path(Path::new("digits/7.png")), "digits/7.png");
        assert_eq!(
            shown_path(Path::new("a.png\nb.png: 3 (99.0%)")),
            "\"a.png\\nb.png: 3 (99.0%)\""
        );
        assert_eq!(one_line("cannot decode a\nb"), "cannot decode a\\nb");
    }
}

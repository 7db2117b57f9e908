//! What commands print on stdout: one JSON line with --json, else a short text line; and what a
//! finished training run prints and reports.

use super::args::SessionArgs;
use crate::eval::Scores;
use crate::io::tensorboard::{FinalFigures, Picture, RunLog};
use crate::report::{self, ReportSummary};
use crate::run::CompletedRun;
use crate::train::FinalMetrics;
use anyhow::Result;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tracing::warn;

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

/// Writes the report of a finished `train` or `finetune` run (unless --no-report), ends its
/// TensorBoard log, and prints its outcome.
pub fn finish_run(mut run: CompletedRun, args: &SessionArgs) -> Result<()> {
    let report = match args.no_report {
        true => None,
        false => report::write_after_run(&run),
    };
    if let Some(mut log) = run.tensorboard.take() {
        // The run is complete and saved: a log that cannot be ended is a warning.
        if let Err(err) = end_tensorboard(&mut log, &run, report.as_ref()) {
            warn!("{}: {err:#}", log.path().display());
        }
    }
    let run = &run;
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

/// Logs the delivered model's figures and the report's confusion matrix and mistakes.
fn end_tensorboard(
    log: &mut RunLog,
    run: &CompletedRun,
    report: Option<&ReportSummary>,
) -> Result<()> {
    let tags = [
        (report::CONFUSION_FILE, "final/confusion_matrix"),
        (report::MISTAKES_FILE, "final/mistakes"),
    ];
    let pictures: Vec<Picture> = report
        .map(|r| r.pictures.as_slice())
        .unwrap_or_default()
        .iter()
        .filter_map(|drawn| {
            let (_, tag) = tags.iter().find(|(file, _)| *file == drawn.file)?;
            Some(Picture {
                tag,
                png: drawn.png.clone(),
            })
        })
        .collect();
    log.finish(&FinalFigures {
        epoch: run.final_metrics.epochs_completed,
        metrics: &run.final_metrics,
        macro_avg: report.map(|r| &r.macro_avg),
        pictures: &pictures,
    })
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

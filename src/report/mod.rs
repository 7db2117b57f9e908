//! The run report: curves, confusion matrix, confident mistakes and first-layer filters as
//! PNG figures, and one self-contained `report.html` holding them with the run's tables.

mod canvas;
mod charts;
pub mod examples;
mod gallery;
mod html;
pub mod lr_find;

use crate::data::Split;
use crate::eval;
use crate::eval::metrics::MacroAverages;
use crate::io::figure::Figure;
use crate::io::run_folder::RunFolder;
use crate::model::Classifier;
use crate::run::CompletedRun;
use crate::train::ScheduleClock;
use anyhow::{ensure, Context, Result};
use examples::{mnist_test_description, ReportData};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind};
use tracing::{info, warn};

pub use charts::{curves_size, CONFUSION_SIZE, PANEL_SIZE};
pub use gallery::{FILTERS_SIZE, MISTAKES_SIZE};

/// The report's files, listed with the run folder's others (see [`crate::io::run_folder`]).
pub use crate::io::run_folder::{
    CONFUSION_FILE, CURVES_FILE, FILTERS_FILE, HTML_FILE, MISTAKES_FILE,
};

/// What the report was computed on and what it wrote.
#[derive(Debug, Serialize)]
pub struct ReportSummary {
    pub run_dir: PathBuf,
    /// The data the confusion matrix and mistakes come from.
    pub evaluated_on: String,
    pub accuracy: f64,
    /// Macro-averaged precision, recall and F1 on the same data.
    #[serde(rename = "macro")]
    pub macro_avg: MacroAverages,
    pub mistakes: usize,
    pub files: Vec<PathBuf>,
    /// The figures drawn, each with its TensorBoard tag (for the run's log).
    #[serde(skip)]
    pub figures: Vec<Figure>,
}

/// Reads the run folder's config.json and metrics.jsonl, evaluates `model` on `data` (described
/// by `data_description` in the report), and writes the four pictures and report.html.
pub fn write_report(
    run_dir: &Path,
    model: &Classifier,
    data: &Split,
    data_description: &str,
) -> Result<ReportSummary> {
    let folder = RunFolder::open(run_dir);
    let config = folder.read_config()?;
    let records = folder.read_metrics()?;
    ensure!(
        !records.is_empty(),
        "{}: no epoch recorded yet",
        folder.metrics_path().display()
    );
    let evaluation = eval::evaluate(model, data)?;
    let report = evaluation.report();
    let mistakes = Mistakes::of(&evaluation, data)?;
    let (clock, steps_per_epoch) =
        ScheduleClock::of_run(&config.options, config.data.train_examples);
    let drawn = Drawn {
        records: &records,
        learning_rates: charts::rate_points(&records, &clock, steps_per_epoch),
        chosen_epoch: config.final_metrics.as_ref().map(|m| m.chosen_epoch),
        report: &report,
        mistakes: &mistakes,
        examples: data.len(),
        data_description,
    };
    let figures = drawn.figures(model)?;
    let mut files = Vec::new();
    for figure in &figures {
        let path = run_dir.join(figure.file);
        crate::fsutil::write_bytes_atomically(&path, &figure.png)?;
        files.push(path);
    }
    let page = html::page(&html::PageInputs {
        run_dir,
        config: &config,
        records: &records,
        report: &report,
        data_description,
        figures: &figures,
    })?;
    let html_path = run_dir.join(HTML_FILE);
    crate::fsutil::write_bytes_atomically(&html_path, page.as_bytes())?;
    files.push(html_path);
    Ok(ReportSummary {
        run_dir: run_dir.to_owned(),
        evaluated_on: data_description.to_owned(),
        accuracy: report.accuracy,
        macro_avg: report.macro_avg,
        mistakes: mistakes.count,
        files,
        figures,
    })
}

/// The model's mistakes on the data: how many, and the most confident ones to show.
struct Mistakes {
    count: usize,
    shown: Vec<gallery::Mistake>,
}

impl Mistakes {
    fn of(evaluation: &eval::Evaluation, data: &Split) -> Result<Self> {
        let truth = data.label_vec();
        let predictions = &evaluation.predictions;
        let count = truth
            .iter()
            .zip(predictions)
            .filter(|(t, p)| t != p)
            .count();
        let shown = gallery::most_confident_mistakes(
            &truth,
            predictions,
            &evaluation.confidences,
            gallery::MISTAKE_COLUMNS * gallery::MISTAKE_ROWS,
        );
        let images = data.images.to_device(Device::Cpu).to_kind(Kind::Float);
        let shown = shown
            .iter()
            .map(|&i| {
                Ok(gallery::Mistake {
                    pixels: Vec::<f32>::try_from(images.get(i as i64).flatten(0, -1))?,
                    truth: truth[i],
                    predicted: predictions[i],
                    probability: evaluation.confidences[i],
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { count, shown })
    }
}

/// What the report's figures are drawn from.
struct Drawn<'a> {
    records: &'a [crate::train::EpochRecord],
    /// The learning rate over training progress, as the curves draw it.
    learning_rates: Vec<(f64, f64)>,
    chosen_epoch: Option<usize>,
    report: &'a eval::metrics::ClassificationReport,
    mistakes: &'a Mistakes,
    examples: usize,
    data_description: &'a str,
}

impl Drawn<'_> {
    /// The four figures, in the order report.html shows them, each with its TensorBoard tag.
    fn figures(&self, model: &Classifier) -> Result<Vec<Figure>> {
        let description = self.data_description;
        let accuracy = format!("{:.2}%", 100.0 * self.report.accuracy);
        let confusion_title = format!(
            "Confusion matrix: {accuracy} of {} digits right",
            self.examples
        );
        let mistakes = &self.mistakes;
        Ok(vec![
            Figure {
                file: CURVES_FILE,
                tag: None,
                png: charts::curves(self.records, self.chosen_epoch, self.learning_rates.clone())?
                    .to_png()?,
                caption: "Loss and accuracy per epoch, and the learning rate through training \
                          when it changed (the dashed line marks the epoch whose weights were \
                          kept)"
                    .to_owned(),
            },
            Figure {
                file: CONFUSION_FILE,
                tag: Some("final/confusion_matrix"),
                png: charts::confusion(&self.report.confusion_matrix, &confusion_title)?
                    .to_png()?,
                caption: format!(
                    "Confusion matrix on {description}: rows are the true digit, columns the \
                     prediction; blue shades the recall, red the mistakes"
                ),
            },
            Figure {
                file: MISTAKES_FILE,
                tag: Some("final/mistakes"),
                png: gallery::mistakes(&mistakes.shown, mistakes.count, self.examples)?.to_png()?,
                caption: format!("The mistakes made with the most confidence on {description}"),
            },
            Figure {
                file: FILTERS_FILE,
                tag: None,
                png: gallery::filters(&first_layer_filters(model)?, 3)?.to_png()?,
                caption: "The first convolution's filters (blue negative, red positive)".to_owned(),
            },
        ])
    }
}

/// Loads `data` and writes the report of `model` into `run_dir`.
pub fn write_for_folder(
    run_dir: &Path,
    data: &ReportData,
    model: &Classifier,
) -> Result<ReportSummary> {
    let split = data.load()?;
    write_report(run_dir, model, &split.split, &split.description)
}

/// Writes the report of a run that has just finished, from the model and data still in memory
/// (the model holds the delivered weights, those of model.ot); a picture-folder run is reported
/// on the whole folder, as `mnist-cnn report` does. The run itself is complete and saved by
/// then, so a report that cannot be written is a warning that says how to retry, not a failed
/// run (and no summary).
pub fn write_after_run(run: &CompletedRun) -> Option<ReportSummary> {
    let run_dir = run.folder.path();
    let written = match &run.test {
        Some(test) => write_report(
            run_dir,
            &run.model,
            test,
            &mnist_test_description(test.len()),
        ),
        None => write_for_folder(run_dir, &ReportData::of_run(&run.config), &run.model),
    };
    match written {
        Ok(summary) => {
            info!("report: {}", summary.run_dir.join(HTML_FILE).display());
            Some(summary)
        }
        Err(err) => {
            warn!(
                "no report: {err:#} (retry with `mnist-cnn report {}`)",
                run_dir.display()
            );
            None
        }
    }
}

/// The first convolution's weights, one row-major 3×3 filter per output channel.
fn first_layer_filters(model: &Classifier) -> Result<Vec<Vec<f32>>> {
    let weights = model.named_parameters();
    let name = model.architecture().first_filters();
    let conv1 = weights
        .get(&name)
        .with_context(|| format!("the model has no {name}"))?;
    let size = conv1.size();
    ensure!(
        size.len() == 4 && size[1] == 1,
        "{name} has shape {size:?}, expected [filters, 1, h, w]"
    );
    (0..size[0])
        .map(|f| Ok(Vec::<f32>::try_from(conv1.get(f).flatten(0, -1))?))
        .collect()
}

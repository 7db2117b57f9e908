//! `report`: the pictures and report.html written at the end of train and finetune and by
//! `mnist-cnn report`, and its errors on damaged run folders.

use crate::common::*;
use base64::Engine;
use std::fs;
use std::path::Path;

const PICTURES: [&str; 4] = ["curves.png", "confusion.png", "mistakes.png", "filters.png"];

fn png_size(path: &Path) -> (u32, u32) {
    let picture = image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (picture.width(), picture.height())
}

/// The PNG pictures embedded in report.html, decoded from their data URIs.
fn embedded_pictures(html: &str) -> Vec<Vec<u8>> {
    html.split("src=\"data:image/png;base64,")
        .skip(1)
        .map(|rest| {
            let data = &rest[..rest.find('"').unwrap()];
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap()
        })
        .collect()
}

/// The checks every report must pass: the five files, PNG sizes, and a page that embeds every
/// picture and needs nothing from elsewhere.
fn assert_complete_report(run: &Path, curves_panels: u32) {
    let names = file_names(run);
    for file in PICTURES.iter().chain(&["report.html"]) {
        assert!(
            names.contains(&file.to_string()),
            "{file} missing: {names:?}"
        );
    }
    assert_eq!(
        png_size(&run.join("curves.png")),
        (600 * curves_panels, 450)
    );
    assert_eq!(png_size(&run.join("confusion.png")), (720, 700));
    assert_eq!(png_size(&run.join("mistakes.png")), (1080, 670));
    assert_eq!(png_size(&run.join("filters.png")), (700, 470));

    let html = fs::read_to_string(run.join("report.html")).unwrap();
    let embedded = embedded_pictures(&html);
    let files: Vec<Vec<u8>> = PICTURES
        .iter()
        .map(|f| fs::read(run.join(f)).unwrap())
        .collect();
    assert_eq!(
        embedded, files,
        "report.html must embed exactly the four pictures"
    );
    // Offline: no reference to anything outside the page.
    for outside in ["http://", "https://", "<script", "<link", "@import", "url("] {
        assert!(!html.contains(outside), "report.html refers to {outside}");
    }
    assert_eq!(html.matches("<img ").count(), 4);
    for heading in ["precision", "recall", "Configuration", "train loss"] {
        assert!(html.contains(heading), "report.html lacks {heading}");
    }
}

#[test]
fn train_writes_the_report_and_finetune_shows_its_parent() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 200, 100);
    let runs = tempfile::tempdir().unwrap();
    let parent = runs.path().join("parent");
    let train = train_small(
        data.path(),
        &parent,
        &["--epochs", "2", "--val-split", "0.2"],
    );
    assert_success(&train);
    assert!(!stderr(&train).contains("no report"), "{}", stderr(&train));
    assert_complete_report(&parent, 2);
    let html = fs::read_to_string(parent.join("report.html")).unwrap();
    assert!(html.contains("the MNIST test set (100 digits)"));

    // A fine-tuning run with a schedule: a third panel for the learning rate, the parent and
    // the before/after table.
    let child = runs.path().join("child");
    let tuned = finetune(
        &parent.join("model.ot"),
        data.path(),
        &child,
        &[
            "--epochs",
            "2",
            "--schedule",
            "cosine",
            "--lr",
            "1e-3",
            "--batch-size",
            "16",
            "--device",
            "cpu",
        ],
    );
    assert_success(&tuned);
    assert_complete_report(&child, 3);
    let html = fs::read_to_string(child.join("report.html")).unwrap();
    assert!(html.contains("Fine-tuning") && html.contains("parent/model.ot"));
    assert!(html.contains("<th>before</th><th>after</th>"));
}

/// A run trained with --no-report on 100 generated digits (50 to test on).
struct RunWithoutReport {
    data: tempfile::TempDir,
    runs: tempfile::TempDir,
    run: std::path::PathBuf,
}

fn run_without_report(epochs: &str) -> RunWithoutReport {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 100, 50);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    assert_success(&train_small(
        data.path(),
        &run,
        &["--epochs", epochs, "--no-report"],
    ));
    RunWithoutReport { data, runs, run }
}

#[test]
fn report_rebuilds_the_files_and_no_report_skips_them() {
    let RunWithoutReport {
        data: _data,
        runs: _runs,
        run,
    } = run_without_report("1");
    assert_eq!(
        run_files(&run),
        [
            "config.json",
            "events.out.tfevents.*",
            "metrics.jsonl",
            "model.ot",
            "resume.ot"
        ]
    );

    let output = mnist_cnn(&["report", run.to_str().unwrap(), "--json"]);
    assert_success(&output);
    let summary = stdout_json(&output);
    assert_eq!(summary["files"].as_array().unwrap().len(), 5);
    assert!(summary["evaluated_on"]
        .as_str()
        .unwrap()
        .contains("50 digits"));
    let mistakes = summary["mistakes"].as_u64().unwrap();
    let accuracy = summary["accuracy"].as_f64().unwrap();
    assert_eq!(((1.0 - accuracy) * 50.0).round() as u64, mistakes);
    assert_complete_report(&run, 2);
}

#[test]
fn damaged_or_missing_run_files_are_clear_errors() {
    let RunWithoutReport {
        data,
        runs: _runs,
        run,
    } = run_without_report("2");
    let run_arg = run.to_str().unwrap();

    let metrics = run.join("metrics.jsonl");
    let good = fs::read_to_string(&metrics).unwrap();
    let first_line = good.lines().next().unwrap();
    fs::write(
        &metrics,
        format!("{first_line}\n{{\"epoch\": 2, \"train_lo"),
    )
    .unwrap();
    assert_clean_failure(
        &mnist_cnn(&["report", run_arg]),
        &["metrics.jsonl line 2", "not an epoch record"],
    );
    fs::write(&metrics, "").unwrap();
    assert_clean_failure(
        &mnist_cnn(&["report", run_arg]),
        &["metrics.jsonl", "no epoch"],
    );
    fs::remove_file(&metrics).unwrap();
    assert_clean_failure(&mnist_cnn(&["report", run_arg]), &["metrics.jsonl"]);
    fs::write(&metrics, good).unwrap();

    fs::write(run.join("config.json"), "{\"command\": ").unwrap();
    assert_clean_failure(&mnist_cnn(&["report", run_arg]), &["config.json"]);
    assert_clean_failure(
        &mnist_cnn(&["report", data.path().to_str().unwrap()]),
        &["config.json", "run folder"],
    );
    // Nothing half-written was left behind by the failures.
    assert!(!file_names(&run)
        .iter()
        .any(|f| f.ends_with(".png") || f.ends_with(".html")));
}

#[test]
fn a_run_whose_data_has_moved_says_which_flag_to_use() {
    let RunWithoutReport { data, runs, run } = run_without_report("1");
    let moved = runs.path().join("moved");
    fs::rename(data.path(), &moved).unwrap();
    let output = mnist_cnn(&["report", run.to_str().unwrap()]);
    assert_clean_failure(&output, &["--data"]);
    let again = mnist_cnn(&[
        "report",
        run.to_str().unwrap(),
        "--data",
        moved.to_str().unwrap(),
    ]);
    assert_success(&again);
}

//! Which epoch a run keeps: the best validation accuracy with ties broken by the lower
//! validation loss; never chosen on images the starting model trained on; `train` keeps the
//! last epoch in model.ot and the best one in best.ot, and stops on patience.

use crate::common::*;
use std::path::Path;

/// The epoch docs/training.md's rule picks from a run's metrics: the highest validation accuracy,
/// ties to the lower validation loss (epoch 0, the starting point, left out).
fn best_by_rule(run: &Path) -> (usize, usize) {
    let lines = read_json_lines(&run.join("metrics.jsonl"));
    let trained: Vec<_> = lines.iter().filter(|l| l["epoch"] != 0).collect();
    let top = trained
        .iter()
        .map(|l| l["validation_accuracy"].as_f64().unwrap())
        .fold(f64::MIN, f64::max);
    let tied: Vec<_> = trained
        .iter()
        .filter(|l| l["validation_accuracy"].as_f64().unwrap() == top)
        .collect();
    let best = tied
        .iter()
        .min_by(|a, b| {
            let (a, b) = (
                a["validation_loss"].as_f64().unwrap(),
                b["validation_loss"].as_f64().unwrap(),
            );
            a.partial_cmp(&b).unwrap()
        })
        .unwrap();
    (best["epoch"].as_u64().unwrap() as usize, tied.len())
}

#[test]
fn ties_in_validation_accuracy_go_to_the_lower_loss_and_seen_images_are_not_chosen_by() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 300, 30);
    // A parent that held out a validation split, and one that did not.
    let (held, plain) = (scratch.path().join("held"), scratch.path().join("plain"));
    assert_success(&train_small(
        &data,
        &held,
        &["--val-split", "0.2", "--no-report"],
    ));
    assert_success(&train_small(&data, &plain, &["--no-report"]));

    let tuned = scratch.path().join("tuned");
    let extra = ["--epochs", "5", "--lr", "1e-3", "--no-report"];
    assert_success(&finetune(&held.join("model.ot"), &data, &tuned, &extra));
    let config = read_json(&tuned.join("config.json"));
    assert_eq!(config["choose_by_validation"], true);
    let (rule, tied) = best_by_rule(&tuned);
    assert!(
        tied >= 2,
        "the patterns should saturate validation accuracy: {tied} epoch(s) at the top"
    );
    assert_eq!(config["final_metrics"]["chosen_epoch"], rule, "{config}");

    let seen = scratch.path().join("seen");
    let output = finetune(&plain.join("model.ot"), &data, &seen, &extra);
    assert_success(&output);
    assert!(
        stderr(&output).contains("delivers its last epoch"),
        "{}",
        stderr(&output)
    );
    let config = read_json(&seen.join("config.json"));
    assert_eq!(config["choose_by_validation"], false);
    assert_eq!(config["final_metrics"]["chosen_epoch"], 5);
}

#[test]
fn train_keeps_the_last_epoch_and_the_best_and_stops_on_patience() {
    let scratch = tempfile::tempdir().unwrap();
    let data = scratch.path().join("data");
    write_small_mnist(&data, 300, 30);
    let run = scratch.path().join("run");
    // A rate of ~0 cannot beat the first epoch: patience 1 stops after epoch 2.
    let output = train_small(
        &data,
        &run,
        &[
            "--val-split",
            "0.2",
            "--patience",
            "1",
            "--epochs",
            "6",
            "--lr",
            "1e-12",
            "--no-report",
        ],
    );
    assert_success(&output);
    let config = read_json(&run.join("config.json"));
    let finals = &config["final_metrics"];
    assert_eq!(finals["stopped_early"], true, "{config}");
    assert_eq!(finals["epochs_completed"], 2);
    assert_eq!(finals["chosen_epoch"], 2, "model.ot holds the last epoch");
    assert_eq!(finals["best_validation_epoch"], best_by_rule(&run).0);
    assert!(run.join("best.ot").is_file());

    let refused = train_small(&data, &scratch.path().join("x"), &["--patience", "2"]);
    assert_clean_failure(&refused, &["--patience", "--val-split"]);
    let refused = train_small(&data, &scratch.path().join("y"), &["--schedule", "plateau"]);
    assert_clean_failure(&refused, &["plateau", "--val-split"]);
}

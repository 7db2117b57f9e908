//! Interruptions and faults during training: Ctrl-C / SIGTERM, kill -9 at random moments, a
//! loss that stops being finite, and resuming a run bit for bit.

use crate::common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn spawn_train(args: &[&str]) -> Child {
    tool()
        .arg("train")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn send(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits until metrics.jsonl in `run` has `lines` epochs.
fn wait_for_epochs(run: &Path, lines: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::fs::read_to_string(run.join("metrics.jsonl")).map_or(0, |t| t.lines().count())
        < lines
    {
        assert!(
            Instant::now() < deadline,
            "no epoch {lines} within two minutes"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn tensors(path: &Path) -> BTreeMap<String, tch::Tensor> {
    tch::Tensor::load_multi(path).unwrap().into_iter().collect()
}

fn assert_same_tensors(a: &Path, b: &Path) {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, t) in &a {
        assert!(t.equal(&b[name]), "{name} differs");
    }
}

/// The metrics without the timings, which differ between runs.
fn metrics_without_timing(run: &Path) -> Vec<serde_json::Value> {
    read_json_lines(&run.join("metrics.jsonl"))
        .into_iter()
        .map(|mut line| {
            let object = line.as_object_mut().unwrap();
            object.remove("seconds");
            object.remove("images_per_second");
            line
        })
        .collect()
}

#[test]
fn ctrl_c_saves_the_last_epoch_and_resume_ends_bit_identical_to_an_uninterrupted_run() {
    let data = real_mnist_dir();
    let runs = tempfile::tempdir().unwrap();
    let (whole, cut) = (runs.path().join("whole"), runs.path().join("cut"));
    let args = |out: &Path| -> Vec<String> {
        [
            "--data",
            data.to_str().unwrap(),
            "--limit",
            "4000",
            "--val-split",
            "0.1",
            "--epochs",
            "3",
            "--schedule",
            "cosine",
            "--augment",
            "--ema",
            "0.99",
            "--seed",
            "4",
            "--device",
            "cpu",
            "--threads",
            "2",
            "--no-report",
            "--out",
            out.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec()
    };
    let uninterrupted = mnist_cnn(
        &std::iter::once("train".to_owned())
            .chain(args(&whole))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_success(&uninterrupted);

    // The same run, interrupted with Ctrl-C (SIGINT) once its first epoch is saved.
    let cut_args = args(&cut);
    let child = spawn_train(&cut_args.iter().map(String::as_str).collect::<Vec<_>>());
    wait_for_epochs(&cut, 1);
    send(&child, "-INT");
    let output = child.wait_with_output().unwrap();
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted by SIGINT"), "{err}");
    assert!(err.contains("--resume"), "says how to continue: {err}");
    assert_eq!(read_json(&cut.join("config.json"))["status"], "interrupted");
    let kept = read_json_lines(&cut.join("metrics.jsonl")).len();
    assert!((1..3).contains(&kept), "{kept} epochs kept");

    let resumed = mnist_cnn(&["train", "--resume", cut.to_str().unwrap(), "--no-report"]);
    assert_success(&resumed);
    assert_eq!(read_json(&cut.join("config.json"))["status"], "completed");
    assert_eq!(metrics_without_timing(&cut), metrics_without_timing(&whole));
    assert_same_tensors(&cut.join("model.ot"), &whole.join("model.ot"));
    assert_same_tensors(&cut.join("resume.ot"), &whole.join("resume.ot"));

    // A finished run can be extended; asking for no more epochs is an error.
    let again = mnist_cnn(&["train", "--resume", cut.to_str().unwrap()]);
    assert_clean_failure(&again, &["already completed 3 epochs", "--epochs"]);
    let mixed = mnist_cnn(&[
        "train",
        "--resume",
        cut.to_str().unwrap(),
        "--batch-size",
        "8",
    ]);
    assert_clean_failure(&mixed, &["own settings"]);
}

#[test]
fn sigterm_in_the_first_epoch_exits_143_and_leaves_nothing_half_written() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 4000, 100);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let child = spawn_train(&[
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--batch-size",
        "4",
        "--epochs",
        "5",
        "--threads",
        "1",
        "--device",
        "cpu",
    ]);
    // config.json is written before the first step.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !run.join("config.json").exists() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    send(&child, "-TERM");
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(143), "{}", stderr(&output));
    assert_eq!(read_json(&run.join("config.json"))["status"], "interrupted");
    let resume = mnist_cnn(&["train", "--resume", run.to_str().unwrap()]);
    assert_clean_failure(&resume, &["resume.ot", "never completed an epoch"]);
}

#[test]
fn kill_9_at_random_moments_leaves_only_complete_files() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 600, 100);
    let runs = tempfile::tempdir().unwrap();
    // Moments spread over the run: before the first epoch ends, between and during saves.
    for (attempt, delay_ms) in [150u64, 400, 700, 1000, 1300, 1700].iter().enumerate() {
        let run = runs.path().join(format!("run{attempt}"));
        let mut child = spawn_train(&[
            "--data",
            data.path().to_str().unwrap(),
            "--out",
            run.to_str().unwrap(),
            "--batch-size",
            "8",
            "--epochs",
            "50",
            "--threads",
            "1",
            "--device",
            "cpu",
        ]);
        std::thread::sleep(Duration::from_millis(*delay_ms));
        child.kill().unwrap();
        child.wait().unwrap();
        // Whatever is there must be whole: JSON that parses, checkpoints that load.
        if run.join("config.json").exists() {
            read_json(&run.join("config.json"));
        }
        if run.join("metrics.jsonl").exists() {
            mnist_cnn::io::run_folder::read_metrics(&run.join("metrics.jsonl")).unwrap();
        }
        for checkpoint in ["model.ot", "resume.ot"] {
            if run.join(checkpoint).exists() {
                tensors(&run.join(checkpoint));
            }
        }
        if run.join("resume.ot").exists() {
            let resumed = mnist_cnn(&[
                "train",
                "--resume",
                run.to_str().unwrap(),
                "--epochs",
                "2",
                "--no-report",
            ]);
            // Either it continues, or the run already has two epochs or more.
            let err = stderr(&resumed);
            assert!(
                resumed.status.success() || err.contains("already completed"),
                "{err}"
            );
        }
    }
}

#[test]
fn a_loss_that_stops_being_finite_stops_the_run_with_a_clear_error() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 800, 100);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let output = mnist_cnn(&[
        "train",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--lr",
        "1e30",
        "--batch-size",
        "8",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]);
    assert_clean_failure(&output, &["training loss became", "epoch 1", "--lr"]);
    assert_eq!(read_json(&run.join("config.json"))["status"], "failed");
    assert!(
        !run.join("model.ot").exists(),
        "no checkpoint of a diverged epoch"
    );
}

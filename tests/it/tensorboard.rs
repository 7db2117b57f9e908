//! The TensorBoard log of a run, read by TensorBoard's own reader (EventAccumulator, through
//! scripts/tensorboard_check.py in the virtualenv): every number of metrics.jsonl as an epoch
//! scalar, step scalars at the right steps, the final figures, the pictures and the
//! hyper-parameters; and a killed run resumed logs each step once, with the values of a run
//! never interrupted.

use crate::common::*;
use serde_json::Value;
use std::path::Path;

const EVENTS_PREFIX: &str = "events.out.tfevents.";

/// What EventAccumulator found in a run folder.
fn read_log(run: &Path) -> Value {
    let output = venv_script("tensorboard_check.py", &["dump", run.to_str().unwrap()]);
    serde_json::from_str(stdout(&output).lines().last().unwrap_or("")).unwrap()
}

/// The (step, value) pairs of `tag`.
fn series(log: &Value, tag: &str) -> Vec<(i64, f64)> {
    log["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar {tag} in {}", log["scalars"]))
        .iter()
        .map(|point| (point[0].as_i64().unwrap(), point[1].as_f64().unwrap()))
        .collect()
}

fn steps(log: &Value, tag: &str) -> Vec<i64> {
    series(log, tag).into_iter().map(|(step, _)| step).collect()
}

/// A value as the log stores it: single precision.
fn as_logged(value: f64) -> f64 {
    value as f32 as f64
}

fn event_files(run: &Path) -> Vec<String> {
    file_names(run)
        .into_iter()
        .filter(|name| name.starts_with(EVENTS_PREFIX))
        .collect()
}

/// The steps a run samples: every 50th of the run and the last of each epoch.
fn sampled_steps(steps_per_epoch: i64, epochs: i64) -> Vec<i64> {
    let total = steps_per_epoch * epochs;
    let mut steps: Vec<i64> = (1..=total)
        .filter(|step| step % 50 == 0 || step % steps_per_epoch == 0)
        .collect();
    steps.dedup();
    steps
}

#[test]
fn a_runs_log_holds_every_metric_step_picture_and_hyper_parameter() {
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    let data = real_mnist_dir();
    assert_success(&mnist_cnn(&[
        "train",
        "--data",
        data.to_str().unwrap(),
        "--out",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        "--limit",
        "2000",
        "--epochs",
        "2",
        "--val-split",
        "0.1",
        "--clip-grad-norm",
        "5",
    ]));
    assert_eq!(event_files(&run).len(), 1, "{:?}", file_names(&run));
    let log = read_log(&run);

    // Every number of every metrics.jsonl line, at its epoch.
    let records = read_json_lines(&run.join("metrics.jsonl"));
    assert_eq!(records.len(), 2);
    for record in &records {
        let epoch = record["epoch"].as_i64().unwrap();
        for (key, value) in record.as_object().unwrap() {
            if key == "epoch" {
                continue;
            }
            let logged = series(&log, &format!("epoch/{key}"));
            let at_epoch: Vec<f64> = logged
                .iter()
                .filter(|(step, _)| *step == epoch)
                .map(|(_, v)| *v)
                .collect();
            assert_eq!(
                at_epoch,
                vec![as_logged(value.as_f64().unwrap())],
                "epoch/{key} at epoch {epoch}"
            );
        }
    }

    // Step scalars at the sampled steps: 1,800 training digits in batches of 32 are 57 steps
    // an epoch.
    let expected_steps = sampled_steps(57, 2);
    assert_eq!(expected_steps, vec![50, 57, 100, 114]);
    for tag in [
        "step/train_loss",
        "step/learning_rate",
        "step/images_per_second",
        "step/grad_norm",
    ] {
        assert_eq!(steps(&log, tag), expected_steps, "{tag}");
    }
    let losses = series(&log, "step/train_loss");
    let last_loss = losses.last().unwrap().1;
    assert!(last_loss > 0.0 && last_loss < 10f64.ln(), "{last_loss}");
    // The last sample of an epoch is the epoch's mean loss.
    assert_eq!(
        last_loss,
        as_logged(records[1]["train_loss"].as_f64().unwrap())
    );
    assert!(series(&log, "step/learning_rate")
        .iter()
        .all(|(_, rate)| *rate == as_logged(1e-3)));
    assert!(series(&log, "step/images_per_second")
        .iter()
        .all(|(_, rate)| *rate > 0.0));

    // The delivered model's figures, against config.json and `eval`.
    let config = read_json(&run.join("config.json"));
    let final_metrics = &config["final_metrics"];
    let evaluated = eval_json(&[&run.join("model.ot")], &data, &[]);
    let finals = [
        ("final/test_accuracy", &final_metrics["test_accuracy"]),
        ("final/test_loss", &final_metrics["test_loss"]),
        ("final/precision_macro", &evaluated["macro"]["precision"]),
        ("final/recall_macro", &evaluated["macro"]["recall"]),
        ("final/f1_macro", &evaluated["macro"]["f1"]),
    ];
    for (tag, want) in finals {
        let got = series(&log, tag);
        assert_eq!(got.len(), 1, "{tag}");
        assert_eq!(got[0].0, 2, "{tag}");
        assert!(
            (got[0].1 - want.as_f64().unwrap()).abs() < 1e-6,
            "{tag}: {} against {want}",
            got[0].1
        );
    }

    // The report's pictures, whole.
    for (tag, file) in [
        ("final/confusion_matrix", "confusion.png"),
        ("final/mistakes", "mistakes.png"),
    ] {
        let png = std::fs::read(run.join(file)).unwrap();
        let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
        let images = log["images"][tag].as_array().unwrap();
        assert_eq!(
            images,
            &vec![serde_json::json!([2, width, height, png.len()])],
            "{tag}"
        );
    }

    // The hyper-parameters, the metric and the session's end.
    let hparams = &log["hparams"];
    let expected = serde_json::json!({
        "command": "train", "recipe": "tutorial", "architecture": "tutorial",
        "optimizer": "adam", "learning_rate": 0.001, "schedule": "constant",
        "batch_size": 32.0, "epochs": 2.0, "augment": false, "label_smoothing": 0.0,
        "weight_decay": 0.0, "seed": config["seed"].as_f64().unwrap(),
    });
    assert_eq!(hparams, &expected);
    assert!(log["metrics"]
        .as_array()
        .unwrap()
        .contains(&Value::from("final/test_accuracy")));
    assert_eq!(log["status"], "STATUS_SUCCESS");
}

/// The log's scalars without those that measure time.
fn timeless(log: &Value) -> serde_json::Map<String, Value> {
    let mut scalars = log["scalars"].as_object().unwrap().clone();
    scalars.retain(|tag, _| !tag.ends_with("images_per_second") && !tag.ends_with("seconds"));
    scalars
}

#[test]
fn a_killed_run_resumed_logs_each_step_once_with_the_values_of_an_uninterrupted_one() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 320, 40);
    let runs = tempfile::tempdir().unwrap();
    let whole = runs.path().join("whole");
    assert_success(
        &tool()
            .args(small_run(data.path(), &whole, &[]))
            .output()
            .unwrap(),
    );

    // State saved every 7 steps of an epoch and at its end (steps 7, 14, 20, 27, 34, 40, 47 of
    // the run); killed (SIGKILL, nothing saved) after step 53, so the log holds the sample of
    // step 50, past the saved step 47.
    let cut = runs.path().join("cut");
    let killed = tool()
        .env(mnist_cnn::interrupt::KILL_AT_STEP_VARIABLE, "53")
        .args(small_run(
            data.path(),
            &cut,
            &["--checkpoint-every-steps", "7"],
        ))
        .output()
        .unwrap();
    assert!(!killed.status.success());
    let before = read_log(&cut);
    assert_eq!(steps(&before, "step/train_loss"), vec![20, 40, 50]);

    let resumed = tool()
        .env("RUST_LOG", "info")
        .args(["train", "--resume", cut.to_str().unwrap(), "--no-report"])
        .output()
        .unwrap();
    assert_success(&resumed);
    assert!(stderr(&resumed).contains("resuming at step 7 of 20 in epoch 3"));
    assert_eq!(event_files(&cut).len(), 1, "{:?}", file_names(&cut));
    let (whole_log, cut_log) = (read_log(&whole), read_log(&cut));
    assert_eq!(
        steps(&cut_log, "step/train_loss"),
        sampled_steps(20, 3),
        "each step once, in order"
    );
    assert_eq!(timeless(&cut_log), timeless(&whole_log));
    assert_eq!(cut_log["hparams"], whole_log["hparams"]);
    assert_eq!(cut_log["status"], "STATUS_SUCCESS");
}

#[test]
fn no_tensorboard_writes_no_log_and_overwrite_removes_an_old_one() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 64, 16);
    let runs = tempfile::tempdir().unwrap();
    let run = runs.path().join("run");
    assert_success(&train_small(data.path(), &run, &["--no-report"]));
    assert_eq!(event_files(&run).len(), 1);
    assert_success(&train_small(
        data.path(),
        &run,
        &["--no-report", "--no-tensorboard", "--overwrite"],
    ));
    assert_eq!(event_files(&run), Vec::<String>::new());
}

/// What may lie in a run folder under an event file's name never stops a resume: a FIFO (which
/// a plain open would block on), a folder, a dangling link and a link to /dev/zero are skipped
/// with a warning naming each (and left in place); a 300 MB file of zeros (sparse) is read record
/// by record, found damaged at its first record, and replaced by the rewritten log.
#[test]
fn stray_and_damaged_event_files_never_stop_a_resume() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 320, 40);
    let runs = tempfile::tempdir().unwrap();
    let cut = runs.path().join("cut");
    let stopped = tool()
        .env(mnist_cnn::interrupt::SIGNAL_AT_STEP_VARIABLE, "25")
        .args(small_run(data.path(), &cut, &[]))
        .output()
        .unwrap();
    assert!(!stopped.status.success());
    let stray = |name: &str| cut.join(format!("events.out.tfevents.0000000000.{name}"));
    let made = std::process::Command::new("mkfifo")
        .arg(stray("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    std::fs::create_dir(stray("folder")).unwrap();
    std::os::unix::fs::symlink(cut.join("nowhere"), stray("dangling")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", stray("zero")).unwrap();
    let big = std::fs::File::create(stray("big")).unwrap();
    big.set_len(300 << 20).unwrap();
    drop(big);

    let resume = ["train", "--resume", cut.to_str().unwrap(), "--no-report"];
    let (resumed, finished) = mnist_cnn_within(&resume, std::time::Duration::from_secs(120));
    assert!(finished, "the resume blocked");
    assert_success(&resumed);
    let err = stderr(&resumed);
    for name in ["fifo", "folder", "dangling", "zero"] {
        let path = stray(name);
        assert!(
            err.contains(&format!("{}: not a regular file", path.display())),
            "{name}: {err}"
        );
        assert!(
            std::fs::symlink_metadata(&path).is_ok(),
            "{name} was removed"
        );
    }
    assert!(err.contains("length whose CRC does not match"), "{err}");
    assert!(!stray("big").exists(), "the damaged log was not replaced");
    assert_eq!(read_json(&cut.join("config.json"))["status"], "completed");
    let logs: Vec<String> = event_files(&cut)
        .into_iter()
        .filter(|name| !name.starts_with("events.out.tfevents.0000000000."))
        .collect();
    assert_eq!(logs.len(), 1, "{logs:?}");
}

//! Interruptions and faults during training: Ctrl-C / SIGTERM, kill -9 at random moments, a
//! loss that stops being finite, and resuming a run bit for bit.

use crate::common::*;
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
    assert_clean_failure(&again, &["already completed 3 of 3 epochs", "--epochs"]);
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
    let err = stderr(&output);
    assert_eq!(output.status.code(), Some(143), "{err}");
    assert_eq!(read_json(&run.join("config.json"))["status"], "interrupted");
    // The state after the step under way is saved, and the message says what the folder holds.
    assert!(run.join("resume.ot").is_file(), "{err}");
    assert!(!run.join("model.ot").exists() && !run.join("metrics.jsonl").exists());
    assert!(
        err.contains("holds config.json, resume.ot (the state after step ")
            && err.contains(" of epoch 1)"),
        "{err}"
    );
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

/// A run on 640 generated images at batch 16: 40 steps an epoch, three epochs.
const STEPS_PER_EPOCH: usize = 40;

fn step_run_args(data: &Path, out: &Path, arch: &str, extra: &[&str]) -> Vec<String> {
    let run = [
        "--arch",
        arch,
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--augment",
        "--seed",
        "11",
    ];
    cpu_train_args(data, out, &[&run, extra].concat())
}

/// Runs the tool with `MNIST_CNN_SIGNAL_AT_STEP` set to `signal_at` (the real signal, sent by
/// the process to itself right after that step of the run).
fn run_signalled(args: &[String], signal_at: &str) -> std::process::Output {
    tool()
        .env(mnist_cnn::interrupt::SIGNAL_AT_STEP_VARIABLE, signal_at)
        .args(args)
        .output()
        .unwrap()
}

fn resume_args(run: &Path) -> Vec<String> {
    ["train", "--resume", run.to_str().unwrap(), "--no-report"]
        .map(String::from)
        .to_vec()
}

/// A step within epoch `epoch` (never its last), drawn from the clock; printed so that a
/// failure can be replayed.
fn random_step_in(epoch: usize) -> usize {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as usize;
    let step = (epoch - 1) * STEPS_PER_EPOCH + 1 + nanos % (STEPS_PER_EPOCH - 1);
    eprintln!("interrupting after step {step} of the run (epoch {epoch})");
    step
}

fn assert_same_run(a: &Path, b: &Path) {
    assert_same_tensors(&a.join("model.ot"), &b.join("model.ot"));
    assert_same_tensors(&a.join("resume.ot"), &b.join("resume.ot"));
    assert_eq!(metrics_without_timing(a), metrics_without_timing(b));
}

/// Ctrl-C at a random step of the first epoch, and again at a random step of a later one: each
/// stop leaves the state after that step, and the run resumed twice ends bit-identical to one
/// never interrupted: for the tutorial CNN, and for vgg-16, whose dropout draws from libtorch's
/// generator.
#[test]
fn ctrl_c_at_any_step_resumes_bit_identical_for_the_tutorial_and_vgg() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 640, 50);
    let runs = tempfile::tempdir().unwrap();
    for arch in ["tutorial", "vgg-16"] {
        let whole = runs.path().join(format!("{arch}-whole"));
        let cut = runs.path().join(format!("{arch}-cut"));
        let uninterrupted = tool()
            .args(step_run_args(data.path(), &whole, arch, &[]))
            .output()
            .unwrap();
        assert_success(&uninterrupted);

        let first = random_step_in(1);
        let later = random_step_in(2 + first % 2);
        let stopped = run_signalled(
            &step_run_args(data.path(), &cut, arch, &[]),
            &first.to_string(),
        );
        for (stop, step) in [
            (stopped, first),
            (run_signalled(&resume_args(&cut), &later.to_string()), later),
        ] {
            let err = stderr(&stop);
            assert_eq!(stop.status.code(), Some(130), "{arch}: {err}");
            let (epoch, within) = (
                1 + (step - 1) / STEPS_PER_EPOCH,
                1 + (step - 1) % STEPS_PER_EPOCH,
            );
            let at = format!("resume.ot (the state after step {within} of epoch {epoch})");
            assert!(err.contains(&at), "{arch}: {err}");
            assert_eq!(read_json(&cut.join("config.json"))["status"], "interrupted");
        }
        assert_success(&tool().args(resume_args(&cut)).output().unwrap());
        assert_eq!(read_json(&cut.join("config.json"))["status"], "completed");
        assert_same_run(&whole, &cut);
    }
}

/// With --checkpoint-every-steps N a kill -9 (which nothing can catch) loses at most N steps,
/// and saving changes nothing in the results.
#[test]
fn checkpoint_every_steps_bounds_what_a_kill_9_loses() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 640, 50);
    let runs = tempfile::tempdir().unwrap();
    let (whole, cut) = (runs.path().join("whole"), runs.path().join("cut"));
    let every = ["--checkpoint-every-steps", "7"];
    assert_success(
        &tool()
            .args(step_run_args(data.path(), &whole, "tutorial", &[]))
            .output()
            .unwrap(),
    );
    // Killed after step 13 of epoch 2: the last save was after its step 7.
    let killed = tool()
        .env(
            mnist_cnn::interrupt::KILL_AT_STEP_VARIABLE,
            (STEPS_PER_EPOCH + 13).to_string(),
        )
        .args(step_run_args(data.path(), &cut, "tutorial", &every))
        .output()
        .unwrap();
    assert_eq!(killed.status.code(), None, "killed by a signal");
    assert_eq!(read_json(&cut.join("config.json"))["status"], "running");
    assert_eq!(
        read_json(&cut.join("config.json"))["checkpoint_every_steps"],
        7
    );
    let state = tensors(&cut.join("resume.ot"));
    assert_eq!(state["state.epoch"].int64_value(&[]), 1);
    assert_eq!(state["state.step"].int64_value(&[]), 7);
    assert_success(&tool().args(resume_args(&cut)).output().unwrap());
    assert_same_run(&whole, &cut);
}

/// Every optimizer, clipping and the plateau schedule keep their state across a Ctrl-C within
/// an epoch: AdamW with clipping, Adam under the plateau schedule, and SGD with Nesterov momentum
/// and weight decay resume bit-identical.
#[test]
fn each_optimizer_and_clipping_resume_bit_identical_at_any_step() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 640, 50);
    let runs = tempfile::tempdir().unwrap();
    let controls: [&[&str]; 3] = [
        &["--optimizer", "adamw", "--clip-grad-norm", "0.5"],
        &[
            "--optimizer",
            "adam",
            // A rate too small to improve the validation loss: the plateau acts every epoch.
            "--schedule",
            "plateau",
            "--plateau-patience",
            "0",
            "--plateau-factor",
            "0.5",
            "--lr",
            "1e-7",
            "--val-split",
            "0.2",
        ],
        &[
            "--optimizer",
            "sgd",
            "--lr",
            "0.05",
            "--momentum",
            "0.9",
            "--nesterov",
            "--weight-decay",
            "1e-3",
        ],
    ];
    for (index, extra) in controls.iter().enumerate() {
        let whole = runs.path().join(format!("{index}-whole"));
        let cut = runs.path().join(format!("{index}-cut"));
        let args = |out: &Path| step_run_args(data.path(), out, "tutorial", extra);
        assert_success(&tool().args(args(&whole)).output().unwrap());
        let step = random_step_in(2);
        let stopped = run_signalled(&args(&cut), &step.to_string());
        assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
        assert_success(&tool().args(resume_args(&cut)).output().unwrap());
        assert_same_run(&whole, &cut);
        let config = read_json(&cut.join("config.json"));
        assert_eq!(config["optimizer"], extra[1], "{config}");
    }
    let clipped = read_json_lines(&runs.path().join("0-whole").join("metrics.jsonl"));
    assert!(clipped
        .iter()
        .all(|line| line["grad_norm"].as_f64().unwrap() > 0.0));
    // The plateau schedule acted within the run, so its replayed state mattered.
    let plateau = read_json_lines(&runs.path().join("1-whole").join("metrics.jsonl"));
    let rates: Vec<f64> = plateau
        .iter()
        .map(|l| l["learning_rate"].as_f64().unwrap())
        .collect();
    assert!(
        rates.last().unwrap() < &rates[0],
        "the rate never fell: {rates:?}"
    );
}

/// --deterministic is recorded in config.json and kept on --resume; on the CPU, which is
/// deterministic already, it changes nothing: a run with it, interrupted and resumed, ends
/// bit-identical to one without it.
#[test]
fn deterministic_is_recorded_kept_on_resume_and_changes_nothing_on_the_cpu() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 640, 50);
    let runs = tempfile::tempdir().unwrap();
    let (plain, deterministic) = (runs.path().join("plain"), runs.path().join("det"));
    assert_success(
        &tool()
            .args(step_run_args(data.path(), &plain, "tutorial", &[]))
            .output()
            .unwrap(),
    );
    assert!(read_json(&plain.join("config.json"))
        .get("deterministic")
        .is_none());
    let stopped = run_signalled(
        &step_run_args(
            data.path(),
            &deterministic,
            "tutorial",
            &["--deterministic"],
        ),
        &(STEPS_PER_EPOCH + 3).to_string(),
    );
    assert_eq!(stopped.status.code(), Some(130), "{}", stderr(&stopped));
    assert_eq!(
        read_json(&deterministic.join("config.json"))["deterministic"],
        true
    );
    assert_success(&tool().args(resume_args(&deterministic)).output().unwrap());
    let config = read_json(&deterministic.join("config.json"));
    assert_eq!(config["deterministic"], true);
    assert_eq!(config["status"], "completed");
    assert_same_run(&plain, &deterministic);
}

/// SIGHUP (a dropped SSH session) stops a run as SIGTERM does: after the step, with its state
/// saved, config.json "interrupted", exit 129; and the run resumes bit-identical. The test
/// signal takes only the signals a run handles (and KILL): `3` (SIGQUIT) is ignored.
#[test]
fn sighup_saves_the_step_like_sigterm_and_other_test_signals_are_ignored() {
    let data = tempfile::tempdir().unwrap();
    write_small_mnist(data.path(), 640, 50);
    let runs = tempfile::tempdir().unwrap();
    let (whole, cut) = (runs.path().join("whole"), runs.path().join("cut"));
    let uninterrupted = run_signalled(
        &step_run_args(data.path(), &whole, "tutorial", &[]),
        &format!("{}:3", STEPS_PER_EPOCH + 5),
    );
    assert_success(&uninterrupted);
    let hung_up = run_signalled(
        &step_run_args(data.path(), &cut, "tutorial", &[]),
        &format!("{}:1", STEPS_PER_EPOCH + 5),
    );
    let err = stderr(&hung_up);
    assert_eq!(hung_up.status.code(), Some(129), "{err}");
    assert!(err.contains("SIGHUP"), "{err}");
    assert!(err.contains("the state after step 5 of epoch 2"), "{err}");
    assert_eq!(read_json(&cut.join("config.json"))["status"], "interrupted");
    assert_success(&tool().args(resume_args(&cut)).output().unwrap());
    assert_same_run(&whole, &cut);
}
